// The watchdog over a database thread's calls (calls.ts), on the server's thread: while a call runs, every
// WATCH_EVERY_MS it sees whether a client stopped reading a reply written straight to it, and fires Postgres's own
// timer once the deadline Postgres armed has passed (statement_timeout). One timer while calls come, not one per
// call, stopped once none has run for a tick.

import { Control } from './stoppable.ts'
import type { Running } from './running-call.ts'

/** How often the watchdog looks at Postgres's timer while a call runs, before it knows a deadline. */
export const WATCH_EVERY_MS = 10

interface Watched {
  /** The call running now, if any. */
  running(): Running | null
  readonly words: Int32Array
  /** Postgres's timer: its deadline (ms since the epoch; 0: none armed). */
  readonly deadline: Float64Array
  /** A call waiting lazily for its end looks (lazy-end.ts): its end may have come and nobody sent since. */
  look(): void
  /** Fire Postgres's timer in the thread, for call `id`. */
  fire(id: number): void
}

export class CallWatchdog {
  readonly #watched: Watched
  #timer: NodeJS.Timeout | null = null
  #idleTicks = 0

  constructor(watched: Watched) {
    this.#watched = watched
  }

  /** A call was sent. */
  start(): void {
    this.#idleTicks = 0
    if (this.#timer) return
    this.#timer = setInterval(() => this.#tick(), WATCH_EVERY_MS)
    this.#timer.unref()
  }

  #tick(): void {
    const watched = this.#watched
    const running = watched.running()
    if (!running) {
      if (++this.#idleTicks > 1) this.#stop()
      return
    }
    this.#idleTicks = 0
    watched.look()
    // A reply written straight to the client waits for it to read: its connection times it out as one that stopped.
    if (running.direct) {
      const blocked = Atomics.load(watched.words, Control.Blocked) === running.id
      if (blocked !== running.directBlocked) {
        running.directBlocked = blocked
        running.direct.blocked(blocked)
      }
    }
    if (performance.now() < running.nextCheck) return
    // Whichever call armed it: Postgres leaves its signal pending when the timeouts it was for end, and re-arms only
    // a deadline earlier than the pending one (timeout.c), so a deadline armed by an earlier call and never fired
    // (between calls nothing fires) must fire now for the statement's own timeout to be armed.
    const deadline = watched.deadline[0]!
    if (deadline <= 0 || deadline > Date.now()) return
    watched.fire(running.id)
    // Postgres re-arms the timer if the deadline was not its earliest one: look again shortly.
    running.nextCheck = performance.now() + 50
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
  }
}
