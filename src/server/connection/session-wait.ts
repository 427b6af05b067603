// A client's waits: for the session in the scheduler's line, for a combined call to run its unit (riding), or outside
// the session for an advisory lock; and what ends a wait early: the client's CancelRequest, the queue timeout, a
// holder idle in its transaction (idle-holder.ts). Work whose wait was refused is answered by the BatchRunner.

import { SqlState } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import type { RideEnd } from '../session/rider.ts'
import { QueryCanceledError, QueueTimeoutError, SchedulerClosedError } from '../session/scheduler.ts'
import type { Backend, BackendClient, RideHooks } from '../features/backend.ts'
import { IdleHolderWatch, idleHolderRefusal } from './idle-holder.ts'
import type { ConnectionStates } from './connection-state.ts'

/** What a wait needs of its connection. */
export interface WaitingClient extends BackendClient {
  readonly states: ConnectionStates
}

export interface SessionWaitOptions {
  /** See ConnectionOptions.idleTransactionWaitMs. */
  idleTransactionWaitMs: number
  log: Logger
  /** Answer work whose wait was refused, `bytes` being the work (see BatchRunner.#refuse). */
  refuse(error: unknown, bytes: Buffer): void
}

export class SessionWait {
  readonly #client: WaitingClient
  readonly #backend: Backend
  readonly #idleTransactionWaitMs: number
  readonly #log: Logger
  readonly #refuse: (error: unknown, bytes: Buffer) => void
  /** The unit riding in a combined call (see stopRiding), while it does, and why it was stopped, if it was. */
  #riding: Buffer | null = null
  #stopped: { error: QueryCanceledError | QueueTimeoutError; answered: boolean } | null = null
  #idleHolderWatch: IdleHolderWatch | null = null
  /** Called as the riding unit ends, if it ran. */
  #ran: (() => void) | null = null
  /** What a riding unit tells this wait (one for every ride). */
  readonly #rideHooks: RideHooks = {
    begin: () => this.#client.states.enter('active'),
    end: (hasRun) => {
      if (hasRun) this.#ran?.()
      else this.#answerStopped()
      // Answered, and at rest: idle as a backend is once it sent ReadyForQuery, though the call runs on for others.
      if (hasRun && this.#backend.atRest) this.#client.states.enter('idle')
    },
  }
  /** Ends a wait outside the session (for an advisory lock), if one is under way. */
  #stopWaitOutside: ((error: Error) => void) | null = null

  constructor(client: WaitingClient, backend: Backend, options: SessionWaitOptions) {
    this.#client = client
    this.#backend = backend
    this.#idleTransactionWaitMs = options.idleTransactionWaitMs
    this.#log = options.log
    this.#refuse = options.refuse
  }

