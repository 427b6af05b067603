// Drop-in PGLiteSocketServer: the stock constructor, methods and events, with connections that never
// interleave in PGlite's one session, real ErrorResponses at the connection cap, and timeouts that reap holders.

import type { PGlite } from '@electric-sql/pglite'
import { createServer, type Server, type Socket } from 'node:net'
import { SqlState, WireError } from '../errors.ts'
import { background, createLogger, type Logger } from '../log.ts'
import { Connection } from './connection/connection.ts'
import { sendingClients } from './connection/traffic.ts'
import type { ConnectionHost, ConnectionOptions, ServedConnection } from './connection/host.ts'
import { sessionFor, type SharedSession } from './session/session.ts'
import type { SessionDb } from './session/databases.ts'
import { openedSession, sessionOfPending } from './session/pending-session.ts'
import { SERVER_DEFAULTS, connectionOptions, type PGLiteSocketServerOptions } from './options.ts'
import { TraceFile } from './trace/trace.ts'

export type { PGLiteSocketServerOptions } from './options.ts'

export class PGLiteSocketServer extends EventTarget {
  readonly #session: SharedSession
  readonly #log: Logger
  readonly #conversionsNoted = new WeakSet<SharedSession>()
  readonly #options: ConnectionOptions
  readonly #maxConnections: number
  readonly #path: string | undefined
  readonly #host: string
  #port: number
  #server: Server | null = null
  #active = false
  readonly #connections = new Set<ServedConnection>()
  #admitted = 0
  #stopping: Promise<void> | null = null
  /** The sessions of the databases clients use, each with the unsubscribe of its failure listener. */
  readonly #watched = new Map<SharedSession, () => void>()
  readonly #connectionHost: ConnectionHost
  /**
   * With a `db` promise or a startup gate: resolves once clients can be let in (null), or with what refuses them all.
   * Never rejects, so an early failure waits for start(). Null: clients are let in as soon as the server listens.
   */
  readonly #starting: Promise<{ error: unknown; refusal: WireError } | null> | null
  #startFailure: WireError | null = null
  readonly #tracePath: string | undefined
  #trace: TraceFile | null = null

  /**
   * Stock's per-message queue, in name only, for code written against stock that wraps it: @prisma/dev 0.25 wraps
   * `enqueue` to drop the extra ReadyForQuery that stock's one-message calls produce (this server never makes such
   * calls) and to feed its query insights (which then see nothing). Nothing here calls it, and calling it fails.
   */
  readonly queryQueue: StockQueryQueue = {
    enqueue: () =>
      Promise.reject(
        new Error(
          'PGLiteSocketServer.queryQueue is not used by pglite-dev-db: connections run their messages in batches of their own',
        ),
      ),
    clearQueueForHandler: () => {},
    getQueueLength: () => 0,
  }

