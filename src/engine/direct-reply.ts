// A call's reply written by the database thread straight to its client's socket, so that the bytes never cross back
// to the server's thread (which owns the socket and keeps it open until the call ends). A socket that is full makes
// the thread wait, the statement paused, until the client reads or the server gives up on it (Control.Abandoned).

import { writeSync } from 'node:fs'
import { BackendCode } from '../server/protocol/codes.ts'
import { RelayFrom } from '../server/session/databases.ts'
import { Control } from './stoppable.ts'
import type { Framing } from './output-watch.ts'
import { blockedWait } from './ring.ts'

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
 * A reply whose writes have waited this long in all for a full socket gets the rest through the server's thread
 * instead, which can keep it for the client without holding the session (server/connection/spill.ts). In all, not
 * without a pause: a client that reads slowly, but never stops, would hold the session as long as one that stopped.
 */
const GIVE_UP_MS = 50

/** How long one reply's writes have waited for its full socket so far (CallOutput keeps one, reset per reply). */
export interface ReplyWaits {
  ms: number
}

/**
 * Writes `bytes` to the socket `fd` for call `id` (in a call of units, unit `unit`; else -1), waiting while it is full;
 * returns how many it wrote: all, fewer once the reply's writes have waited GIVE_UP_MS in all (`waits`), or -1 if the
 * client is gone (the socket refused the bytes) or the server gave up on the call. Marks the call Blocked while it
 * waits, so the server's thread can time its client out as one that stopped reading.
 */
export function writeToClient(
  words: Int32Array,
  id: number,
  unit: number,
  fd: number,
  bytes: Uint8Array,
  waits: ReplyWaits,
): number {
  let at = 0
  let waitMs = FIRST_WAIT_MS
  try {
    while (at < bytes.length) {
      if (isAbandoned(words, id, unit)) return -1
      try {
        at += writeSync(fd, bytes, at, bytes.length - at)
        waitMs = FIRST_WAIT_MS
      } catch (error) {
        // Non-blocking: EAGAIN is a full socket; anything else (EPIPE, ECONNRESET) means the client is gone.
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') return -1
        if (waits.ms >= GIVE_UP_MS) return at
        Atomics.store(words, Control.Blocked, id)
        const from = performance.now()
        blockedWait(words, Control.Abandoned, Atomics.load(words, Control.Abandoned), waitMs)
        waits.ms += performance.now() - from
        waitMs = Math.min(LONGEST_WAIT_MS, waitMs * 2)
      }
    }
    return at
  } finally {
    if (Atomics.load(words, Control.Blocked) === id) Atomics.store(words, Control.Blocked, 0)
  }
}

/** The server gave up on call `id`'s reply, or on unit `unit`'s in it. */
export function isAbandoned(words: Int32Array, id: number, unit: number): boolean {
  if (Atomics.load(words, Control.Abandoned) !== id) return false
  const abandoned = Atomics.load(words, Control.AbandonedUnit)
  return abandoned === -1 || abandoned === unit
}

/**
 * Where the message stream stands `at` bytes into `chunk`, which began at `before`: the payload of a Raw|Direct frame
 * (body bytes left, Int32 LE, then the header bytes already written), so the server can tell where messages begin in
 * the bytes that follow.
 */
export function framingAt(before: Framing, chunk: Uint8Array, at: number): Buffer {
  let remaining = before.remaining
  const header = Buffer.alloc(5)
  before.header.copy(header, 0, 0, before.headerFill)
  let headerFill = before.headerFill
  for (let i = 0; i < at;) {
    if (remaining > 0) {
      const take = Math.min(remaining, at - i)
      i += take
      remaining -= take
      continue
    }
    header[headerFill++] = chunk[i++]!
    if (headerFill === 5) {
      remaining = Math.max(0, header.readInt32BE(1) - 4)
      headerFill = 0
    }
  }
  const payload = Buffer.alloc(4 + headerFill)
  payload.writeInt32LE(remaining, 0)
  header.copy(payload, 4, 0, headerFill)
  return payload
}
