// Where one connection is in its life, and the timer each state runs. Every change of state goes through `enter`,
// which replaces the deadline of the state left by the one of the state entered: a timer can never outlive its
// state or be forgotten by a path that changes the state.

import { SqlState, WireError } from '../../errors.ts'
import type { ClientTimeout } from '../features/settings.ts'

/**
 * - startup: SSL/GSS negotiation, the startup packet, authentication, opening its database. The authentication
 *   deadline runs from the moment the client connected (57014, as Postgres's authentication_timeout), and the
 *   idle-session timer from its last message.
 * - idle: admitted, holds nothing, nothing to do (the idle-session timer, 57P05).
 * - waiting: its work waits for the session behind another client (the queue timeout, 55P03; or the client's own
 *   statement_timeout when it is shorter, 57014, as a Postgres statement waiting for a lock is canceled).
 * - active: its work runs, in PGlite or in the server on its behalf.
 * - holding: holds the session between messages, inside a transaction, an open pipeline or a COPY FROM STDIN
 *   whose data is arriving (the idle-in-transaction timer, 25P03).
 * - closing: going away, its cleanup running. closed: nothing of it is left in the session.
 * Each timer is the server's, or the client's own setting when that is shorter (ClientTimeout, CLIENT_SETTING_OF).
 * What its next message means (COPY data, or dropped until Sync after refused work) is the BatchRunner's: the state
 * says what the client holds and which timer runs.
 */
export type ConnectionState = 'startup' | 'idle' | 'waiting' | 'active' | 'holding' | 'closing' | 'closed'

export type Timeout = 'authentication' | 'idle-session' | 'idle-in-transaction' | 'queue' | 'statement'

export interface TimeoutsMs {
  /** 0: never. */
  idleTimeoutMs: number
  idleInTransactionTimeoutMs: number
  queueTimeoutMs: number
}

/** The FATAL of each timer that ends the connection ('queue' and 'statement' end a wait instead: session-wait.ts). */
const TIMEOUT_FATALS: Readonly<Record<Exclude<Timeout, 'queue' | 'statement'>, WireError>> = {
  authentication: new WireError('FATAL', SqlState.QueryCanceled, 'canceling authentication due to timeout'),
  'idle-session': new WireError(
    'FATAL',
    SqlState.IdleSessionTimeout,
    'terminating connection due to idle-session timeout',
  ),
  'idle-in-transaction': new WireError(
    'FATAL',
    SqlState.IdleInTransactionSessionTimeout,
    'terminating connection due to idle-in-transaction timeout',
  ),
}
const UNREAD_RESULTS_FATAL = new WireError(
  'FATAL',
  SqlState.IdleInTransactionSessionTimeout,
  'terminating connection due to idle-in-transaction timeout: the client stopped reading its results while it held the database session',
)

/**
 * What `timeout` ends the connection with, and its name for the log. A holder that stopped reading its results
 * (`blockedOnOutput`) is not idle: the idle-in-transaction timer reaps it all the same, with the reason named.
 */
export function timeoutFatal(
  timeout: Exclude<Timeout, 'queue' | 'statement'>,
  blockedOnOutput: boolean,
): { error: WireError; what: string } {
  if (timeout === 'idle-in-transaction' && blockedOnOutput)
    return { error: UNREAD_RESULTS_FATAL, what: 'unread results timeout' }
  return { error: TIMEOUT_FATALS[timeout], what: `${timeout} timeout` }
}

/** A client must finish startup and authentication within this long, as Postgres's authentication_timeout. */
export const AUTHENTICATION_TIMEOUT_MS = 60_000

/** Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer one would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** The client's setting that may shorten each timer; a shorter statement_timeout makes a wait's end 57014. */
const CLIENT_SETTING_OF: Readonly<Record<Exclude<Timeout, 'authentication' | 'statement'>, ClientTimeout>> = {
  'idle-session': 'idle_session_timeout',
  'idle-in-transaction': 'idle_in_transaction_session_timeout',
  queue: 'statement_timeout',
}

const TIMER_OF: Readonly<Record<ConnectionState, Exclude<Timeout, 'authentication' | 'statement'> | null>> = {
  startup: 'idle-session',
  idle: 'idle-session',
  waiting: 'queue',
  active: null,
  holding: 'idle-in-transaction',
  closing: null,
  closed: null,
}