  /**
   * Become the session's owner, waiting behind other clients if need be. A wait can end in QueryCanceledError (the
   * client's CancelRequest, see `cancel`) or QueueTimeoutError (see `timeOut`): see BatchRunner.#refuse.
   */
  async own(): Promise<void> {
    const backend = this.#backend
    if (backend.isOwner) return
    const { scheduler } = backend.session
    const wait = scheduler.acquire(this.#client)
    if (wait) {
      scheduler.owner?.parkIfIdle?.()
      const { states } = this.#client
      states.enter('waiting')
      this.#idleHolder.start()
      try {
        await wait
      } finally {
        this.#idleHolder.stop()
        states.enter('active')
      }
      if (!states.isServing) throw new SchedulerClosedError('the connection is closing')
    }
    await backend.tookSession()
  }

  /**
   * Ride: wait for the combined call as for the session (the same refusals end the wait), then run in it. `ran` is
   * called as the unit ends, if it ran; a unit stopped before it began is answered as refused work.
   */
  async ride(bytes: Buffer, ran: () => void, last: boolean): Promise<RideEnd> {
    const { states } = this.#client
    this.#ran = ran
    const ride = this.#backend.ride(bytes, this.#rideHooks, last)
    states.enter('waiting')
    this.#riding = bytes
    this.#stopped = null
    this.#idleHolder.start()
    try {
      const end = await ride
      // Stopped before it began, and answered so (now, if the answer has not gone yet): it must not run after all.
      if (end === 'stopped' || (end === 'not-run' && this.#stoppedAndAnswered)) {
        this.#answerStopped()
        return 'stopped'
      }
      return end
    } finally {
      this.#riding = this.#stopped = null
      this.#ran = null
      this.#idleHolder.stop()
      states.enter('active')
    }
  }

  /**
   * This client's unit rides in the combined call that runs now: a cancel stops its statement if it runs; a unit that
   * has not begun is not run, and is answered as refused work (BatchRunner.#refuse). True if a unit of this client
   * rides there. `cancelRunning` false: a unit that has begun runs on (a timeout of the wait: Postgres's own
   * statement_timeout times the statement once it runs).
   */
  stopRiding(
    error: QueryCanceledError | QueueTimeoutError,
    cancelRunning = error instanceof QueryCanceledError,
  ): boolean {
    const { combined } = this.#backend.session
    if (this.#riding === null || !combined.isRiding(this.#client)) return false
    const stopped = (this.#stopped ??= { error, answered: false })
    const stopping = cancelRunning
      ? combined.cancel(this.#client)
      : combined.skip(this.#client).then((skipped) => (skipped ? 'skipped' : ''))
    stopping.then(
      (result) => {
        // Not run: answered now rather than when the call reaches it (its end answers it if that came first).
        if (result === 'skipped' && this.#stopped === stopped) this.#answerStopped()
        this.#log.debug('riding unit stopped', { how: result || 'it had ended' })
      },
      (stopError: unknown) => this.#log.warn('could not stop a riding unit', { error: stopError }),
    )
    return true
  }

  /** The riding unit was stopped and its client already answered so. */
  get #stoppedAndAnswered(): boolean {
    return this.#stopped?.answered === true
  }

  /** The riding unit was stopped before it began: answered once, as refused work. */
  #answerStopped(): void {
    // Only stopRiding stops a unit before it begins, and it says why first; a cancel is the answer if it ever did not.
    const stopped = (this.#stopped ??= { error: new QueryCanceledError(), answered: false })
    const bytes = this.#riding
    if (stopped.answered || !bytes) return
    stopped.answered = true
    this.#refuse(stopped.error, bytes)
  }

  /** The client waits outside the session for an advisory lock another client holds. */
  get waitingForLock(): boolean {
    return this.#stopWaitOutside !== null
  }

  /** Give the session up for a wait outside it (an advisory lock), then own it again. */
  async outside(wait: (stop: Promise<never>) => Promise<void>): Promise<void> {
    await this.#backend.release()
    const { states } = this.#client
    let stopWith!: (error: Error) => void
    const stop = new Promise<never>((_, reject) => (stopWith = reject))
    // eslint-disable-next-line no-restricted-syntax -- a signal: the wait that races it gets the error; unraced, none is lost
    stop.catch(() => {})
    this.#stopWaitOutside = stopWith
    states.enter('waiting')
    try {
      await wait(stop)
    } finally {
      this.#stopWaitOutside = null
      if (states.isServing) states.enter('active')
    }
    if (!states.isServing) throw new SchedulerClosedError('the connection is closing')
    await this.own()
  }

  /** The connection closes: a wait outside the session ends. */
  abandon(): void {
    this.#stopWaitOutside?.(new SchedulerClosedError('the connection is closing'))
  }

  /**
   * While this client waits: a holder idle in its transaction too long gets the wait refused (idle-holder.ts). Made at
   * the first wait (the session is the client's database's by then), and again if that session changed.
   */
  get #idleHolder(): IdleHolderWatch {
    const { scheduler } = this.#backend.session
    if (this.#idleHolderWatch?.scheduler === scheduler) return this.#idleHolderWatch
    return (this.#idleHolderWatch = new IdleHolderWatch(
      scheduler,
      this.#idleTransactionWaitMs,
      (holder, idleMs, waitedMs) => {
        this.#log.warn('statement refused: it waited for an idle transaction', {
          holder: holder.processId,
          idleMs: Math.round(idleMs),
          sqlstate: SqlState.LockNotAvailable,
        })
        this.#refuseWait(idleHolderRefusal(holder, idleMs, waitedMs))
      },
      (holder, waitedMs) =>
        this.#log.warn("canceling a departed client's statement: another waited for it", {
          holder: holder.processId,
          waitedMs: Math.round(waitedMs),
        }),
    ))
  }

  /** End this client's wait for the session, or for a combined call to take its unit, with `error`. False if none. */
  #refuseWait(error: Error): boolean {
    const { combined, scheduler } = this.#backend.session
    return combined.refuse(this.#client, error) || scheduler.cancelWait(this.#client, error)
  }

  /**
   * The client's CancelRequest: work waiting for the session (or a lock) is refused with 57014, a unit in a combined
   * call is stopped (stopRiding). True if some was waiting or riding.
   */
  cancel(): boolean {
    if (this.#stopWaitOutside) {
      this.#stopWaitOutside(new QueryCanceledError())
      return true
    }
    return this.#refuseWait(new QueryCanceledError()) || this.stopRiding(new QueryCanceledError())
  }

  /**
   * The queue timeout: work that waited `ms` for the session is refused with 55P03, naming who holds it. Or the
   * client's statement_timeout (`statement`), shorter: 57014, as Postgres cancels a statement waiting for a lock.
   */
  timeOut(ms: number, statement = false): void {
    if (statement) {
      this.#log.info('statement timeout while waiting', { ms, sqlstate: SqlState.QueryCanceled })
      const error = new QueryCanceledError('statement timeout')
      if (this.#stopWaitOutside) this.#stopWaitOutside(error)
      else if (!this.#refuseWait(error)) this.stopRiding(error, false)
      return
    }
    const { scheduler } = this.#backend.session
    const holder = scheduler.owner
    const who = holder ? `client ${holder.processId} holds it` : 'other clients were ahead'
    this.#log.info('queue timeout', { ms, holder: holder?.processId, sqlstate: SqlState.LockNotAvailable })
    if (this.#stopWaitOutside) {
      this.#stopWaitOutside(
        new QueueTimeoutError(`canceling statement: waited ${ms} ms for an advisory lock another client holds`),
      )
      return
    }
    const error = new QueueTimeoutError(
      `canceling statement: waited ${ms} ms for the database session, which ${who} (pglite-dev-db runs one client's transaction at a time)`,
    )
    // Or its unit waits in the combined call that runs, behind other clients' units.
    if (!this.#refuseWait(error)) this.stopRiding(error)
  }
}
