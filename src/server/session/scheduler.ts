// Who may use PGlite's one session now. One owner at a time; everyone else waits first-come first-served.
// The owner keeps the session across batches (mid-pipeline, inside a transaction) until it releases it,
// the PgBouncer transaction-pooling rule. Nothing here touches PGlite: it only hands out turns.

import { SqlState } from '../../errors.ts'
import { encodeErrorResponse } from '../protocol/backend-messages.ts'

export class SchedulerClosedError extends Error {
  constructor(message = 'the session scheduler was closed') {
    super(message)
    this.name = 'SchedulerClosedError'
  }
}

/** A wait ended by the client's CancelRequest. */
export class QueryCanceledError extends Error {
  /** `statement timeout`: the client's statement_timeout ended the wait (57014 all the same, as Postgres says it). */
  constructor(why: 'user request' | 'statement timeout' = 'user request') {
    super(`canceling statement due to ${why}`)
    this.name = 'QueryCanceledError'
  }
}

/** A wait that lasted longer than the server's queue timeout, or than it may wait for an idle transaction. */
export class QueueTimeoutError extends Error {
  readonly hint: string | undefined
  constructor(message: string, hint?: string) {
    super(message)
    this.name = 'QueueTimeoutError'
    this.hint = hint
  }
}

/**
 * The ErrorResponse of a wait that was refused: 57014 for a cancel or the client's statement_timeout (its message says
 * which), 55P03 for the queue timeout or an idle holder; null for any other error.
 */
export function refusalResponse(error: unknown): Buffer | null {
  if (error instanceof QueryCanceledError) return encodeErrorResponse('ERROR', SqlState.QueryCanceled, error.message)
  if (error instanceof QueueTimeoutError)
    return encodeErrorResponse('ERROR', SqlState.LockNotAvailable, error.message, undefined, error.hint)
  return null
}

interface Waiter<Id> {
  id: Id
  resolve: () => void
  reject: (error: Error) => void
}

export class OwnerScheduler<Id> {
  #owner: Id | null = null
  #waiters: Waiter<Id>[] = []
  #closed: Error | null = null

  get owner(): Id | null {
    return this.#owner
  }

  get waiting(): number {
    return this.#waiters.length
  }

  isOwner(id: Id): boolean {
    return this.#owner === id
  }

  /**
   * Become the owner. Returns null when that happened at once (the session was free, or `id` owns it
   * already), else a promise that resolves when the previous owner releases and everyone queued before `id` had a turn.
   */
  acquire(id: Id): Promise<void> | null {
    if (this.#closed) return Promise.reject(this.#closed)
    if (this.#owner === id) return null
    if (this.#owner === null && this.#waiters.length === 0) {
      this.#owner = id
      return null
    }
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ id, resolve, reject })
      if (this.#owner === null) this.#handOff()
    })
  }

  /** Hand the session to the next waiter. Releasing a session you do not own is a no-op. */
  release(id: Id): void {
    if (this.#owner !== id) return
    this.#owner = null
    this.#handOff()
  }

  /** `from` owns the session and hands it straight to `to` (ahead of every waiter). No-op unless `from` owns it. */
  transfer(from: Id, to: Id): void {
    if (this.#owner === from) this.#owner = to
  }

  /** `id` is gone: drop its waits (they reject with `reason`) and release the session if it owns it. */
  forget(id: Id, reason: Error = new SchedulerClosedError('the connection was closed')): void {
    for (const waiter of this.#waiters.filter((w) => w.id === id)) {
      this.#remove(waiter)
      waiter.reject(reason)
    }
    this.release(id)
  }

  /** Stop `id` waiting (its CancelRequest, its queue timeout): its wait rejects with `reason`. False if it was not waiting. */
  cancelWait(id: Id, reason: Error): boolean {
    const waiter = this.#waiters.find((w) => w.id === id)
    if (!waiter) return false
    this.#remove(waiter)
    waiter.reject(reason)
    return true
  }

  /** Take waiters again (the database is back). */
  reopen(): void {
    this.#closed = null
    this.#owner = null
  }

  /** Reject every waiter and refuse new ones; used when the database is gone. */
  close(reason: Error = new SchedulerClosedError()): void {
    this.#closed = reason
    const waiters = this.#waiters
    this.#waiters = []
    for (const waiter of waiters) waiter.reject(reason)
  }

  #remove(waiter: Waiter<Id>): void {
    const index = this.#waiters.indexOf(waiter)
    if (index >= 0) this.#waiters.splice(index, 1)
  }

  #handOff(): void {
    const next = this.#waiters.shift()
    if (!next) return
    this.#owner = next.id
    next.resolve()
  }
}
