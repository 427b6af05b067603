// A client's place in its database's session, from admission to leaving: a member of the session, with a backend and
// the runner of its batches there. It joins when it is admitted, or, for a database not yet open, before its first
// batch that needs it (so a client that connects and leaves opens, or creates, none); it leaves nothing of itself in
// the session when the connection ends (cleanup.ts).

import type { Logger } from '../../log.ts'
import type { ClientOutput } from './output.ts'
import { TxStatus } from '../protocol/codes.ts'
import { QueryCanceledError } from '../session/scheduler.ts'
import type { SharedSession } from '../session/session.ts'
import { startupSettings, type ClientTimeout } from '../features/settings.ts'
import type { ClientState } from '../features/state.ts'
import { ClientBackend } from './shared-backend.ts'
import { BatchRunner, type BatchClient } from './batch.ts'
import { leaveSession } from './cleanup.ts'
import { sendingClients } from './traffic.ts'
import type { ConnectionHost } from './host.ts'
import { MessageReader } from './messages.ts'

/** What a membership needs of its connection. */
export interface MemberConnection extends BatchClient {
  readonly startupParams: ReadonlyMap<string, string>
  /** The database the client connected to, set when it is admitted. */
  readonly database: string
}

export class Membership {
  readonly #connection: MemberConnection
  readonly #host: ConnectionHost
  readonly #client: ClientState
  readonly #messages: MessageReader
  readonly #log: Logger
  /** The session whose members this client counts among (the main database's until it is admitted elsewhere). */
  #session: SharedSession
  /** Set once joined: the client's backend, and what runs its batches. */
  #backend: ClientBackend | null = null
  #batches: BatchRunner | null = null
  /** Admitted before its database opened: opens it, before the first batch that needs it runs. */
  #open: (() => Promise<SharedSession>) | null = null

  /** The connection counts among the main database's session's members from the start. */
  constructor(connection: MemberConnection, host: ConnectionHost, client: ClientState, log: Logger) {
    this.#connection = connection
    this.#host = host
    this.#client = client
    this.#messages = new MessageReader(client, host.databases !== null, () => connection.database)
    this.#log = log
    this.#session = host.session
    this.#session.members.add(connection)
  }

  get session(): SharedSession {
    return this.#session
  }

  /** What runs the client's batches; null until it has joined its database's session. */
  get batches(): BatchRunner | null {
    return this.#batches
  }

  /**
   * The client's messages arrived: if it is the only client sending and could run now, its database's thread wakes
   * while they are read rather than after. With more sending the thread is seldom asleep, and its look for a call
   * that does not come at once would take a core they need.
   */
  prewake(): void {
    const batches = this.#batches
    const session = this.#session
    if (batches === null || batches.copying || (session.scheduler.owner !== null && !this.holdsSession)) return
    if (sendingClients() <= 1) session.db.prewake?.()
  }

  /** The client holds the session (in a transaction, an open pipeline or a COPY). */
  get holdsSession(): boolean {
    return this.#backend?.isOwner ?? false
  }

  /** The transaction status the client was last told. */
  get txStatus(): number {
    return this.#backend?.txStatus ?? TxStatus.Idle
  }

