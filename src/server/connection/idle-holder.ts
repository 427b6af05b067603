// A statement waiting for the session while the client holding it sits idle in its transaction (it sends nothing):
// on Postgres the statement would run at once; here it would wait for a transaction whose client is most often this
// one's own app, waiting for this statement (drizzle's db instead of tx, Prisma's outer client in $transaction).
// After idleTransactionWaitMs of it, the wait is refused with 55P03 naming the holder; the holder is left alone.
// A holder whose client left while its statement runs is canceled instead, after as long: its client can no longer
// cancel it, and a statement that never ends (a lock a prepared transaction holds) would hold the database for good.
// Its socket lent to the database's thread for that statement is taken back first, or its leaving would not show.

import type { OwnerScheduler } from '../session/scheduler.ts'
import { QueueTimeoutError } from '../session/scheduler.ts'
import type { SessionHolder } from '../session/session.ts'

/** How often a waiting client looks at whether the holder sits idle in its transaction. */
const IDLE_HOLDER_CHECK_MS = 250
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`
/** Holders canceled for a waiting client once their client left: one cancel each, whoever waits. */
const canceledDeparted = new WeakSet<SessionHolder>()

/**
 * Watches the session's holder while one of a client's waits lasts (start, stop): once the holder has sat idle in its
 * transaction for `limitMs` of the wait (0: never), `refuse` is called with it, how long it has been idle, and how
 * long the wait has lasted; a holder whose client left, still running after `limitMs` of the wait, is canceled
 * (`departed` told first). A client waits once at a time; the watch is made once per client and keeps one timer,
 * left to run out after a wait ends (the next wait may use it), so that a wait of a few µs makes no timer.
 */
export class IdleHolderWatch {
  readonly scheduler: OwnerScheduler<SessionHolder>
  readonly #limitMs: number
  readonly #refuse: (holder: SessionHolder, idleMs: number, waitedMs: number) => void
  readonly #departed: (holder: SessionHolder, waitedMs: number) => void
  /** When the wait under way began (performance.now()); -1: none. */
  #waitingSince = -1
  #timer: NodeJS.Timeout | undefined

  constructor(
    scheduler: OwnerScheduler<SessionHolder>,
    limitMs: number,
    refuse: (holder: SessionHolder, idleMs: number, waitedMs: number) => void,
    departed: (holder: SessionHolder, waitedMs: number) => void,
  ) {
    this.scheduler = scheduler
    this.#limitMs = limitMs
    this.#refuse = refuse
    this.#departed = departed
  }

  start(): void {
    if (this.#limitMs === 0) return
    this.#waitingSince = performance.now()
    if (this.#timer === undefined) this.#arm(Math.min(IDLE_HOLDER_CHECK_MS, this.#limitMs))
  }

  stop(): void {
    this.#waitingSince = -1
  }

  #arm(ms: number): void {
    // The client's socket keeps the server running; this timer need not.
    this.#timer = setTimeout(this.#check, ms).unref()
  }

  readonly #check = (): void => {
    this.#timer = undefined
    const waitingSince = this.#waitingSince
    if (waitingSince < 0) return
    const holder = this.scheduler.owner
    const idleSince = holder?.idleInTransactionSince ?? null
    const now = performance.now()
    if (holder?.left && holder.cancel && now - waitingSince >= this.#limitMs && !canceledDeparted.has(holder)) {
      canceledDeparted.add(holder)
      this.#departed(holder, now - waitingSince)
      holder.cancel()
    } else if (holder && !holder.left && now - waitingSince >= this.#limitMs) {
      // A socket lent for the statement running is read by nobody while it runs: read again, a client gone shows.
      holder.reclaimSocket?.()
    }
    const idleMs = idleSince === null ? 0 : now - Math.max(idleSince, waitingSince)
    if (holder && idleSince !== null && idleMs >= this.#limitMs) {
      this.#waitingSince = -1
      this.#refuse(holder, now - idleSince, now - waitingSince)
      return
    }
    this.#arm(Math.min(IDLE_HOLDER_CHECK_MS, this.#limitMs - idleMs))
  }
}

/** The refusal: 55P03 naming the holder (pid, application_name, how long idle), and what to change in the app. */
export function idleHolderRefusal(holder: SessionHolder, idleMs: number, waitedMs: number): QueueTimeoutError {
  const name = holder.applicationName ? ` (application_name "${holder.applicationName}")` : ''
  const message = `canceling statement: it waited ${seconds(waitedMs)} for the database, which client ${holder.processId}${name} holds in a transaction idle for ${seconds(idleMs)}`
  const hint =
    'pglite-dev-db runs one transaction at a time, so a statement sent on another connection waits for the open one; ' +
    "if that transaction is your app's own, send this statement on its connection (the transaction object your driver or ORM gives), " +
    'or commit first. --idle-transaction-wait-ms sets how long to wait.'
  return new QueueTimeoutError(message, hint)
}