export class ConnectionStates {
  #state: ConnectionState = 'startup'
  #since = performance.now()
  /** The current state's timer (null: none), its length, and when it is due (performance.now()). */
  #due: Exclude<Timeout, 'authentication'> | null = null
  #dueMs = 0
  #dueAt = 0
  /**
   * One timer serves them all, armed for #armedAt, never after #dueAt: a state change that moves the deadline later
   * leaves it, and it arms itself again for the rest when it fires early (no timer made per change of state).
   */
  #timer: NodeJS.Timeout | undefined
  #armedAt = 0
  #authenticationDeadline: NodeJS.Timeout | undefined
  readonly #timeouts: TimeoutsMs
  readonly #onTimeout: (timeout: Timeout, ms: number) => void
  readonly #clientTimeoutMs: (setting: ClientTimeout) => number

  /**
   * Starts in `startup`, with the authentication deadline running. `clientTimeoutMs`: the client's own setting now
   * (0: none), read each time a state's timer starts.
   */
  constructor(
    timeouts: TimeoutsMs,
    onTimeout: (timeout: Timeout, ms: number) => void,
    clientTimeoutMs: (setting: ClientTimeout) => number = () => 0,
  ) {
    this.#timeouts = timeouts
    this.#onTimeout = onTimeout
    this.#clientTimeoutMs = clientTimeoutMs
    this.#authenticationDeadline = setTimeout(
      () => onTimeout('authentication', AUTHENTICATION_TIMEOUT_MS),
      AUTHENTICATION_TIMEOUT_MS,
    ).unref()
    this.enter('startup')
  }

  get current(): ConnectionState {
    return this.#state
  }

  /** When the current state was entered (performance.now()). */
  get since(): number {
    return this.#since
  }

  /** Admitted and not going away: its messages are run. */
  get isServing(): boolean {
    return this.#state !== 'startup' && this.#state !== 'closing' && this.#state !== 'closed'
  }

  get isClosing(): boolean {
    return this.#state === 'closing' || this.#state === 'closed'
  }

  /** Move to `state`, or stay in it with its timer started afresh. Nothing leaves closing, but for closed. */
  enter(state: ConnectionState): void {
    if (this.isClosing && state !== 'closed') return
    if (state !== 'startup' && this.#authenticationDeadline !== undefined) {
      clearTimeout(this.#authenticationDeadline)
      this.#authenticationDeadline = undefined
    }
    const now = performance.now()
    if (state !== this.#state) this.#since = now
    this.#state = state
    let timeout: Exclude<Timeout, 'authentication'> | null = TIMER_OF[state]
    let ms = timeout === null ? 0 : this.#msOf(timeout)
    // In startup the client has no settings yet (nor, while constructed, a backend to ask).
    const own = timeout === null || state === 'startup' ? 0 : this.#clientTimeoutMs(CLIENT_SETTING_OF[timeout])
    if (own > 0 && (ms === 0 || own < ms)) {
      if (timeout === 'queue') timeout = 'statement'
      ms = own
    }
    this.#due = timeout !== null && ms > 0 ? timeout : null
    if (this.#due === null) {
      if (this.isClosing) this.#disarm()
      return
    }
    this.#dueMs = ms
    this.#dueAt = now + ms
    if (this.#timer === undefined || this.#armedAt > this.#dueAt) this.#arm(ms)
  }

  #arm(ms: number): void {
    clearTimeout(this.#timer)
    // A longer wait is armed in steps (#fire arms the rest): Node would fire it at once.
    const step = Math.min(ms, MAX_TIMER_MS)
    this.#armedAt = performance.now() + step
    // The client's socket keeps the server running; its timer need not.
    this.#timer = setTimeout(this.#fire, step).unref()
  }

  #disarm(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    const due = this.#due
    if (due === null) return
    // Timers count from the event loop's clock, which may lag performance.now(): within a ms counts as due.
    const left = this.#dueAt - performance.now()
    if (left > 1) {
      this.#arm(left)
      return
    }
    this.#due = null
    this.#onTimeout(due, this.#dueMs)
  }

  #msOf(timeout: Exclude<Timeout, 'authentication' | 'statement'>): number {
    if (timeout === 'idle-session') return this.#timeouts.idleTimeoutMs
    if (timeout === 'idle-in-transaction') return this.#timeouts.idleInTransactionTimeoutMs
    return this.#timeouts.queueTimeoutMs
  }
}
