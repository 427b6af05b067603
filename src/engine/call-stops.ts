// Stopping a call in a database thread, from the server's thread: a cancel (CancelRequest) of the statement running
// now, sent again while Postgres may have cleared it; a unit of a call of units skipped before it begins; and the
// last resort's timer for a canceled call that does not end. They reach the thread through the inspector.

import { workerInspector } from './interrupt.ts'
import { waitAsync } from './ring.ts'
import { Control, ENGINE_GLOBAL } from './stoppable.ts'
import { waitsForClient, type Running } from './running-call.ts'

/** A call still running this long after its cancel (not waiting for its client to read): `onStuck` is told, the last resort. */
export const STUCK_AFTER_CANCEL_MS = 10_000

/** A cancel for a call the thread has not begun yet waits this long at most for it to begin. */
const BEGIN_WAIT_MS = 2_000
/**
 * A cancel that lands after the thread began the call but before Postgres began its command is cleared by Postgres
 * (as one that comes while it waits for a command): while the canceled call still runs, it is sent again after each.
 */
const CANCEL_AGAIN_AFTER_MS = [250, 1_000]

/** What stopping a call needs of the calls (calls.ts ProtocolCalls). */
export interface StoppedCalls {
  /** The call running now, or null. */
  running(): Running | null
  /** The call's end is wanted now, with no lazy wait; a lent socket comes back now. */
  hurry(running: Running): void
  /** A canceled call did not end within `ms`. */
  stuck(ms: number): void
}

/** Runs `call`, a function of the thread's ENGINE_GLOBAL, in thread `threadId` through the inspector. */
export function evaluateInThread(threadId: number, call: string): Promise<unknown> {
  return workerInspector().evaluate(threadId, `globalThis.${ENGINE_GLOBAL}?.${call}`)
}

export class CallStops {
  readonly #calls: StoppedCalls
  /** Control.Current: the call the thread runs now; minus its id once it ended. */
  readonly #words: Int32Array
  readonly #threadId: number

  constructor(calls: StoppedCalls, words: Int32Array, threadId: number) {
    this.#calls = calls
    this.#words = words
    this.#threadId = threadId
  }

  /** See ProtocolCalls.cancel. */
  async cancel(unit = -1): Promise<'canceled' | 'skipped' | ''> {
    const running = this.#calls.running()
    if (!running) return ''
    this.#calls.hurry(running)
    await this.#begun(running)
    const result = await evaluateInThread(this.#threadId, `cancel(${running.id}, ${unit})`)
    if (result === 'canceled' && this.#calls.running() === running && running.stuckCheck === undefined) {
      this.#checkEnds(running)
      this.#cancelAgain(running, unit, 0)
    }
    return result === 'canceled' || result === 'skipped' ? result : ''
  }

  #cancelAgain(running: Running, unit: number, attempt: number): void {
    const after = CANCEL_AGAIN_AFTER_MS[attempt]
    if (after === undefined) return
    running.cancelAgain = setTimeout(() => {
      if (this.#calls.running() !== running) return
      evaluateInThread(this.#threadId, `cancel(${running.id}, ${unit})`).then(
        (result) =>
          result === 'canceled' && this.#calls.running() === running && this.#cancelAgain(running, unit, attempt + 1),
        () => {}, // the thread is gone: the call fails with that
      )
    }, after)
  }

  /** See ProtocolCalls.skip. */
  async skip(unit: number): Promise<boolean> {
    const running = this.#calls.running()
    if (!running) return false
    this.#calls.hurry(running)
    await this.#begun(running)
    return (await evaluateInThread(this.#threadId, `skip(${running.id}, ${unit})`)) === true
  }

  /**
   * Until the thread has begun `running` (it was sent and waits in the ring), or it is over. A cancel must not come
   * before: Postgres clears a cancel still pending when it begins a command, and the thread only knows calls it began.
   */
  async #begun(running: Running): Promise<void> {
    const until = performance.now() + BEGIN_WAIT_MS
    for (;;) {
      const current = Atomics.load(this.#words, Control.Current)
      const left = until - performance.now()
      if (current === running.id || current === -running.id || this.#calls.running() !== running || left <= 0) return
      const wait = waitAsync(this.#words, Control.Current, current, left)
      if (wait.async) await wait.value
    }
  }

  /** After a cancel: the call must end, or, once it is not waiting for its client, be reported stuck. */
  #checkEnds(running: Running): void {
    running.stuckCheck = setTimeout(() => {
      if (this.#calls.running() !== running) return
      if (waitsForClient(running)) this.#checkEnds(running)
      else this.#calls.stuck(STUCK_AFTER_CANCEL_MS)
    }, STUCK_AFTER_CANCEL_MS)
  }
}
