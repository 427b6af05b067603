// One client socket: its messages read into batches and run in order, what it is sent, and its end, which leaves
// nothing of it in the session (its place there is membership.ts). Bytes in: #onData -> FrameReader -> BatchRunner
// (batch.ts) -> MessageReader (a handler per message) -> ClientBackend -> PGlite. Bytes out: PGlite -> ReplyReader
// (in ClientBackend) -> write.

import type { Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import { randomInt } from 'node:crypto'
import { SqlState, WireError, isDisconnectError, isPGliteFatal } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { FrontendCode, TxStatus, maxMessageLength } from '../protocol/codes.ts'
import { encodeErrorResponse } from '../protocol/backend.ts'
import { FrameReader, type Frames } from '../protocol/frames.ts'
import { onlyTerminate } from '../protocol/frontend.ts'
import { SchedulerClosedError } from '../session/scheduler.ts'
import type { ClientActivity } from '../session/server-functions.ts'
import type { SharedSession } from '../session/session.ts'
import { ClientState } from '../client/state.ts'
import { hexDump } from '../trace/hex-dump.ts'
import type { ConnectionTrace } from '../trace/trace.ts'
import { LastStatement, activityOf } from './activity.ts'
import type { ConnectionHost, ServedConnection } from './host.ts'
import { Membership, type MemberConnection } from './membership.ts'
import { Startup, startupReply, type StartingConnection } from './startup.ts'
import { ClientOutput } from './output.ts'
import type { SpillBudget } from './spill.ts'
import { ConnectionStates, timeoutFatal, type ConnectionState, type Timeout } from './state.ts'
import { noteClientBytes, type TrafficSource } from './traffic.ts'
import { TerminateAnswers } from './signals.ts'

export type { ConnectionState } from './state.ts'

/** Above this many queued batches the socket stops reading until the queue drains. */
const MAX_QUEUED_BATCHES = 64
/**
 * Above this many bytes of notifications (and other replies) waiting for a client that does not read, it is closed:
 * Postgres's listener blocks in its write and the notifications queue on disk; ours would queue in server memory.
 */
const NOTIFICATION_BACKLOG_BYTES = 32 << 20
const BACKLOG_FULL = new WireError('FATAL', SqlState.OutOfMemory, `terminating connection: more than ${NOTIFICATION_BACKLOG_BYTES >> 20} MB of notifications wait for this client to read them`)
const BACKLOG_GRACE_MS = 10_000
/** A FATAL goodbye gets this long to flush before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000
/**
 * A client ended by pg_terminate_backend is told at the latest this long after, if its caller's answer is not out (a
 * caller whose statement waits long for the session; the first cancel of a database's statement takes about 1 s).
 */
const GOODBYE_HOLD_MS = 5000
const ADMIN_SHUTDOWN = new WireError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command')

let nextProcessId = 1000 + (process.pid % 1000) * 1000

/** A connection is what each of its parts needs of it: session member, backend and batch client, starting connection. */
export class Connection implements ServedConnection, StartingConnection, MemberConnection, TrafficSource {
  readonly processId = nextProcessId++
  readonly secretKey = randomInt(0, 2 ** 31)
  /** traffic.ts: the window in which this client last sent bytes. */
  trafficWindow = -1
  /** The client's socket: the TCP or Unix one it connected on, then the TLS one over it once it asked for TLS. */
  socket: Socket
  readonly startupParams = new Map<string, string>()
  /** The database the client connected to, as its startup packet named it. */
  database = ''
  readonly states: ConnectionStates
  readonly inspect: boolean
  readonly #host: ConnectionHost
  readonly #log: Logger
  readonly #startup: Startup
  /** Password messages are valid only while authenticating; every other type as Postgres's main loop allows. */
  readonly #reader: FrameReader = new FrameReader({ maxLength: (code) => (code === FrontendCode.Password ? this.#startup.maxPasswordLength : maxMessageLength(code)) })
  readonly #client: ClientState
  /** The client's place in its database's session: its backend and the runner of its batches there. */
  readonly #membership: Membership
  readonly #queue: Frames[] = []
  #draining = false
  #pausedForBackpressure = false
  /** Everything the client is sent, and the wait for it to read. */
  readonly #output: ClientOutput
  /** The same, as its backend uses it. */
  get output(): ClientOutput {
    return this.#output
  }
  /** A malformed message arrived behind queued work: it fails the connection once that work is answered. */
  #failAfterQueue: WireError | null = null
  #cleanup: Promise<void> | null = null
  #resolveCleanup: () => void = () => {}
  readonly #cleanupDone = new Promise<void>((resolve) => (this.#resolveCleanup = resolve))
  /** The protocol trace of this client's frames, or null when the server traces nothing. */
  readonly #trace: ConnectionTrace | null
  readonly #startedAt = new Date().toISOString()
  /** Going away, told nothing more until its goodbye (see #close). */
  #muted = false
  /** Clients this one ended by pg_terminate_backend, waiting for its answer to go out before they are told. */
  readonly #answers = new TerminateAnswers()
  /** The client's last statement, as pg_stat_activity shows it. */
  readonly #statement: LastStatement

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket
    this.#host = host
    this.#log = host.log.child({ conn: this.processId })
    this.#startup = new Startup(this, host, this.#reader)
    this.#client = new ClientState(this.processId)
    this.#statement = new LastStatement(this.#client.statements)
    this.inspect = host.options.inspect && this.#log.enabled('trace')
    this.#trace = host.trace?.connection(this.processId, socket) ?? null
    this.#output = new ClientOutput(this, this.#log, this.#trace, this.inspect)
    this.states = new ConnectionStates(host.options, (timeout, ms) => this.#timedOut(timeout, ms), () => this.#membership.statementTimeoutMs)
    // Cleanup is wired before anything async can happen, so no path leaks a slot or the session.
    this.#listen(socket)
    socket.setNoDelay(true)
    this.#membership = new Membership(this, host, this.#client, this.#log)
  }

  readonly #onDataEvent = (chunk: Buffer): void => this.#onData(chunk)

  #listen(socket: Socket): void {
    socket.on('data', this.#onDataEvent)
    socket.on('error', (error) => this.#onSocketError(error))
    socket.on('close', () => void this.#close(null))
  }

  /**
   * The server answered SSLRequest with 'S', or the client began a TLS handshake at once (`direct`, its first bytes):
   * from here on the socket carries a TLS session, which Node's TLSSocket runs over it (the handshake first). Errors
   * and close of either socket end the connection. ALPN: postgresql, which a direct handshake must ask for.
   */
  startTls(context: SecureContext, direct?: Buffer): void {
    const plain = this.socket
    plain.off('data', this.#onDataEvent)
    // TLSSocket reads what the plain socket holds unread first (paused, so that it is not emitted to nobody before).
    if (direct) {
      plain.pause()
      plain.unshift(direct)
    }
    const secure = new TLSSocket(plain, { isServer: true, secureContext: context, ALPNProtocols: ['postgresql'] })
    this.socket = secure
    this.#listen(secure)
    if (direct) {
      secure.once('secure', () => {
        // Postgres logs it and closes without a word (it could be any TLS client).
        if (secure.alpnProtocol !== 'postgresql') this.#fail(new WireError('FATAL', SqlState.ProtocolViolation, 'received direct SSL connection request without ALPN protocol negotiation extension', { logOnly: true }))
      })
    }
  }

  get state(): ConnectionState {
    return this.states.current
  }

  get queuedBatches(): number {
    return this.#queue.length
  }

  /** What the client named itself in its startup packet. */
  get applicationName(): string {
    return this.startupParams.get('application_name') ?? ''
  }

  get idleInTransactionSince(): number | null {
    return this.states.current === 'holding' && this.#membership.batches?.idleInTransaction ? this.states.since : null
  }

  /** The client is not reading its replies, so its next batch waits. */
  get blockedOnOutput(): boolean {
    return this.#output.blocked
  }

  /**
   * Send `error` (FATAL) and close; resolves once the session holds nothing of this client. Given `after`, the
   * client's work stops now but it is told, and closed, once `after` resolves (see #close).
   */
  terminate(error: WireError, after?: Promise<void>): Promise<void> {
    return this.#close(error, CLOSE_GRACE_MS, after)
  }

  /** Close without a message (the client asked, or the socket is gone). */
  close(): Promise<void> {
    return this.#close(null)
  }

  /** A CancelRequest with this client's key: see Membership.cancel. */
  cancel(): void {
    this.#membership.cancel()
  }

  /** What pg_stat_activity shows of this client: its pid alone unless `full` (the functions that signal a client need no more). */
  activity(full: boolean): ClientActivity {
    if (!full) return { pid: this.processId }
    const { current, since } = this.states
    const membership = this.#membership
    const batches = membership.batches
    return activityOf({
      processId: this.processId,
      database: this.database,
      user: this.startupParams.get('user') ?? 'postgres',
      applicationName: this.applicationName,
      clientAddress: this.socket.remoteAddress ?? null,
      clientPort: this.socket.remotePort ?? null,
      startedAt: this.#startedAt,
      state: current,
      since,
      idleInTransaction: current === 'holding' && batches?.idleInTransaction ? { aborted: membership.txStatus === TxStatus.Failed } : null,
      blockedOnOutput: this.#output.blocked,
      waitingForLock: batches?.wait.waitingForLock ?? false,
      statement: this.#statement,
    })
  }

  serverClients(full: boolean): ClientActivity[] {
    return this.#host.clients().map((client) => client.activity(full))
  }

  /** pg_cancel_backend or pg_terminate_backend of another client: see signals.ts. */
  signalClient(processId: number, op: 'cancel' | 'terminate'): boolean {
    const target = this.#host.clients().find((client) => client.processId === processId)
    this.#log.debug('signal from a function', { op, target: processId, matched: target !== undefined })
    if (!target) return false
    if (op === 'cancel') target.cancel()
    else void target.terminate(ADMIN_SHUTDOWN, this.#answers.answerTo(processId))
    return true
  }

  answered(processId: number): void {
    this.#answers.answered(processId)
  }

  notify(message: Buffer): void {
    if (!this.states.isServing) return
    if (this.socket.writableLength > NOTIFICATION_BACKLOG_BYTES) {
      this.#log.warn('client not reading its notifications; closing it', { pending: this.socket.writableLength, sqlstate: BACKLOG_FULL.sqlstate })
      // A slow reader gets longer than the usual grace to read what waits for it, down to the FATAL that explains.
      void this.#close(BACKLOG_FULL, BACKLOG_GRACE_MS)
      return
    }
    this.#output.write(message)
  }

  parkIfIdle(): void {
    this.#membership.batches?.parkIfIdle()
  }

  preparedStatementFrames(): Buffer[] {
    return this.#client.statements.parseFrames()
  }

  remakeFailed(frames: readonly Buffer[]): void {
    this.#client.statements.remakeFailed(frames)
  }

  #timedOut(timeout: Timeout, ms: number): void {
    if (timeout === 'queue' || timeout === 'statement') {
      this.#membership.batches?.wait.timeOut(ms, timeout === 'statement')
      return
    }
    const { error, what } = timeoutFatal(timeout, this.#output.blocked)
    this.#log.info(what, { ms, sqlstate: error.sqlstate })
    void this.#close(error)
  }

  /** Nothing to run now: the state at rest says what the client holds. */
  settle(): void {
    const batches = this.#membership.batches
    if (batches) this.states.enter(batches.restingState)
  }

  // --- Input ---

  #onData(chunk: Buffer): void {
    noteClientBytes(this)
    this.#trace?.in(chunk)
    const { states } = this
    if (states.isClosing || this.#failAfterQueue) return
    if (this.inspect) this.#log.trace('frontend bytes', { dump: hexDump(chunk) })
    try {
      this.#reader.push(chunk)
      if (states.current === 'startup') this.#startup.read()
      if (states.isServing) {
        let frames: Frames | null
        while ((frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
      }
      // Nothing to run (a startup packet, or part of a message): the client is quiet again until more arrives, so a
      // holder that stalls mid-message is still reaped, and a client that only connected still times out.
      if (states.current === 'startup') states.enter('startup')
      else if (states.isServing && (!this.#draining || this.#output.blocked)) this.settle()
    } catch (error) {
      // Postgres answers the messages before a malformed one, then fails: let the queued work finish first.
      if (error instanceof WireError && this.#draining) {
        this.#failAfterQueue = error
        this.socket.pause()
        return
      }
      this.#fail(error)
    }
  }

  /**
   * The client is in: tell it the server's parameters, its key, and that it may send queries. Settings its startup
   * packet asked for are applied when it first takes the session (connecting never waits for another client).
   */
  admitted(session: SharedSession, database: string, early: Frames | null, open?: () => Promise<SharedSession>): void {
    if (this.states.current !== 'startup') return
    const reply = startupReply(session, this)
    this.database = database
    this.#membership.admit(session, open)
    this.states.enter('idle')
    this.#output.write(reply)
    if (early) this.#enqueue(early)
    // Messages the client sent while its database opened (few clients send any) run now.
    let frames: Frames | null
    while (this.states.isServing && (frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
  }

  #enqueue(frames: Frames): void {
    this.#queue.push(frames)
    if (this.#queue.length >= MAX_QUEUED_BATCHES && !this.#pausedForBackpressure) {
      this.#pausedForBackpressure = true
      this.socket.pause()
    }
    if (!this.#draining) {
      this.#draining = true
      this.#drain().then(undefined, (error: unknown) => this.#fail(error))
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.states.isServing) {
        const frames = this.#queue.shift()!
        if (this.#pausedForBackpressure && this.#queue.length < MAX_QUEUED_BATCHES / 2) {
          this.#pausedForBackpressure = false
          this.socket.resume()
        }
        const reading = this.#output.waitForReader(true)
        if (reading) {
          await reading
          if (!this.states.isServing) break
        }
        const membership = this.#membership
        if (membership.databasePending) {
          // Terminate needs no database: a client that connects and leaves opens (or creates) none.
          if (onlyTerminate(frames.bytes)) {
            void this.#close(null)
            break
          }
          this.states.enter('active')
          await membership.openDatabase()
          if (!this.states.isServing) break
        }
        this.#statement.note(frames.bytes, this.#heldNothing)
        await membership.batches!.run(frames)
      }
    } finally {
      this.#draining = false
      if (this.#failAfterQueue && this.states.isServing) this.#fail(this.#failAfterQueue)
      if (this.states.current === 'closing') this.#startCleanup()
      else if (this.states.isServing) this.settle()
    }
  }

  /** The client held nothing in the session: a statement it sends now begins a transaction. */
  readonly #heldNothing = (): boolean => !this.#membership.holdsSession

  // --- Output (output.ts) ---

  write(bytes: Uint8Array): void {
    if (!this.#muted) this.#output.write(bytes)
  }

  raw(bytes: Uint8Array): void | Promise<void> {
    return this.#muted ? undefined : this.#output.raw(bytes)
  }

  // --- What ClientOutput asks of its connection, for replies kept on disk (spill.ts) ---

  get spillBudget(): SpillBudget | null {
    return this.#host.options.spill
  }

  /** A statement outside a transaction block ends anyway: its replies may wait on disk while others run. */
  get mayKeepReplies(): boolean {
    return this.states.isServing && this.#membership.txStatus === TxStatus.Idle
  }

  /** Past the cap: its FATAL is queued after its last whole message; it gets as long to read them as a slow listener. */
  cutOff(error: WireError): void {
    void this.#close(new WireError(error.severity, error.sqlstate, error.message, { logOnly: true }), BACKLOG_GRACE_MS)
  }

  // --- Failure and close ---

  #onSocketError(error: Error): void {
    const code = (error as NodeJS.ErrnoException).code
    if (isDisconnectError(error)) this.#log.debug('client disconnected', { code })
    // The client's TLS said no (it refused the certificate, or spoke something else after SSLRequest): it says why.
    else if (code?.startsWith('ERR_SSL_')) this.#log.debug('TLS handshake failed', { code })
    else this.#log.warn('socket error', { error })
    void this.#close(null)
  }

  /** Something went wrong: a WireError reaches the client as it is; anything else is logged and becomes XX000. */
  fail(error: unknown): void {
    this.#fail(error)
  }

  #fail(error: unknown): void {
    if (error instanceof SchedulerClosedError) return
    if (error instanceof WireError) {
      this.#log.debug('closing client', { sqlstate: error.sqlstate, error: error.message })
      void this.#close(error)
      return
    }
    if (isPGliteFatal(error)) {
      this.#log.error('PGlite failed', { error })
      const { session } = this.#membership
      session.markDead(error)
      void this.#close(session.dead)
      return
    }
    // The pg-gateway rule: the client learns only that something failed; the log gets the details.
    this.#log.error('batch failed', { error })
    void this.#close(new WireError('FATAL', SqlState.InternalError, 'internal error in pglite-dev-db; see the server log', { cause: error }))
  }

  /**
   * Close with `error` (FATAL) or none. Given `after`, the client is told nothing more (its canceled statement's
   * error neither) until `after` resolves or GOODBYE_HOLD_MS pass, then gets `error`; its work stops now either way.
   */
  #close(error: WireError | null, graceMs = CLOSE_GRACE_MS, after?: Promise<void>): Promise<void> {
    if (this.states.isClosing) return this.#cleanup ?? this.#cleanupDone
    this.states.enter('closing')
    this.#queue.length = 0
    // Clients it ended wait for an answer it will never send.
    this.#answers.releaseAll()
    const goodbye = (): void => {
      if (error && !error.logOnly) this.#output.write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
      this.#trace?.close(error)
      this.#output.end()
      if (!this.socket.destroyed) {
        const grace = setTimeout(() => this.socket.destroy(), graceMs).unref()
        this.socket.once('close', () => clearTimeout(grace))
      }
    }
    if (after) {
      this.#muted = true
      let hold: NodeJS.Timeout | undefined
      void Promise.race([after, new Promise<void>((resolve) => (hold = setTimeout(resolve, GOODBYE_HOLD_MS)))]).then(() => {
        clearTimeout(hold)
        goodbye()
      })
    } else goodbye()
    // What the client waits for stops now; a running statement is canceled, its batch ends, then #drain starts the
    // cleanup.
    this.#membership.stop(this.#draining)
    if (!this.#draining) this.#startCleanup()
    return this.#cleanupDone
  }

  #startCleanup(): void {
    if (this.#cleanup) return
    this.#cleanup = this.#membership.leave().finally(() => {
      this.states.enter('closed')
      this.#host.closed(this)
      this.#resolveCleanup()
    })
  }
}
