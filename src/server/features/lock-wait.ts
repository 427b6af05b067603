// A pg_advisory_lock (or its shared and transaction-level kinds) that found the lock held by another client: on
// Postgres the statement waits. Here the lock's holder can only release it by running a statement of its own, so
// the waiting client gives the session up: its unit of work (a Query, or a pipeline up to its Sync, that ran in an
// implicit transaction, so nothing of it is left) is answered later. The server waits for the lock outside the
// session, then runs the unit again from the start. The wait ends as Postgres's does: the lock, a CancelRequest
// (57014), lock_timeout (55P03), a deadlock (40P01), or the server's queue timeout (55P03).

import { SqlState } from '../../errors.ts'
import { FrontendCode, HEADER_LENGTH, TxStatus } from '../protocol/codes.ts'
import { encodeErrorResponse } from '../protocol/backend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { SYNC, cstring, encodeClose } from '../protocol/frontend-messages.ts'
import { LockWaitError } from '../session/advisory-locks.ts'
import type { Backend } from './backend.ts'
import { refusalResponse } from '../session/scheduler.ts'
import { cannotWaitHere, replaceLockWaitError, type LockWait } from './server-functions.ts'

/** What running a unit that may wait for a lock needs of its runner. */
export interface LockWaitRunner {
  readonly backend: Backend
  write(bytes: Uint8Array): void
  /** Give the session up and wait (the queue timeout and a CancelRequest apply) until `wait` ends; then own it again. */
  waitOutside(wait: (stop: Promise<never>) => Promise<void>): Promise<void>
}

/** Whether a unit may be run again after waiting: it ends with its Sync or Query, and nothing before it ran uncommitted. */
export function mayRunAgain(bytes: Buffer): boolean {
  let last = 0
  forEachFrame(bytes, (code) => void (last = code))
  return last === FrontendCode.Sync || last === FrontendCode.Query
}

/** Whether `bytes` execute anything (rather than only parse, bind or describe). */
export function executes(bytes: Buffer): boolean {
  let found = false
  forEachFrame(
    bytes,
    (code) =>
      void (found ||=
        code === FrontendCode.Execute || code === FrontendCode.Query || code === FrontendCode.FunctionCall),
  )
  return found
}

/**
 * Run `bytes` (a whole unit, see mayRunAgain) for the client; while a lock it takes is another client's, wait for it
 * outside the session and run the unit again. `unnamedParse`: the Parse that made the client's unnamed statement,
 * made again first if another client's took its place meanwhile.
 */
export async function runWaitingForLocks(
  runner: LockWaitRunner,
  bytes: Buffer,
  functions: number,
  unnamedParse: Buffer | null,
): Promise<void> {
  const { backend } = runner
  const processId = backend.client.processId
  for (;;) {
    const reply = await backend.capture(bytes, true, functions)
    const wait = backend.takeLockWait()
    if (!wait) {
      runner.write(reply)
      return
    }
    // In a transaction block the unit began itself (BEGIN), what it did is not the server's to undo.
    if (backend.txStatus !== TxStatus.Idle) {
      runner.write(replaceLockWaitError(reply, cannotWaitHere(wait)))
      return
    }
    const error = await waitForLock(runner, processId, wait)
    if (error) {
      runner.write(replaceLockWaitError(reply, error))
      return
    }
    await backend.capture(Buffer.concat([...closesOfParsed(bytes), ...(unnamedParse ? [unnamedParse] : []), SYNC]))
    if (unnamedParse) backend.session.unnamedStatementOwner = backend.client
  }
}

/** Wait for the lock; null once it is free (and the session owned again), else the ErrorResponse that ends the wait. */
async function waitForLock(runner: LockWaitRunner, processId: number, wait: LockWait): Promise<Buffer | null> {
  const locks = runner.backend.session.advisoryLocks
  const timeoutMs = runner.backend.lockTimeoutMs
  try {
    await runner.waitOutside(async (stop) => {
      let timer: NodeJS.Timeout | undefined
      const timedOut =
        timeoutMs > 0
          ? new Promise<never>(
              (_, reject) =>
                (timer = setTimeout(
                  () => reject(new LockWaitError(SqlState.LockNotAvailable, 'canceling statement due to lock timeout')),
                  timeoutMs,
                )),
            )
          : stop
      try {
        await locks.waitFor(processId, wait.key, wait.mode, timeoutMs > 0 ? Promise.race([stop, timedOut]) : stop)
      } finally {
        clearTimeout(timer)
      }
    })
    return null
  } catch (error) {
    if (error instanceof LockWaitError)
      return encodeErrorResponse('ERROR', error.code, error.message, undefined, undefined, error.detail)
    const refused = refusalResponse(error)
    if (refused) return refused
    throw error
  }
}

/** Close messages for the named statements `bytes` parse: they were made before the lock failed the unit. */
function closesOfParsed(bytes: Buffer): Buffer[] {
  const closes: Buffer[] = []
  forEachFrame(bytes, (code, offset, length) => {
    if (code !== FrontendCode.Parse) return
    const [start, end] = cstring(bytes, offset + HEADER_LENGTH, offset + length)
    if (end > start) closes.push(encodeClose('S', bytes.subarray(start, end)))
  })
  return closes
}
