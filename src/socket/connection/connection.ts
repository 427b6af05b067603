// One client socket: its state, changed in one place that also runs its timers; its messages, read into batches
// and run in order through its backend; what it is sent; and its end, which leaves nothing of it in the session.
// Bytes in: #onData -> FrameReader -> #runBatch -> MessageReader (a handler per message) -> ClientBackend -> PGlite.
// Bytes out: PGlite -> ReplyReader (in ClientBackend) -> #write -> socket.

import type { Socket } from 'node:net'
import { randomInt } from 'node:crypto'
import { SqlState, WireError, isDisconnectError, isPGliteFatal } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { CODE_LENGTH, FrontendCode, maxMessageLength } from '../protocol/codes.ts'
import { encodeBackendKeyData, encodeErrorResponse, encodeReadyForQuery } from '../protocol/backend.ts'
import { FrameReader, type Frames } from '../protocol/frames.ts'
import { QueryCanceledError, QueueTimeoutError, SchedulerClosedError } from '../session/scheduler.ts'
import type { SharedSession } from '../session/session.ts'
import type { CopyIn } from '../client/copy-in.ts'
import { startupSettings } from '../client/settings.ts'
import { Statements } from '../client/statements.ts'
import { hexDump } from '../trace/hex-dump.ts'
import type { ConnectionTrace } from '../trace/trace.ts'
import { ClientBackend, type BackendClient } from './backend.ts'
import { leaveSession } from './cleanup.ts'
import { gatherCopy, startCopy } from './copy-in.ts'
import { bindDatabaseCommand, queryDatabaseCommand, resetDatabaseIfRequested, taggedExecute } from './database-commands.ts'
import { discardForClient } from './discard-all.ts'
import type { ConnectionHost } from './host.ts'
import { MessageReader, unnamedUseOf, UnnamedUse, type Segment, type Takeover } from './messages.ts'
import { Startup, type StartingConnection } from './startup.ts'
import type { Turn } from './turn.ts'

/**
 * Where a connection is in its life. Each state has its own timer, started on entering it (see #enter):
 * - startup: SSL/GSS negotiation, the startup packet, authentication, opening its database (the authentication
 *   deadline from connecting, and the idle-session timer).
 * - idle: ready, holds nothing, nothing to do (the idle-session timer, 57P05).
 * - waiting: its work waits for the session behind another client (the queue timeout, 55P03).
 * - active: its work runs, in PGlite or in the server on its behalf.
 * - holding: holds the session between messages, inside a transaction or an open pipeline (the
 *   idle-in-transaction timer, 25P03).
 * - copy-in: holds the session while its COPY FROM STDIN data arrives (the idle-in-transaction timer).
 * - discarding: its waiting work was refused (cancel, queue timeout); what it sends is dropped until Sync, as after
 *   an error. Holds nothing (the idle-session timer).
 * - closing: going away; its cleanup runs. closed: nothing of it is left in the session.
 */
export type ConnectionState = 'startup' | 'idle' | 'waiting' | 'active' | 'holding' | 'copy-in' | 'discarding' | 'closing' | 'closed'

/** Above this many queued batches the socket stops reading until the queue drains. */
const MAX_QUEUED_BATCHES = 64
/**
 * Above this many bytes of replies not yet taken by the client, its next batch waits until the client reads
 * (backpressure): a client that stops reading holds at most this plus one batch's replies in our memory.
 */
const OUTPUT_HIGH_WATER = 1 << 20
/** Close the unnamed statement; Flush, not Sync, so a pipeline the client has open stays open. */
const CLOSE_UNNAMED_STATEMENT = Buffer.from([FrontendCode.Close, 0, 0, 0, 6, 0x53, 0, FrontendCode.Flush, 0, 0, 0, 4])
const CANCELED_RESPONSE = encodeErrorResponse('ERROR', SqlState.QueryCanceled, 'canceling statement due to user request')
/** A FATAL goodbye gets this long to flush before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000
/** A client must finish startup and authentication within this long, as Postgres's authentication_timeout. */
const AUTHENTICATION_TIMEOUT_MS = 60_000