  /**
   * The client's `setting` (ms; 0: none, or not joined yet). Its idle-in-transaction timeout counts only in a
   * transaction block at rest, as on Postgres: not in an open pipeline, nor while its COPY data comes, nor while it
   * does not read its replies (a backend blocked sending is not idle).
   */
  timeoutMs(setting: ClientTimeout): number {
    if (
      setting === 'idle_in_transaction_session_timeout' &&
      (!this.#batches?.idleInTransaction || this.#connection.output.blocked)
    )
      return 0
    return this.#backend?.timeoutMs(setting) ?? 0
  }

  /** The client is in: it joins `session` now, or, given `open`, before its first batch that needs its database. */
  admit(session: SharedSession, open?: () => Promise<SharedSession>): void {
    if (open) this.#open = open
    else this.#join(session)
  }

  /** The client's database is still to be opened (see admit). */
  get databasePending(): boolean {
    return this.#open !== null
  }

  /** Open (or create) the client's database, and join its session. */
  async openDatabase(): Promise<void> {
    const open = this.#open!
    this.#open = null
    this.#join(await open())
  }

  /** Become a client of `session`: its member, with a backend and a batch runner there. */
  #join(session: SharedSession): void {
    const connection = this.#connection
    if (session !== this.#session) {
      this.#session.members.delete(connection)
      this.#session = session
      session.members.add(connection)
    }
    if (session.dead) throw session.dead
    const backend = new ClientBackend(connection, session, this.#client, this.#log)
    // Settings equal to what the client is told anyway (client_encoding=UTF8 from node-postgres) cost nothing.
    const startup = startupSettings(connection.startupParams)
    const named = new Set(startup.map(([name]) => name.toLowerCase()))
    backend.startWith(
      startup.filter(([name, value]) => session.reportedDefaults.get(name.toLowerCase()) !== value),
      named,
    )
    this.#backend = backend
    const { databases, options } = this.#host
    this.#batches = new BatchRunner(connection, {
      backend,
      messages: this.#messages,
      databases,
      database: connection.database,
      maxCopyBytes: options.maxCopyBytes,
      idleTransactionWaitMs: options.idleTransactionWaitMs,
      log: this.#log,
    })
  }

  /**
   * A CancelRequest with this client's key: as in Postgres, the statement running at that moment ends with 57014,
   * whether it waits for the session behind another client or runs in PGlite (in a worker thread: PGlite in the
   * server's thread cannot be stopped). At other moments it does nothing.
   */
  cancel(): void {
    if (this.#batches?.wait.cancel()) {
      this.#log.debug('queued work canceled', {})
      return
    }
    const backend = this.#backend
    if (!backend) return
    backend.cancelRunning().then(
      (canceled) => this.#log.debug(canceled ? 'running statement canceled' : 'cancel: nothing running', {}),
      (error: unknown) => this.#log.warn('cancel failed', { error }),
    )
  }

  /**
   * See SessionHolder.reclaimSocket: while the statement the socket was lent for runs and the database's thread has not
   * begun to read it, the server reads it again (a client that left is then seen).
   */
  reclaimSocket(output: ClientOutput): boolean {
    if (!output.lent || !this.#backend?.session.db.reclaimLend?.()) return false
    output.endLend()
    return true
  }

  /**
   * The connection closes: a wait for the session is abandoned now; a unit in a combined call that runs is stopped
   * like a running statement (its batch ends with the call); a statement running for a batch of it (`running`) is
   * canceled.
   */
  stop(running: boolean): void {
    const connection = this.#connection
    const session = this.#session
    // Its statements and cursors are closed before the next client takes the session (Postgres never shows them to
    // another backend), not after its cleanup, which a call of its still running holds up.
    session.abandonStatements(this.#client.statements.closeAll())
    this.#batches?.wait.abandon()
    session.combined.forget(connection)
    // Whatever its unit still answers goes nowhere: the client is told only its FATAL, as Postgres tells it.
    if (running) this.#backend?.abandonReply()
    if (this.#batches?.wait.stopRiding(new QueryCanceledError())) this.#log.debug('riding unit stopped on close', {})
    else if (!session.scheduler.isOwner(connection)) session.scheduler.forget(connection)
    else if (running) {
      void this.#backend
        ?.cancelRunning()
        .catch((cancelError: unknown) => this.#log.warn('cancel on close failed', { error: cancelError }))
    }
  }

  /** The connection is gone: nothing of the client is left in the session, and it is no longer a member. Never rejects. */
  leave(): Promise<void> {
    this.#batches?.dropCopy()
    const leaving = this.#backend ? leaveSession(this.#backend, this.#client, this.#log) : Promise.resolve()
    return leaving.finally(() => {
      const connection = this.#connection
      const session = this.#session
      if (session.unnamedStatementOwner === connection) session.unnamedStatementOwner = null
      session.members.delete(connection)
      session.scheduler.forget(connection)
    })
  }
}
