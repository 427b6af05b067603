// A statement waiting for the session while the client holding it sits idle in its transaction (it sends nothing):
// on Postgres the statement would run at once; here it would wait for a transaction whose client is most often this
// one's own app, waiting for this statement (drizzle's db instead of tx, Prisma's outer client in $transaction).
// After idleTransactionWaitMs of it, the wait is refused with 55P03 naming the holder; the holder is left alone.

import type { OwnerScheduler } from '../session/scheduler.ts'
import { QueueTimeoutError } from '../session/scheduler.ts'
import type { SessionHolder } from '../session/session.ts'

/** How often a waiting client looks at whether the holder sits idle in its transaction. */
const IDLE_HOLDER_CHECK_MS = 250
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/**
 * Watch the session's holder while a wait lasts (clear `timer` when it ends): once it has sat idle in its
 * transaction for `limitMs` of this wait (0: never), `refuse` is called with it, how long it has been idle, and how
 * long this wait has lasted.
 */
export function watchIdleHolder(
  scheduler: OwnerScheduler<SessionHolder>,
  limitMs: number,
  refuse: (holder: SessionHolder, idleMs: number, waitedMs: number) => void,
): { timer: NodeJS.Timeout | undefined } {
  const watch: { timer: NodeJS.Timeout | undefined } = { timer: undefined }
  if (limitMs === 0) return watch
  const waitingSince = performance.now()
  const check = (): void => {
    const holder = scheduler.owner
    const idleSince = holder?.idleInTransactionSince ?? null
    const now = performance.now()
    const idleMs = idleSince === null ? 0 : now - Math.max(idleSince, waitingSince)
    if (holder && idleSince !== null && idleMs >= limitMs) {
      refuse(holder, now - idleSince, now - waitingSince)
      return
    }
    watch.timer = setTimeout(check, Math.min(IDLE_HOLDER_CHECK_MS, limitMs - idleMs))
  }
  watch.timer = setTimeout(check, Math.min(IDLE_HOLDER_CHECK_MS, limitMs))
  return watch
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