  constructor(options: PGLiteSocketServerOptions) {
    super()
    const pendingDb = options.db instanceof Promise ? options.db : null
    const session = pendingDb ? sessionOfPending(pendingDb) : sessionFor(options.db as PGlite | SessionDb)
    this.#session = session
    this.#log = options.logger ?? createLogger({ level: options.inspect ? 'trace' : options.debug ? 'debug' : 'warn' })
    this.#path = options.path
    this.#host = options.host || '127.0.0.1'
    this.#port = options.port ?? 5432
    this.#maxConnections = options.maxConnections ?? SERVER_DEFAULTS.maxConnections
    this.#tracePath = options.trace
    const gate = options.startupGate
    this.#starting =
      pendingDb || gate
        ? (async () => {
            await Promise.all([pendingDb && openedSession(pendingDb), gate])
            await session.startupPrefix()
            this.#noteConversionsKept(session)
          })().then(
            () => null,
            (error: unknown) => {
              const cause = error ?? new Error('startupGate rejected')
              this.#startFailure =
                cause instanceof WireError
                  ? cause
                  : new WireError(
                      'FATAL',
                      SqlState.InternalError,
                      cause instanceof Error ? cause.message : String(cause),
                      { cause },
                    )
              return { error: cause, refusal: this.#startFailure }
            },
          )
        : null
    this.#options = connectionOptions({ ...options, idleTimeoutMs: options.idleTimeoutMs ?? options.idleTimeout })
    const databases = options.databases ?? null
    const trace = (): TraceFile | null => this.#trace
    this.#connectionHost = {
      session: this.#session,
      databases,
      openSession: async (name) => {
        const session = sessionFor(await databases!.open(name))
        this.#watch(session)
        await session.startupPrefix()
        this.#noteConversionsKept(session)
        return session
      },
      log: this.#log,
      options: this.#options,
      get trace() {
        return trace()
      },
      started: () => this.#starting?.then((failed) => failed?.refusal ?? null) ?? Promise.resolve(null),
      admit: (connection) => {
        if (this.#startFailure) return this.#startFailure
        if (!this.#active)
          return new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is shutting down')
        if (this.#session.dead) return this.#session.dead as WireError
        if (this.#admitted >= this.#maxConnections) {
          this.#log.warn('connection refused: too many clients', {
            maxConnections: this.#maxConnections,
            conn: connection.processId,
          })
          return new WireError('FATAL', SqlState.TooManyConnections, 'sorry, too many clients already')
        }
        this.#admitted++
        admitted.add(connection)
        return null
      },
      clients: () => [...this.#connections].filter((c) => admitted.has(c)),
      cancel: (processId, secretKey) => {
        const target = [...this.#connections].find((c) => c.processId === processId && c.secretKey === secretKey)
        this.#log.debug('cancel request', { target: processId, matched: target !== undefined })
        target?.cancel()
      },
      closed: (connection) => {
        this.#connections.delete(connection)
        if (admitted.delete(connection)) this.#admitted--
      },
    }
  }

  /**
   * The main database: the one given as `db` (given as a promise: what it resolved to, once start() has resolved), or
   * after `select pglite_dev_db.reset()` on it, the fresh instance.
   */
  get db(): PGlite | SessionDb {
    return this.#session.db
  }

  /** The port actually bound (known after `start()` when 0 was asked for). */
  get port(): number {
    return this.#port
  }

  get host(): string {
    return this.#host
  }

  /**
   * Resolves once PGlite is ready, the socket is listening and the startup gate (if any) is open. Given a `db`
   * promise or a gate, the 'listening' event comes first: clients may connect from then on.
   */
  async start(): Promise<void> {
    if (this.#server) throw new Error('Socket server already started')
    if (!this.#starting) {
      await this.db.waitReady
      await this.#session.startupPrefix()
    }
    if (this.#tracePath !== undefined) this.#trace = TraceFile.acquire(this.#tracePath, this.#log)
    try {
      await this.#listen()
    } catch (error) {
      await this.#releaseTrace()
      throw error
    }
    if (!this.#starting) return
    const failed = await this.#starting
    if (failed) {
      // The clients waiting are told why before the goodbye that stop() sends.
      await Promise.all([...this.#connections].map((connection) => connection.terminate(failed.refusal)))
      await this.stop()
      throw failed.error
    }
    this.#log.debug('accepting clients', {})
  }

  async #listen(): Promise<void> {
    // Half-open: a client's FIN does not close its socket until the connection has dealt with what the client sent
    // before it (a Terminate among it), so the client sees the close only after the server let go of its work.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.#accept(socket))
    this.#server = server
    this.#active = true
    this.#watch(this.#session)
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => {
        this.#server = null
        this.#active = false
        reject(error)
      }
      server.once('error', onError)
      const listening = (): void => {
        server.off('error', onError)
        server.on('error', (error) => {
          this.#log.error('server error', { error })
          this.dispatchEvent(new CustomEvent('error', { detail: error }))
        })
        const address = server.address()
        if (address && typeof address === 'object') this.#port = address.port
        this.#log.debug('listening', { at: this.getServerConn() })
        this.dispatchEvent(
          new CustomEvent('listening', {
            detail: this.#path ? { path: this.#path } : { port: this.#port, host: this.#host },
          }),
        )
        resolve()
      }
      if (this.#path) server.listen(this.#path, listening)
      else server.listen(this.#port, this.#host, listening)
    })
  }

  getServerConn(): string {
    if (this.#path) return this.#path
    return `${this.#host}:${this.#port}`
  }

  /**
   * Stock's figures, and: clients waiting for the session, whether any session is held, clients not reading their
   * replies, calls that ran several clients' units at once (with how many units they carried), clients whose socket
   * their database's thread reads now and the units it ran so (engine/lent-reads.ts), the bytes of replies kept on
   * disk for clients that have not read them (`maxSpillBytes`), and clients that sent in the last 100-200 ms.
   */
  getStats(): {
    activeConnections: number
    queuedQueries: number
    maxConnections: number
    waitingClients: number
    sessionHeld: boolean
    notReadingClients: number
    combinedCalls: number
    combinedUnits: number
    clientsReadByDatabaseThreads: number
    unitsReadByDatabaseThreads: number
    spilledBytes: number
    sendingClients: number
  } {
    let queued = 0
    let notReading = 0
    let lent = 0
    for (const connection of this.#connections) {
      queued += connection.queuedBatches
      if (connection.blockedOnOutput) notReading++
      if (connection.output.lent) lent++
    }
    let waiting = 0
    let held = false
    let combinedCalls = 0
    let combinedUnits = 0
    let lentUnits = 0
    for (const session of this.#watched.keys()) {
      waiting += session.waitingClients
      held ||= session.scheduler.owner !== null
      combinedCalls += session.combined.stats.calls
      combinedUnits += session.combined.stats.units
      lentUnits += session.lentUnits
    }
    return {
      activeConnections: this.#admitted,
      queuedQueries: queued,
      maxConnections: this.#maxConnections,
      waitingClients: waiting,
      sessionHeld: held,
      notReadingClients: notReading,
      combinedCalls,
      combinedUnits,
      clientsReadByDatabaseThreads: lent,
      unitsReadByDatabaseThreads: lentUnits,
      spilledBytes: this.#options.spill?.used ?? 0,
      sendingClients: sendingClients(),
    }
  }

  /**
   * Stop accepting, send FATAL 57P01 to every client, and resolve once each client's transaction is rolled back
   * and its socket closed. Does not close the PGlite instance: the caller owns it.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop(): Promise<void> {
    this.#active = false
    for (const off of this.#watched.values()) off()
    this.#watched.clear()
    const server = this.#server
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
    const goodbye = new WireError(
      'FATAL',
      SqlState.AdminShutdown,
      'terminating connection due to administrator command',
    )
    await Promise.all([...this.#connections].map((connection) => connection.terminate(goodbye)))
    await closed
    await this.#releaseTrace()
    this.#server = null
    this.#log.debug('stopped', {})
    this.dispatchEvent(new CustomEvent('close'))
  }

  async #releaseTrace(): Promise<void> {
    const trace = this.#trace
    this.#trace = null
    await trace?.release()
  }

  #accept(socket: Socket): void {
    if (!this.#active) {
      socket.destroy()
      return
    }
    const connection = new Connection(socket, this.#connectionHost)
    this.#connections.add(connection)
    this.dispatchEvent(
      new CustomEvent('connection', {
        detail: { clientAddress: socket.remoteAddress ?? 'unknown', clientPort: socket.remotePort ?? 0 },
      }),
    )
  }

  /** Said once per session: a client asking for an encoding conversion still ends that database. */
  #noteConversionsKept(session: SharedSession): void {
    if (session.conversionsKept === null || this.#conversionsNoted.has(session)) return
    this.#conversionsNoted.add(session)
    this.#log.warn(
      'the encoding conversions PGlite cannot run stay in the catalog: a client asking for one ends the database',
      { why: session.conversionsKept },
    )
  }

  /** Follow a database's session: if its PGlite fails, its clients are told. */
  #watch(session: SharedSession): void {
    if (this.#watched.has(session) || !this.#active) return
    this.#watched.set(
      session,
      session.onDead((error) => this.#onDatabaseDead(session, error)),
    )
  }

  #onDatabaseDead(session: SharedSession, error: Error): void {
    if (session !== this.#session) {
      // Another database failed: its clients are told, the others carry on.
      this.#log.error('a database failed; closing its connections', { error })
      for (const member of session.members)
        background(member.terminate(error as WireError), 'close connection after database failure', this.#log)
      return
    }
    this.#log.error('database failed; closing every connection', { error })
    this.dispatchEvent(new CustomEvent('error', { detail: error }))
    // Keep listening: a client that connects now is told why (admit answers with the same FATAL), not just dropped.
    for (const connection of this.#connections)
      background(connection.terminate(error as WireError), 'close connection after database failure', this.#log)
  }
}

const admitted = new WeakSet<ServedConnection>()

/** The public methods of stock's QueryQueueManager. */
export interface StockQueryQueue {
  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number>
  clearQueueForHandler(handlerId: number): void
  getQueueLength(): number
}
