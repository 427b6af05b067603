// A call's reply written by the database thread straight to its client's socket, so that the bytes never cross back
// to the server's thread (which owns the socket and keeps it open until the call ends). A socket that is full makes
// the thread wait, the statement paused, until the client reads or the server gives up on it (Control.Abandoned).

import { writeSync } from 'node:fs'
import { BackendCode } from '../../socket/protocol/codes.ts'
import { RelayFrom } from '../../socket/session/databases.ts'
import { Control } from './stoppable.ts'

/** For each combination of RelayFrom bits, the message codes it names (null: none). */
export const RELAY_CODES: ReadonlyArray<ReadonlySet<number> | null> = Array.from({ length: 8 }, (_, bits) => {
  const codes = new Set<number>()
  if (bits & RelayFrom.ErrorResponse) codes.add(BackendCode.ErrorResponse)
  if (bits & RelayFrom.NoticeResponse) codes.add(BackendCode.NoticeResponse)
  if (bits & RelayFrom.NotificationResponse) codes.add(BackendCode.NotificationResponse)
  return codes.size > 0 ? codes : null
})

/** A full socket is tried again after this long, doubling up to LONGEST_WAIT_MS while the client does not read. */
const FIRST_WAIT_MS = 0.1
const LONGEST_WAIT_MS = 5

/**
 * Writes all of `bytes` to the socket `fd` for call `id` (in a call of units, unit `unit`; else -1), waiting while it is full; false if the client is gone (the
 * socket refused the bytes) or the server gave up on the call. Marks the call Blocked while it waits, so the server's
 * thread can time its client out as one that stopped reading.
 */
export function writeToClient(words: Int32Array, id: number, unit: number, fd: number, bytes: Uint8Array): boolean {
  let at = 0
  let waitMs = FIRST_WAIT_MS
  try {
    while (at < bytes.length) {
      if (isAbandoned(words, id, unit)) return false
      try {
        at += writeSync(fd, bytes, at, bytes.length - at)
        waitMs = FIRST_WAIT_MS
      } catch (error) {
        // Non-blocking: EAGAIN is a full socket; anything else (EPIPE, ECONNRESET) means the client is gone.
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return false
        Atomics.store(words, Control.Blocked, id)
        Atomics.wait(words, Control.Abandoned, Atomics.load(words, Control.Abandoned), waitMs)
        waitMs = Math.min(LONGEST_WAIT_MS, waitMs * 2)
      }
    }
    return true
  } finally {
    if (Atomics.load(words, Control.Blocked) === id) Atomics.store(words, Control.Blocked, 0)
  }
}

/** The server gave up on call `id`'s reply, or on unit `unit`'s in it. */
function isAbandoned(words: Int32Array, id: number, unit: number): boolean {
  if (Atomics.load(words, Control.Abandoned) !== id) return false
  const abandoned = Atomics.load(words, Control.AbandonedUnit)
  return abandoned === -1 || abandoned === unit
}
