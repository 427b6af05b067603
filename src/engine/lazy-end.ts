// How the server's thread waits for the end of a call whose reply the database thread writes straight to the client:
// when that end is only bookkeeping, the database thread does not wake this one for it (a wake-up between cores
// costs as much as a small query), and this thread looks for it when it has a reason of its own.

import type { DirectReply } from '../server/session/databases.ts'
import { lookOnTraffic, sendingClients } from '../server/connection/traffic.ts'
import type { ByteRing } from './ring.ts'

/** Whether the call's end may wait: with at most one client sending and nobody waiting for it (DirectReply.mayEndLazily). */
export function mayEndLazily(direct: DirectReply): boolean {
  return sendingClients() <= 1 && direct.mayEndLazily()
}

export class LazyEnd {
  readonly #replies: ByteRing
  /** Ends the wait on now, if one is on. */
  #look: (() => void) | null = null
  /** A wait for a wake while lazy (ByteRing.attention) is on; one at a time, kept until it settles. */
  #attentionArmed = false

  constructor(replies: ByteRing) {
    this.#replies = replies
  }

  /** A wait on now ends: the caller reads the ring again (the watchdog's tick, a cancel, the thread's failure). */
  look(): void {
    this.#look?.()
  }

  /**
   * Wait until this thread should read the ring again: the thread woke it for output that passes through here after
   * all, someone called look(), or a client sent bytes, in which case `hurry` is called: that client may wait for the
   * call's end, which may be a moment away yet (the thread writes the reply before it ends the call), so from then on
   * the end must wake.
   */
  async wait(hurry: () => void): Promise<void> {
    const ring = this.#replies
    // Armed before the last look (beginLazy), so a wake between the two is not missed.
    if (!this.#attentionArmed) {
      this.#attentionArmed = true
      void ring.attention().then(() => {
        this.#attentionArmed = false
        this.look()
      })
    }
    if (!ring.beginLazy()) return
    const looked = new Promise<void>((resolve) => {
      this.#look = resolve
    })
    const stopLooking = lookOnTraffic(hurry)
    try {
      await looked
    } finally {
      ring.endLazy()
      this.#look = null
      stopLooking()
    }
  }
}