let nextProcessId = 1000 + (process.pid % 1000) * 1000

export class Connection implements BackendClient, StartingConnection {
  readonly processId = nextProcessId++
  readonly secretKey = randomInt(0, 2 ** 31)
  readonly socket: Socket
  readonly startupParams = new Map<string, string>()
  /** The database the client connected to, as its startup packet named it. */
  database = ''
  #state: ConnectionState = 'startup'
  readonly #host: ConnectionHost
  readonly #log: Logger
  readonly #startup: Startup
  /** Password messages are valid only while authenticating; every other type as Postgres's main loop allows. */
  readonly #reader: FrameReader = new FrameReader({ maxLength: (code) => (code === FrontendCode.Password ? this.#startup.maxPasswordLength : maxMessageLength(code)) })
  readonly #statements: Statements
  readonly #messages: MessageReader
  /** Set once admitted, with the session of the client's database. */
  #backend: ClientBackend | null = null
  /** The session whose members this client counts among (the main database's until it is admitted elsewhere). */
  #session: SharedSession
  readonly #queue: Frames[] = []
  #draining = false
  #pausedForBackpressure = false
  /** Waiting for the client to read its replies before running more of its work. */
  #blockedOnOutput = false
  /** A malformed message arrived behind queued work: it fails the connection once that work is answered. */
  #failAfterQueue: WireError | null = null
  /** The COPY FROM STDIN whose data is arriving. */
  #copy: CopyIn | null = null
  /** Refused work: messages are dropped until Sync. */
  #discarding = false
  #timer: NodeJS.Timeout | undefined
  readonly #startupDeadline: NodeJS.Timeout
  #cleanup: Promise<void> | null = null
  #resolveCleanup: () => void = () => {}
  readonly #cleanupDone = new Promise<void>((resolve) => (this.#resolveCleanup = resolve))
  readonly #inspect: boolean
  /** The protocol trace of this client's frames, or null when the server traces nothing. */
  readonly #trace: ConnectionTrace | null

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket
    this.#host = host
    this.#session = host.session
    this.#log = host.log.child({ conn: this.processId })
    this.#startup = new Startup(this, host, this.#reader)
    this.#statements = new Statements(this.processId)
    this.#messages = new MessageReader(this.#statements, host.databases !== null)
    this.#inspect = host.options.inspect && this.#log.enabled('trace')
    this.#trace = host.trace?.connection(this.processId, socket) ?? null
    // Cleanup is wired before anything async can happen, so no path leaks a slot or the session.
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (error) => this.#onSocketError(error))
    socket.on('close', () => void this.#close(null))
    socket.setNoDelay(true)
    this.#session.members.add(this)
    // Startup and authentication have one deadline from the moment the client connected, as in Postgres.
    this.#startupDeadline = setTimeout(() => {
      this.#log.info('authentication timeout', { ms: AUTHENTICATION_TIMEOUT_MS, sqlstate: SqlState.QueryCanceled })
      void this.#close(new WireError('FATAL', SqlState.QueryCanceled, 'canceling authentication due to timeout'))
    }, AUTHENTICATION_TIMEOUT_MS).unref()
    this.#enter('startup')
  }

  get state(): ConnectionState {
    return this.#state
  }

  get queuedBatches(): number {
    return this.#queue.length
  }

  /** The client is not reading its replies, so its next batch waits. */
  get blockedOnOutput(): boolean {
    return this.#blockedOnOutput
  }

  /** Send `error` (FATAL) and close; resolves once the session holds nothing of this client. */
  terminate(error: WireError): Promise<void> {
    return this.#close(error)
  }

  /** Close, with `error` sent first if any (the client asked, the socket is gone, or the start-up refused it). */
  close(error: WireError | null = null): Promise<void> {
    return this.#close(error)
  }

  /**
   * A CancelRequest with this client's key. Postgres cancels the statement running at that moment; here the
   * statement that can be waiting is one queued behind another client's transaction, and that one is canceled.
   * A statement already inside PGlite runs to completion (PGlite cannot be interrupted).
   */
  cancel(): void {
    if (this.#session.scheduler.cancelWait(this, new QueryCanceledError())) this.#log.debug('queued work canceled', {})
  }

  notify(message: Buffer): void {
    if (this.#isReady) this.#write(message)
  }

  preparedStatementFrames(): Buffer[] {
    return this.#statements.parseFrames()
  }

  // --- State ---

  get #isReady(): boolean {
    return this.#state !== 'startup' && this.#state !== 'closing' && this.#state !== 'closed'
  }

  /** Move to `state` (or stay in it): its timer starts afresh, any other stops. Nothing leaves closing or closed. */
  #enter(state: ConnectionState): void {
    if ((this.#state === 'closing' || this.#state === 'closed') && state !== 'closed') return
    this.#state = state
    clearTimeout(this.#timer)
    this.#timer = undefined
    const { idleInTransactionTimeoutMs, idleTimeoutMs, queueTimeoutMs } = this.#host.options
    switch (state) {
      case 'startup':
      case 'idle':
      case 'discarding':
        if (idleTimeoutMs > 0) this.#timer = setTimeout(() => this.#timeOut('idle-session timeout', idleTimeoutMs, SqlState.IdleSessionTimeout, 'terminating connection due to idle-session timeout'), idleTimeoutMs)
        break
      case 'holding':
      case 'copy-in':
        if (idleInTransactionTimeoutMs > 0) {
          this.#timer = setTimeout(
            () => this.#timeOut('idle-in-transaction timeout', idleInTransactionTimeoutMs, SqlState.IdleInTransactionSessionTimeout, 'terminating connection due to idle-in-transaction timeout'),
            idleInTransactionTimeoutMs,
          )
        }
        break
      case 'waiting':
        if (queueTimeoutMs > 0) this.#timer = setTimeout(() => this.#queueTimeout(queueTimeoutMs), queueTimeoutMs)
        break
      case 'closing':
      case 'closed':
        clearTimeout(this.#startupDeadline)
        break
    }
  }

  /** Nothing to run now: the state at rest that says what the client holds. */
  #settle(): void {
    const owner = this.#backend?.isOwner ?? false
    this.#enter(owner ? (this.#copy ? 'copy-in' : 'holding') : this.#discarding ? 'discarding' : 'idle')
  }

  #timeOut(what: string, ms: number, sqlstate: (typeof SqlState)[keyof typeof SqlState], message: string): void {
    this.#log.info(what, { ms, sqlstate })
    void this.#close(new WireError('FATAL', sqlstate, message))
  }

  #queueTimeout(timeoutMs: number): void {
    const holder = this.#session.scheduler.owner
    const who = holder ? `client ${holder.processId} holds it` : 'other clients were ahead'
    this.#log.info('queue timeout', { ms: timeoutMs, holder: holder?.processId, sqlstate: SqlState.LockNotAvailable })
    const error = new QueueTimeoutError(`canceling statement: waited ${timeoutMs} ms for the database session, which ${who} (pglite-dev-db runs one client's transaction at a time)`)
    this.#session.scheduler.cancelWait(this, error)
  }

  // --- Input ---

  #onData(chunk: Buffer): void {
    this.#trace?.in(chunk)
    if (!this.#isReady && this.#state !== 'startup') return
    if (this.#failAfterQueue) return
    if (this.#inspect) this.#log.trace('frontend bytes', { dump: hexDump(chunk) })
    try {
      this.#reader.push(chunk)
      if (this.#state === 'startup') this.#startup.read()
      if (this.#isReady) {
        let frames: Frames | null
        while ((frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
      }
      // Nothing to run (a startup packet, or part of a message): the client is quiet again until more arrives, so a
      // holder that stalls mid-message is still reaped, and a client that only connected still times out.
      if (this.#state === 'startup') this.#enter('startup')
      else if (this.#isReady && (!this.#draining || this.#blockedOnOutput)) this.#settle()
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
  admitted(session: SharedSession, database: string, early: Frames | null): void {
    if (this.#state !== 'startup') return
    if (session !== this.#session) {
      this.#session.members.delete(this)
      this.#session = session
      session.members.add(this)
    }
    if (session.dead) throw session.dead
    const prefix = session.startupPrefixNow
    if (!prefix) throw new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up')
    this.database = database
    const backend = new ClientBackend(this, session, this.#messages, this.#log)
    // Settings equal to what the client is told anyway (client_encoding=UTF8 from node-postgres) cost nothing.
    backend.startWith(startupSettings(this.startupParams).filter(([name, value]) => session.reportedDefaults.get(name.toLowerCase()) !== value))
    this.#backend = backend
    clearTimeout(this.#startupDeadline)
    this.#enter('idle')
    this.#write(Buffer.concat([prefix, encodeBackendKeyData(this.processId, this.secretKey), encodeReadyForQuery(backend.txStatus)]))
    if (early) this.#enqueue(early)
    // Messages the client sent while its database opened (few clients send any) run now.
    let frames: Frames | null
    while (this.#isReady && (frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
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
      while (this.#queue.length > 0 && this.#isReady) {
        const frames = this.#queue.shift()!
        if (this.#pausedForBackpressure && this.#queue.length < MAX_QUEUED_BATCHES / 2) {
          this.#pausedForBackpressure = false
          this.socket.resume()
        }
        if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
          await this.#outputDrained()
          if (!this.#isReady) break
        }
        await this.#runBatch(frames)
      }
    } finally {
      this.#draining = false
      if (this.#failAfterQueue && this.#isReady) this.#fail(this.#failAfterQueue)
      if (this.#state === 'closing') this.#startCleanup()
      else if (this.#isReady) this.#settle()
    }
  }

  /**
   * Wait until the client has read its replies (or gone). A session holder that stops reading is reaped by the
   * idle-in-transaction timer as any stalled holder is; a client at rest holds nothing while it waits.
   */
  async #outputDrained(): Promise<void> {
    const socket = this.socket
    this.#blockedOnOutput = true
    this.#log.debug('client not reading; waiting before its next batch', { pending: socket.writableLength })
    this.#settle()
    try {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done)
          socket.off('close', done)
          resolve()
        }
        socket.on('drain', done)
        socket.on('close', done)
      })
    } finally {
      this.#blockedOnOutput = false
    }
  }

  // --- Running the client's messages ---

  /**
   * Run one read's messages, in as few calls into PGlite as possible: normally one. Each message goes to its
   * handler; where the server takes a message over, what came before it runs first. While a COPY gathers data, or
   * after refused work until Sync, messages go there instead.
   */
  async #runBatch(frames: Frames): Promise<void> {
    this.#enter('active')
    const { bytes } = frames
    const messages = this.#messages
    messages.begin(bytes)
    let offset = 0
    while (offset < bytes.length && this.#isReady) {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (this.#copy) {
        await gatherCopy(this.#turn, this.#copy, code, bytes.subarray(offset, end))
        messages.take(end)
      } else if (this.#discarding && code !== FrontendCode.Terminate) {
        if (code === FrontendCode.Sync) this.#endDiscarding()
        messages.take(end)
      } else {
        const takeover = messages.handle(offset, end)
        if (takeover) {
          await this.#runSegment(messages.take(offset))
          messages.take(end)
          if (takeover.kind === 'terminate') {
            void this.#close(null)
            return
          }
          if (!this.#discarding && this.#isReady) await this.#takeOver(takeover)
        }
      }
      offset = end
    }
    if (this.#isReady) await this.#runSegment(messages.take(bytes.length))
  }

  /** One path for every takeover: the server acts in the message's place. */
  async #takeOver(takeover: Exclude<Takeover, { kind: 'terminate' }>): Promise<void> {
    switch (takeover.kind) {
      case 'copy-in':
        return startCopy(this.#turn, takeover.copy, takeover.frame, takeover.viaQuery)
      case 'database-command':
        return takeover.via === 'query' ? queryDatabaseCommand(this.#turn, takeover.command, takeover.frame) : bindDatabaseCommand(this.#turn, takeover.command, takeover.frame)
      case 'tagged-execute':
        return taggedExecute(this.#turn, takeover.command, takeover.frame)
      case 'session-reset':
        return discardForClient(this.#turn, takeover.reset, takeover.frame)
    }
  }

  /** Run messages as the owner and apply the release rule. Refused work is answered as a failed statement. */
  async #runSegment({ bytes, unnamedUse }: Segment): Promise<void> {
    if (bytes.length === 0) return
    try {
      await this.#own()
    } catch (error) {
      const rest = this.#refuse(error, bytes)
      if (rest < bytes.length) await this.#runSegment({ bytes: bytes.subarray(rest), unnamedUse: unnamedUseOf(bytes.subarray(rest)) })
      return
    }
    const backend = this.#backend!
    if (this.#mustCloseUnnamedStatement(unnamedUse)) await backend.capture(CLOSE_UNNAMED_STATEMENT)
    if (this.#inspect) this.#log.trace('to pglite', { dump: hexDump(bytes) })
    await backend.run(bytes)
    await this.#releaseIfAtRest()
  }

  /**
   * The session's unnamed statement is whichever client last made one. A client that binds or describes it without
   * having made it must get Postgres's answer (26000), not another client's statement: true when it must be closed
   * first. Records this client as its maker when the segment makes one.
   */
  #mustCloseUnnamedStatement(use: number): boolean {
    if (use === 0) return false
    const session = this.#session
    const mustClose = (use & UnnamedUse.ReferencedFirst) !== 0 && session.unnamedStatementOwner !== this
    session.unnamedStatementOwner = (use & UnnamedUse.Parsed) !== 0 ? this : mustClose ? null : session.unnamedStatementOwner
    return mustClose
  }

  /**
   * Become the session's owner, waiting behind other clients if need be. A wait can end in QueryCanceledError (the
   * client's CancelRequest) or QueueTimeoutError (longer than queueTimeoutMs): see #refuse.
   */
  async #own(): Promise<void> {
    const backend = this.#backend!
    if (backend.isOwner) return
    const wait = this.#session.scheduler.acquire(this)
    if (wait) {
      this.#enter('waiting')
      try {
        await wait
      } finally {
        this.#enter('active')
      }
      if (!this.#isReady) throw new SchedulerClosedError('the connection is closing')
    }
    await backend.tookSession()
  }

  /** The release rule: the session goes to the next client once this one is at rest. */
  async #releaseIfAtRest(): Promise<void> {
    const backend = this.#backend!
    if (!backend.isOwner || !backend.atRest) return
    await resetDatabaseIfRequested(this.#turn)
    await backend.release()
  }

  /**
   * Waiting work in `bytes` never ran: it was canceled or timed out. Answer as Postgres answers a statement that
   * fails: the ErrorResponse, the rest of the Sync- or Query-ended unit skipped, ReadyForQuery. Returns where the
   * refused unit ends in `bytes` (its length when its Sync has not arrived: later messages are dropped until it
   * does). The client was waiting, so it held nothing: no transaction or pipeline of its own is open in PGlite.
   */
  #refuse(error: unknown, bytes: Buffer): number {
    if (error instanceof QueryCanceledError) this.#write(CANCELED_RESPONSE)
    else if (error instanceof QueueTimeoutError) this.#write(encodeErrorResponse('ERROR', SqlState.LockNotAvailable, error.message))
    else throw error
    const first = bytes[0]
    const length = CODE_LENGTH + bytes.readInt32BE(CODE_LENGTH)
    if (first === FrontendCode.Query || first === FrontendCode.FunctionCall) {
      // A simple-protocol statement: its own ReadyForQuery ends it.
      this.#write(encodeReadyForQuery(this.#backend!.txStatus))
      return length
    }
    this.#discarding = true
    for (let offset = 0; offset < bytes.length; ) {
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (bytes[offset] === FrontendCode.Sync) {
        this.#endDiscarding()
        return end
      }
      offset = end
    }
    return bytes.length
  }

  /** The Sync that ends refused work: it gets its ReadyForQuery (Postgres drops a Query sent meanwhile too). */
  #endDiscarding(): void {
    this.#discarding = false
    this.#write(encodeReadyForQuery(this.#backend!.txStatus))
  }

  /** What a takeover may do on this client's behalf. */
  readonly #turn: Turn = (() => {
    const connection = this
    return {
      get backend() {
        return connection.#backend!
      },
      get messages() {
        return connection.#messages
      },
      get host() {
        return connection.#host
      },
      get log() {
        return connection.#log
      },
      get database() {
        return connection.database
      },
      own: () => this.#own(),
      run: (bytes: Buffer) => this.#runSegment({ bytes, unnamedUse: unnamedUseOf(bytes) }),
      refuse: (error: unknown, frame: Buffer) => void this.#refuse(error, frame),
      releaseIfAtRest: () => this.#releaseIfAtRest(),
      write: (bytes: Uint8Array) => this.#write(bytes),
      discardUntilSync: () => void (this.#discarding = true),
      get copy() {
        return connection.#copy
      },
      set copy(copy: CopyIn | null) {
        connection.#copy = copy
      },
    }
  })()

  // --- Output ---

  /** Everything the client receives goes through here: PGlite's replies and the server's own messages. */
  write(bytes: Uint8Array): void {
    this.#write(bytes)
  }

  #write(bytes: Uint8Array): void {
    if (this.#inspect) this.#log.trace('to client', { dump: hexDump(bytes) })
    if (!this.socket.writable) return
    this.#trace?.out(bytes)
    this.socket.write(bytes)
  }

  cork(): void {
    this.socket.cork()
  }

  uncork(): void {
    this.socket.uncork()
  }

  // --- Failure and close ---

  #onSocketError(error: Error): void {
    if (isDisconnectError(error)) this.#log.debug('client disconnected', { code: (error as NodeJS.ErrnoException).code })
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
      this.#session.markDead(error)
      void this.#close(this.#session.dead)
      return
    }
    // The pg-gateway rule: the client learns only that something failed; the log gets the details.
    this.#log.error('batch failed', { error })
    void this.#close(new WireError('FATAL', SqlState.InternalError, 'internal error in pglite-dev-db; see the server log', { cause: error }))
  }

  #close(error: WireError | null): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return this.#cleanup ?? this.#cleanupDone
    this.#enter('closing')
    this.#queue.length = 0
    if (error) this.#write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
    this.#trace?.close(error)
    this.socket.end()
    if (!this.socket.destroyed) {
      const grace = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref()
      this.socket.once('close', () => clearTimeout(grace))
    }
    // A wait for the session is abandoned now; a running batch finishes first, then #drain starts the cleanup.
    if (!this.#session.scheduler.isOwner(this)) this.#session.scheduler.forget(this)
    if (!this.#draining) this.#startCleanup()
    return this.#cleanupDone
  }

  #startCleanup(): void {
    if (this.#cleanup) return
    this.#copy = null
    const leaving = this.#backend ? leaveSession(this.#backend, this.#statements, this.#log) : Promise.resolve()
    this.#cleanup = leaving.finally(() => {
      if (this.#session.unnamedStatementOwner === this) this.#session.unnamedStatementOwner = null
      this.#session.members.delete(this)
      this.#session.scheduler.forget(this)
      this.#enter('closed')
      this.#host.closed(this)
      this.#resolveCleanup()
    })
  }
}
