// One client socket: startup, then batches of its frames through the shared session in order, the release
// rule, idle timers, and cleanup that leaves no trace in the session whenever and however the client goes.

import type { Socket } from 'node:net'
import { randomInt } from 'node:crypto'
import { SqlState, WireError, isDisconnectError, isPGliteFatal, type SqlStateCode } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { FrameReader, forEachFrame, protocolViolation, type Frames } from '../protocol/frames.ts'
import {
  BackendCode,
  CODE_LENGTH,
  FrontendCode,
  HEADER_LENGTH,
  StartupCode,
  SYNC_MESSAGE,
  TxStatus,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeNegotiateProtocolVersion,
  encodeParameterStatus,
  encodeQuery,
  encodeReadyForQuery,
  encodeUnnamedExecution,
  maxMessageLength,
} from '../protocol/codes.ts'
import { ReplyScanner } from '../protocol/replies.ts'
import { ClientNames, MessageRestorer, UnnamedUse, unnamedStatementUse } from '../client/statements.ts'
import { encodeCommandComplete, mayResetSession, parseSessionReset, type SessionReset } from '../client/discard.ts'
import { LISTENING_CHANNELS_QUERY, listenCommands, listenQuery, mayListen, messageSql, notificationChannel, readChannels, type ListenCommand } from '../client/listen.ts'
import { SNAPSHOT_QUERY, UNKNOWN_SETTINGS, applySettingsQuery, errorFields, readSettingsReply, settingsKey, startupSettings, type Settings } from '../client/settings.ts'
import {
  columnCountQuery,
  encodeCopyInResponse,
  firstValue,
  mentionsStdin,
  parseCopyFromStdin,
  readCString,
  withoutFirst,
  type CopyFromStdin,
} from '../client/copy-in.ts'
import { QueryCanceledError, QueueTimeoutError, SchedulerClosedError, type AcquireOptions } from '../session/scheduler.ts'
import { sessionFor, type SessionMember, type SharedSession } from '../session/session.ts'
import { DatabaseStatements, RESET_CHECK_SQL, ResetCalls, afterCopyData, commandTag, mayConcernDatabases, mayManageDatabase, parseDatabaseCommand, withCommandTag, type DatabaseCatalog, type DatabaseCommand } from '../client/database-commands.ts'
import { hexDump } from '../trace/hex-dump.ts'
import { MAX_AUTH_MESSAGE_LENGTH, ScramExchange, type ScramSecret } from './scram.ts'
import type { ConnectionTrace, TraceFile } from '../trace/trace.ts'

export interface ConnectionOptions {
  /** A COPY FROM STDIN gathers at most this many bytes before it fails with 54000. */
  maxCopyBytes: number
  /** Reap a client that holds the session (open pipeline or transaction) and sends nothing this long: FATAL 25P03. 0 = never. */
  idleInTransactionTimeoutMs: number
  /** Close a client at rest that sends nothing this long: FATAL 57P05. 0 = never. */
  idleTimeoutMs: number
  /** A client waiting longer than this for the session gets ERROR 55P03 for that work and stays connected. 0 = never. */
  queueTimeoutMs: number
  /** Log every frame in and out as a hex dump (at trace level). */
  inspect: boolean
  /** Clients must prove they know this password with SCRAM-SHA-256 before anything else. Null: no password. */
  password: ScramSecret | null
}

/** What a connection needs from the server that accepted it. */
export interface ConnectionHost {
  /** The main database's session: every client's until its startup packet names another database. */
  readonly session: SharedSession
  /** Where the other databases come from; null: one database, whatever name a client gives. */
  readonly databases: DatabaseCatalog | null
  /** The session of database `name` (opened, or created from the template, on first use). */
  openSession(name: string): Promise<SharedSession>
  readonly log: Logger
  readonly options: ConnectionOptions
  /** Where this connection's frames are recorded (--trace), if anywhere. */
  readonly trace?: TraceFile | null
  /** Called with the StartupMessage; a returned error refuses the client (e.g. 53300). */
  admit(connection: Connection): WireError | null
  cancel(processId: number, secretKey: number): void
  closed(connection: Connection): void
}

export type ConnectionState = 'startup' | 'authenticating' | 'opening' | 'ready' | 'closing' | 'closed'

/** Above this many queued batches the socket stops reading until the queue drains. */
const MAX_QUEUED_BATCHES = 64
/**
 * Above this many bytes of replies not yet taken by the client, its next batch waits until the client reads
 * (backpressure): a client that stops reading holds at most this plus one batch's replies in our memory.
 */
const OUTPUT_HIGH_WATER = 1 << 20
const ROLLBACK = encodeQuery('ROLLBACK')
/**
 * Closes an abandoned extended-protocol pipeline the way Postgres does when its client goes away: rolled back.
 * A bare Sync would commit the implicit transaction. A ROLLBACK query inside the open pipeline aborts it (Postgres
 * warns "there is no transaction in progress" and rolls back); if an error is already pending, the query is
 * skipped until the Sync, which ends the failed transaction. Either way the session ends up idle.
 */
const ABANDON_PIPELINE = Buffer.concat([ROLLBACK, SYNC_MESSAGE])
const SYNC = Buffer.from(SYNC_MESSAGE)
/** Close the unnamed statement; Flush, not Sync, so a pipeline the client has open stays open. */
const CLOSE_UNNAMED_STATEMENT = Buffer.from([FrontendCode.Close, 0, 0, 0, 6, 0x53, 0, FrontendCode.Flush, 0, 0, 0, 4])
/** A statement that fails, to abort PGlite's transaction where the server itself refused a command. */
const FAILING_STATEMENT = "DO $$BEGIN RAISE EXCEPTION 'COPY refused by pglite-dev-db' USING ERRCODE = '54000'; END$$"
const FAILING_EXTENDED = encodeUnnamedExecution(FAILING_STATEMENT)

interface CopyInState {
  parts: Buffer[]
  size: number
  /** Started by a simple Query (else by an extended-protocol Execute). */
  isQuery: boolean
  /** We already answered with an error (size limit); the rest of the COPY is dropped. */
  failed: boolean
}

/** Which prepared statements and portals are COPY FROM STDIN, so their Execute is held like a COPY Query. */
class CopyStatements {
  readonly #statements = new Map<string, CopyFromStdin>()
  readonly #portals = new Map<string, CopyFromStdin>()

  track(bytes: Buffer, offset: number, end: number): void {
    if (this.#statements.size === 0 && !mentionsStdin(bytes, offset, end)) return
    const [name, next] = readCString(bytes, offset + HEADER_LENGTH)
    const copy = parseCopyFromStdin(readCString(bytes, next)[0])
    if (copy) this.#statements.set(name, copy)
    else this.#statements.delete(name)
  }

  bind(bytes: Buffer, offset: number): void {
    if (this.#statements.size === 0 && this.#portals.size === 0) return
    const [portal, next] = readCString(bytes, offset + HEADER_LENGTH)
    const copy = this.#statements.get(readCString(bytes, next)[0])
    if (copy) this.#portals.set(portal, copy)
    else this.#portals.delete(portal)
  }

  executes(bytes: Buffer, offset: number): CopyFromStdin | null {
    if (this.#portals.size === 0) return null
    return this.#portals.get(readCString(bytes, offset + HEADER_LENGTH)[0]) ?? null
  }
}
const SSL_NOT_SUPPORTED = Buffer.from('N')
const CANCELED_RESPONSE = encodeErrorResponse('ERROR', SqlState.QueryCanceled, 'canceling statement due to user request')
/** A FATAL goodbye gets this long to flush before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000
/** A client must finish startup and authentication within this long, as Postgres's authentication_timeout. */
const AUTHENTICATION_TIMEOUT_MS = 60_000

let nextProcessId = 1000 + (process.pid % 1000) * 1000

export class Connection implements SessionMember {
  readonly processId = nextProcessId++
  readonly secretKey = randomInt(0, 2 ** 31)
  readonly socket: Socket
  readonly startupParams = new Map<string, string>()
  state: ConnectionState = 'startup'

  readonly #host: ConnectionHost
  /** The session of the client's database (the main one until startup says otherwise). */
  #session: SharedSession
  /** The database the client connected to, as its startup packet named it. */
  database = ''
  readonly #log: Logger
  /** Password messages are valid only while authenticating; every other type as Postgres's main loop allows. */
  readonly #reader = new FrameReader({
    maxLength: (code) => (code === FrontendCode.Password ? (this.#scram ? MAX_AUTH_MESSAGE_LENGTH : -1) : maxMessageLength(code)),
  })
  #scram: ScramExchange | null = null
  #startupDeadline: NodeJS.Timeout | undefined
  readonly #acquireOptions: AcquireOptions
  readonly #scanner = new ReplyScanner()
  /** This client's prepared statement and portal names, kept apart from every other client's. */
  readonly #names: ClientNames
  readonly #restorer: MessageRestorer
  readonly #queue: Frames[] = []
  #draining = false
  /** Settings this client has that differ from the defaults (its startup parameters and its SETs), and their key. */
  #settings: Settings = []
  #settingsKey = ''
  /** The startup packet asked for settings that are not yet applied (see #applyStartupSettings). */
  #startupSettingsPending = false
  /** LISTEN/UNLISTEN statements sent since this client last released the session, in order. */
  #listenCommands: ListenCommand[] = []
  /** Waiting work was refused mid-pipeline (canceled, timed out): messages are discarded until Sync, as after an error. */
  #skipUntilSync = false
  #pipelineOpen = false
  #txStatus: number = TxStatus.Idle
  /** While true, PGlite's output is followed but not sent (cleanup after the client is gone). */
  #discardOutput = false
  /** While set, PGlite's output is collected here instead of sent. */
  #captured: Buffer[] | null = null
  #copyIn: CopyInState | null = null
  readonly #copyStatements = new CopyStatements()
  #idleTimer: NodeJS.Timeout | undefined
  #cleanup: Promise<void> | null = null
  #resolveCleanup: () => void = () => {}
  readonly #cleanupDone = new Promise<void>((resolve) => {
    this.#resolveCleanup = resolve
  })
  #pausedForBackpressure = false
  /** A malformed message arrived behind queued work: it fails the connection once that work is answered. */
  #failAfterQueue: WireError | null = null
  /** The first SSLRequest and GSSENCRequest are answered 'N'; Postgres treats a repeat as an unknown protocol. */
  #sslAnswered = false
  #gssAnswered = false
  /** Waiting for the client to read its replies before running more of its work. */
  #blockedOnOutput = false
  readonly #trace: boolean
  /** This client's calls of pglite_dev_db.reset(), rewritten. */
  readonly #resetCalls = new ResetCalls()
  /** This client's prepared CREATE/DROP DATABASE statements. */
  readonly #databaseStatements: DatabaseStatements
  /** A reset call ran: once this client is at rest, the server checks that it took effect and resets the database. */
  #resetRequested = false
  /** The protocol trace of this client's frames, or null when the server traces nothing. */
  readonly #protocolTrace: ConnectionTrace | null

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket
    this.#host = host
    this.#session = host.session
    this.#log = host.log.child({ conn: this.processId })
    this.#names = new ClientNames(this.processId)
    this.#databaseStatements = new DatabaseStatements((name) => (name.length === 0 ? '' : this.#names.serverName(name).toString()))
    this.#restorer = new MessageRestorer((message) =>
      message[0] === BackendCode.NotificationResponse ? this.#routeNotification(message) : this.#names.restore(message),
    )
    this.#trace = host.options.inspect && this.#log.enabled('trace')
    this.#protocolTrace = host.trace?.connection(this.processId, socket) ?? null
    const timeoutMs = host.options.queueTimeoutMs
    this.#acquireOptions = { timeoutMs, onTimeout: () => this.#queueTimeout(timeoutMs) }
    // Cleanup is wired before anything async can happen, so no path leaks a slot or the session.
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (error) => this.#onSocketError(error))
    socket.on('close', () => {
      this.#close(null)
    })
    socket.setNoDelay(true)
    this.#session.members.add(this)
    this.#armIdleTimer()
    // Startup and authentication have one deadline from the moment the client connected, as in Postgres.
    this.#startupDeadline = setTimeout(() => {
      this.#log.info('authentication timeout', { ms: AUTHENTICATION_TIMEOUT_MS, sqlstate: SqlState.QueryCanceled })
      this.#close(new WireError('FATAL', SqlState.QueryCanceled, 'canceling authentication due to timeout'))
    }, AUTHENTICATION_TIMEOUT_MS)
    this.#startupDeadline.unref()
  }

  get isOwner(): boolean {
    return this.#session.scheduler.isOwner(this)
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

  /** Close without a message (the client asked, or the socket is gone). */
  close(): Promise<void> {
    return this.#close(null)
  }

  // --- Input ---

  #onData(chunk: Buffer): void {
    if (this.#protocolTrace !== null) this.#protocolTrace.in(chunk)
    if (this.state === 'closing' || this.state === 'closed' || this.#failAfterQueue) return
    this.#disarmIdleTimer()
    if (this.#trace) this.#log.trace('frontend bytes', { dump: hexDump(chunk) })
    try {
      this.#reader.push(chunk)
      if (!this.#reader.isTyped) this.#readStartup()
      if (this.state === 'authenticating') this.#readAuthentication()
      if (this.state === 'ready') {
        let frames: Frames | null
        while ((frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
      }
      // Nothing to run (a startup packet, or part of a frame): the client is quiet again until more arrives, so a
      // holder that stalls mid-frame is still reaped, and a client that only connected still times out.
      if ((!this.#draining || this.#blockedOnOutput) && (this.state === 'ready' || this.state === 'startup' || this.state === 'authenticating')) this.#armIdleTimer()
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

  #readStartup(): void {
    let packet: Buffer | null
    while (this.state === 'startup' && (packet = this.#reader.readStartupPacket()) !== null) {
      const code = packet.readInt32BE(4)
      if (code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest) {
        if (packet.length !== 8) throw protocolViolation('invalid length of startup packet')
        const isSsl = code === StartupCode.SSLRequest
        if (isSsl ? !this.#sslAnswered : !this.#gssAnswered) {
          if (isSsl) this.#sslAnswered = true
          else this.#gssAnswered = true
          this.#write(SSL_NOT_SUPPORTED)
          continue
        }
      }
      if (code === StartupCode.CancelRequest) {
        if (packet.length !== 16) throw protocolViolation('invalid length of startup packet')
        this.#host.cancel(packet.readInt32BE(8), packet.readInt32BE(12))
        this.#close(null)
        return
      }
      this.#startup(packet, code)
    }
  }

  #startup(packet: Buffer, version: number): void {
    const major = version >>> 16
    const minor = version & 0xffff
    if (major !== 3) {
      throw new WireError('FATAL', SqlState.FeatureNotSupported, `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`)
    }
    const unrecognized: string[] = []
    const body = packet.subarray(8)
    let offset = 0
    while (offset < body.length && body[offset] !== 0) {
      const nameEnd = body.indexOf(0, offset)
      const valueEnd = nameEnd < 0 ? -1 : body.indexOf(0, nameEnd + 1)
      if (valueEnd < 0) throw protocolViolation('invalid startup packet layout: expected terminator as last byte')
      const name = body.toString('utf8', offset, nameEnd)
      if (name.startsWith('_pq_.')) unrecognized.push(name)
      else this.startupParams.set(name, body.toString('utf8', nameEnd + 1, valueEnd))
      offset = valueEnd + 1
    }
    if (offset !== body.length - 1) throw protocolViolation('invalid startup packet layout: expected terminator as last byte')
    if (!this.startupParams.get('user')) throw new WireError('FATAL', SqlState.InvalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet')
    const refusal = this.#host.admit(this)
    if (refusal) {
      this.#close(refusal)
      return
    }
    if (!this.#session.startupPrefixNow) throw new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up')
    // A newer 3.x minor or `_pq_.` options: say we speak 3.0 and which options we ignored; the client carries on.
    if (minor > 0 || unrecognized.length > 0) this.#write(encodeNegotiateProtocolVersion(0, unrecognized))
    const secret = this.#host.options.password
    if (secret) {
      this.#scram = new ScramExchange(secret)
      this.state = 'authenticating'
      this.#reader.startTyped()
      this.#write(ScramExchange.request())
      return
    }
    this.#completeStartup()
  }

  /** SASLInitialResponse, then SASLResponse: any other message, or a wrong proof, ends the connection. */
  #readAuthentication(): void {
    const frames = this.#reader.readFrames()
    if (!frames) return
    const { bytes } = frames
    let offset = 0
    while (offset < bytes.length && this.state === 'authenticating') {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (code !== FrontendCode.Password) throw protocolViolation(`expected SASL response, got message type ${code}`)
      const step = this.#scram!.respond(bytes.subarray(offset + HEADER_LENGTH, end))
      if (!step.ok) {
        if (step.protocolViolation) throw protocolViolation(step.reason)
        const user = this.startupParams.get('user') ?? ''
        this.#log.info('authentication failed', { user, reason: step.reason, sqlstate: SqlState.InvalidPassword })
        throw new WireError('FATAL', SqlState.InvalidPassword, `password authentication failed for user "${user}"`)
      }
      this.#write(step.reply)
      offset = end
      if (step.done) {
        this.#scram = null
        this.#completeStartup()
      }
    }
    // A client that sent work right behind its proof (none should) has it run once it is admitted.
    if (offset < bytes.length && this.state === 'ready') {
      let count = 0
      forEachFrame(bytes.subarray(offset), () => void count++)
      this.#enqueue({ bytes: bytes.subarray(offset), count })
    }
  }

  /**
   * The client is who it says: find its database (opening it may take a moment; the client waits, as for
   * authentication), then tell it the server's parameters, its key, and that it may send queries.
   */
  #completeStartup(): void {
    this.database = this.startupParams.get('database') || this.startupParams.get('user')!
    const databases = this.#host.databases
    if (!databases || this.database === databases.mainName) {
      this.#admitToDatabase()
      return
    }
    this.state = 'opening'
    this.#host.openSession(this.database).then(
      (session) => {
        if (this.state !== 'opening') return
        this.#session.members.delete(this)
        this.#session = session
        session.members.add(this)
        if (session.dead) throw session.dead
        this.#admitToDatabase()
        // Messages the client sent while its database opened (few clients send any) run now.
        let frames: Frames | null
        while ((this.state as ConnectionState) === 'ready' && (frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
      },
      (error: unknown) => {
        if (error instanceof WireError) throw error
        this.#log.error('cannot open database', { database: this.database, error })
        throw new WireError('FATAL', SqlState.InternalError, `cannot open database "${this.database}": ${(error as Error).message}`, { cause: error })
      },
    ).catch((error: unknown) => this.#fail(error))
  }

  #admitToDatabase(): void {
    const prefix = this.#session.startupPrefixNow
    if (!prefix) throw new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up')
    // Settings equal to what the client is told anyway (client_encoding=UTF8 from node-postgres) cost nothing.
    this.#settings = startupSettings(this.startupParams).filter(([name, value]) => this.#session.reportedDefaults.get(name.toLowerCase()) !== value)
    if (this.#settings.length > 0) {
      this.#startupSettingsPending = true
      this.#settingsKey = UNKNOWN_SETTINGS
    }
    this.state = 'ready'
    clearTimeout(this.#startupDeadline)
    this.#reader.startTyped()
    this.#write(Buffer.concat([prefix, encodeBackendKeyData(this.processId, this.secretKey), encodeReadyForQuery(TxStatus.Idle)]))
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
      while (this.#queue.length > 0 && this.state === 'ready') {
        const frames = this.#queue.shift()!
        if (this.#pausedForBackpressure && this.#queue.length < MAX_QUEUED_BATCHES / 2) {
          this.#pausedForBackpressure = false
          this.socket.resume()
        }
        if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
          await this.#outputDrained()
          if (this.state !== 'ready') break
        }
        await this.#runBatch(frames)
      }
    } finally {
      this.#draining = false
      if (this.#failAfterQueue && this.state === 'ready') this.#fail(this.#failAfterQueue)
      if (this.state === 'closing') this.#startCleanup()
      else if (this.state === 'ready' && this.#queue.length === 0) this.#armIdleTimer()
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
    this.#armIdleTimer()
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
      this.#disarmIdleTimer()
    }
  }

  // --- Execution ---

  /**
   * Send a read's frames to PGlite, in as few calls as possible: normally one. A COPY FROM STDIN splits the
   * batch (the frames before it run, the COPY is held until its data is complete), and Terminate ends it.
   */
  async #runBatch(frames: Frames): Promise<void> {
    let input = frames.bytes
    const databases = this.#host.databases
    const concernsDatabases =
      databases !== null && (this.#resetCalls.tracking || this.#databaseStatements.tracking || mayConcernDatabases(input, this.#copyIn ? afterCopyData(input) : 0))
    if (concernsDatabases) {
      const reset = this.#resetCalls.rewrite(input)
      input = this.#databaseStatements.rewrite(reset.bytes)
      if (reset.called) this.#resetRequested = true
    }
    const bytes = this.#names.rewrite(this.#names.rewriteSql(input))
    let offset = 0
    let segment = 0
    let expectedReady = 0
    let pipelineOpen = this.#pipelineOpen
    while (offset < bytes.length) {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (this.#skipUntilSync && code !== FrontendCode.Terminate) {
        offset = segment = offset + this.#skipToSync(bytes.subarray(offset))
        expectedReady = 0
        pipelineOpen = this.#pipelineOpen
        continue
      }
      if (this.#copyIn) {
        await this.#gatherCopy(code, bytes.subarray(offset, end))
        offset = segment = end
        pipelineOpen = this.#pipelineOpen
        continue
      }
      let copy: CopyFromStdin | null = null
      let reset: SessionReset | null = null
      let database: DatabaseCommand | null = null
      if (concernsDatabases && code === FrontendCode.Query && mayManageDatabase(bytes, offset, end, false)) database = parseDatabaseCommand(messageSql(bytes, offset, end, false))
      else if (concernsDatabases && code === FrontendCode.Bind) database = this.#databaseStatements.boundBy(bytes, offset)
      const executed = concernsDatabases && code === FrontendCode.Execute ? this.#databaseStatements.executes(bytes, offset) : null
      switch (code) {
        case FrontendCode.Terminate:
          await this.#send(bytes.subarray(segment, offset), expectedReady, pipelineOpen)
          this.#close(null)
          return
        case FrontendCode.Query:
          if (mentionsStdin(bytes, offset, end)) copy = parseCopyFromStdin(readCString(bytes, offset + HEADER_LENGTH)[0])
          if (mayListen(bytes, offset, end)) this.#listenCommands.push(...listenCommands(messageSql(bytes, offset, end, false)))
          if (mayResetSession(bytes, offset, end)) reset = parseSessionReset(messageSql(bytes, offset, end, false))
          expectedReady++
          pipelineOpen = false
          break
        case FrontendCode.Sync:
        case FrontendCode.FunctionCall:
          expectedReady++
          pipelineOpen = false
          break
        case FrontendCode.Parse:
          pipelineOpen = true
          this.#copyStatements.track(bytes, offset, end)
          if (mayListen(bytes, offset, end)) this.#listenCommands.push(...listenCommands(messageSql(bytes, offset, end, true)))
          break
        case FrontendCode.Bind:
          pipelineOpen = true
          this.#copyStatements.bind(bytes, offset)
          break
        case FrontendCode.Execute:
          pipelineOpen = true
          copy = this.#copyStatements.executes(bytes, offset)
          break
        case FrontendCode.Describe:
        case FrontendCode.Close:
          pipelineOpen = true
          break
      }
      if (database) {
        // Run what came before, then carry out CREATE/DROP DATABASE.
        const isQuery = code === FrontendCode.Query
        await this.#send(bytes.subarray(segment, offset), expectedReady - (isQuery ? 1 : 0), this.#pipelineOpenBefore(bytes, segment, offset))
        if (!this.#skipUntilSync) {
          if (isQuery) await this.#queryDatabaseCommand(database, bytes.subarray(offset, end))
          else await this.#bindDatabaseCommand(database, bytes.subarray(offset, end))
        }
        offset = segment = end
        expectedReady = 0
        pipelineOpen = this.#pipelineOpen
        continue
      }
      if (executed) {
        // Run what came before, then the Execute of the no-op alone (its portal is in the pipeline this client
        // holds the session for), answered with the command's tag.
        await this.#send(bytes.subarray(segment, offset), expectedReady, this.#pipelineOpenBefore(bytes, segment, offset))
        if (this.#skipUntilSync) {
          // Dropped with the rest of the failed pipeline.
        } else if (this.isOwner) this.#write(withCommandTag(await this.#capture(bytes.subarray(offset, end)), executed))
        else await this.#send(bytes.subarray(offset, end), 0, true)
        offset = segment = end
        expectedReady = 0
        pipelineOpen = this.#pipelineOpen
        continue
      }
      if (reset) {
        // Run what came before, then carry out the reset for this client alone.
        await this.#send(bytes.subarray(segment, offset), expectedReady - 1, this.#pipelineOpenBefore(bytes, segment, offset))
        if (!this.#skipUntilSync) await this.#resetSession(reset, bytes.subarray(offset, end))
        offset = segment = end
        expectedReady = 0
        pipelineOpen = this.#pipelineOpen
        continue
      }
      if (copy) {
        // Run what came before the COPY, then hold the COPY itself until its data is complete.
        const isQuery = code === FrontendCode.Query
        await this.#send(bytes.subarray(segment, offset), expectedReady - (isQuery ? 1 : 0), isQuery ? this.#pipelineOpenBefore(bytes, segment, offset) : pipelineOpen)
        if (!this.#skipUntilSync) await this.#startCopy(copy, bytes.subarray(offset, end), isQuery)
        offset = segment = end
        expectedReady = 0
        pipelineOpen = this.#pipelineOpen
        continue
      }
      offset = end
    }
    await this.#send(bytes.subarray(segment), expectedReady, pipelineOpen)
  }

  /** The pipeline state after the frames in [from, to), starting from the current one. */
  #pipelineOpenBefore(bytes: Buffer, from: number, to: number): boolean {
    let open = this.#pipelineOpen
    forEachFrame(bytes.subarray(from, to), (code) => {
      if (code === FrontendCode.Sync || code === FrontendCode.Query || code === FrontendCode.FunctionCall) open = false
      else if (code !== FrontendCode.Flush) open = true
    })
    return open
  }

  /** Run complete frames as the session owner and apply the release rule to the result. */
  async #send(bytes: Buffer, expectedReady: number, pipelineOpen: boolean): Promise<void> {
    if (bytes.length === 0) return
    try {
      await this.#acquire()
    } catch (error) {
      const unitEnd = this.#refuseWaiting(error, bytes)
      if (unitEnd >= 0) await this.#send(bytes.subarray(unitEnd), expectedReady - 1, pipelineOpen)
      return
    }
    if (this.#mustCloseUnnamedStatement(bytes)) await this.#capture(CLOSE_UNNAMED_STATEMENT)
    await this.#execute(bytes)
    // Every Sync/Query yields a ReadyForQuery in the same call, except a Query skipped while an error waits for Sync.
    this.#pipelineOpen = pipelineOpen || this.#scanner.readyCount < expectedReady
    await this.#releaseIfIdle()
  }

  /**
   * The session's unnamed statement is whichever client last made one. A client that binds or describes it without
   * having made it must get Postgres's answer (26000), not another client's statement: true when it must be closed
   * first. Records this client as its maker when `bytes` make one.
   */
  #mustCloseUnnamedStatement(bytes: Buffer): boolean {
    const use = unnamedStatementUse(bytes)
    if (use === 0) return false
    const session = this.#session
    const mustClose = (use & UnnamedUse.ReferencedFirst) !== 0 && session.unnamedStatementOwner !== this
    session.unnamedStatementOwner = (use & UnnamedUse.Parsed) !== 0 ? this : mustClose ? null : session.unnamedStatementOwner
    return mustClose
  }

  /**
   * Become the session's owner, waiting behind other clients if need be. A wait can end in QueryCanceledError (the
   * client's CancelRequest) or QueueTimeoutError (longer than queueTimeoutMs): see #refuseWaiting.
   */
  async #acquire(): Promise<void> {
    const wasOwner = this.isOwner
    const wait = this.#session.scheduler.acquire(this, this.#acquireOptions)
    if (wait) {
      await wait
      if (this.state !== 'ready') throw new SchedulerClosedError('the connection is closing')
    }
    if (wasOwner) return
    // The session is at rest between owners: the moment to drop statements that departed clients left behind,
    // and to give the session this client's settings if the last owner's differ.
    if (this.#session.hasAbandonedWork) await this.#session.closeAbandonedWork()
    if (this.#startupSettingsPending) await this.#applyStartupSettings()
    else if (this.#session.appliedSettings !== this.#settingsKey) await this.#applySettings()
  }

  #queueTimeout(timeoutMs: number): QueueTimeoutError {
    const holder = this.#session.scheduler.owner
    const who = holder ? `client ${holder.processId} holds it` : 'other clients were ahead'
    this.#log.info('queue timeout', { ms: timeoutMs, holder: holder?.processId, sqlstate: SqlState.LockNotAvailable })
    return new QueueTimeoutError(`canceling statement: waited ${timeoutMs} ms for the database session, which ${who} (pglite-dev-db runs one client's transaction at a time)`)
  }

  /**
   * A CancelRequest with this client's key. Postgres cancels the statement running at that moment; here the
   * statement that can be waiting is one queued behind another client's transaction, and that one is canceled.
   * A statement already inside PGlite runs to completion (PGlite cannot be interrupted).
   */
  cancel(): void {
    if (this.#session.scheduler.cancelWait(this, new QueryCanceledError())) this.#log.debug('queued work canceled', {})
  }

  /**
   * Waiting work in `bytes` never ran: it was canceled or timed out. Answer as Postgres answers a statement that
   * fails: the ErrorResponse, the rest of the Sync- or Query-ended unit skipped, ReadyForQuery. Returns where the
   * refused unit ends in `bytes`, or -1 when its Sync has not arrived yet (later messages are skipped until it does).
   * The client was waiting, so it held nothing: no transaction or pipeline of its own is open in PGlite.
   */
  #refuseWaiting(error: unknown, bytes: Buffer): number {
    if (error instanceof QueryCanceledError) this.#write(CANCELED_RESPONSE)
    else if (error instanceof QueueTimeoutError) this.#write(encodeErrorResponse('ERROR', SqlState.LockNotAvailable, error.message))
    else throw error
    this.#pipelineOpen = false
    const first = bytes[0]
    if (first === FrontendCode.Query || first === FrontendCode.FunctionCall) {
      // A simple-protocol statement: its own ReadyForQuery ends it.
      this.#write(encodeReadyForQuery(this.#txStatus))
      return CODE_LENGTH + bytes.readInt32BE(CODE_LENGTH)
    }
    this.#skipUntilSync = true
    const unitEnd = this.#skipToSync(bytes)
    return this.#skipUntilSync ? -1 : unitEnd
  }

  /**
   * Skipping after a refused wait: drop messages up to and including the next Sync, which gets ReadyForQuery
   * (Postgres drops a Query sent meanwhile too). Returns the offset after the Sync, or `bytes.length` if it is not
   * in `bytes`. A Terminate is left in place for #runBatch to act on.
   */
  #skipToSync(bytes: Buffer): number {
    let next = bytes.length
    forEachFrame(bytes, (code, offset, length) => {
      if (code === FrontendCode.Terminate) {
        next = offset
        return false
      }
      if (code !== FrontendCode.Sync) return true
      this.#skipUntilSync = false
      this.#write(encodeReadyForQuery(this.#txStatus))
      next = offset + length
      return false
    })
    return next
  }

  // --- COPY FROM STDIN ---

  async #startCopy(copy: CopyFromStdin, frame: Buffer, isQuery: boolean): Promise<void> {
    try {
      await this.#acquire()
    } catch (error) {
      this.#refuseWaiting(error, frame)
      return
    }
    const columns = copy.columns ?? (await this.#columnCount(copy.table))
    this.#write(encodeCopyInResponse(copy.binary, columns))
    this.#copyIn = { parts: [frame], size: frame.length, isQuery, failed: false }
    this.#log.debug('copy in started', { columns, binary: copy.binary })
  }

  /**
   * Column count for the CopyInResponse. Asked only between transactions: inside one, any query before the COPY
   * would change its outcome (COPY FREEZE refuses to run after "prior transaction activity"); clients do not
   * depend on the count, so 0 is sent then.
   */
  async #columnCount(table: string): Promise<number> {
    if (this.#pipelineOpen || this.#txStatus !== TxStatus.Idle) return 0
    const reply = await this.#capture(encodeQuery(columnCountQuery(table)))
    return Number(firstValue(reply) ?? 0)
  }

  async #gatherCopy(code: number, frame: Buffer): Promise<void> {
    const copy = this.#copyIn!
    const isEnd = code === FrontendCode.CopyDone || code === FrontendCode.CopyFail
    if (copy.failed) {
      // After our own COPY error in the extended protocol, messages are discarded until Sync, which PGlite answers
      // (it was told of the failure, so its implicit or explicit transaction is aborted as Postgres's would be).
      if (code !== FrontendCode.Sync) return
      this.#copyIn = null
      this.#write(await this.#capture(SYNC))
      this.#pipelineOpen = false
      await this.#releaseIfIdle()
      return
    }
    const isCopyMessage = isEnd || code === FrontendCode.CopyData || code === FrontendCode.Flush || code === FrontendCode.Sync
    copy.parts.push(frame)
    copy.size += frame.length
    if (copy.size > this.#host.options.maxCopyBytes) {
      await this.#failCopy(copy)
      return
    }
    // Anything but copy data ends the COPY; PGlite itself reports a non-copy message as an error.
    if (isEnd || !isCopyMessage) await this.#finishCopy()
  }

  /**
   * The COPY passed maxCopyBytes: ERROR 54000, as Postgres fails a COPY. PGlite is made to fail a statement in
   * the same place, so a transaction or pipeline around the COPY is aborted as it would be; the rest of the
   * client's copy data is dropped (by PGlite once it is out of copy mode, as Postgres drops it).
   */
  async #failCopy(copy: CopyInState): Promise<void> {
    copy.parts = []
    copy.failed = true
    const limit = this.#host.options.maxCopyBytes
    const size = limit >= 2 ** 20 ? `${Math.round(limit / 2 ** 20)} MB` : `${limit} bytes`
    const error = encodeErrorResponse('ERROR', SqlState.ProgramLimitExceeded, `COPY data exceeds pglite-dev-db's limit of ${size}; split it into smaller COPY commands`)
    if (copy.isQuery) {
      this.#copyIn = null
      if (this.#txStatus !== TxStatus.Idle) await this.#capture(encodeQuery(FAILING_STATEMENT))
      this.#write(Buffer.concat([error, encodeReadyForQuery(this.#txStatus)]))
      await this.#releaseIfIdle()
    } else {
      // Discard-until-Sync in PGlite too; the client's Sync ends it (see #gatherCopy).
      await this.#capture(FAILING_EXTENDED)
      this.#write(error)
    }
  }

  async #finishCopy(): Promise<void> {
    const copy = this.#copyIn!
    this.#copyIn = null
    const reply = await this.#capture(Buffer.concat(copy.parts, copy.size))
    // PGlite sends its own CopyInResponse first; the client already had ours.
    this.#write(withoutFirst(reply, BackendCode.CopyInResponse))
    this.#pipelineOpen = copy.isQuery ? this.#scanner.readyCount < 1 : true
    await this.#releaseIfIdle()
  }

  /** Execute and return PGlite's whole reply instead of sending it to the client. */
  async #capture(bytes: Uint8Array): Promise<Buffer> {
    const chunks: Buffer[] = []
    this.#captured = chunks
    try {
      await this.#execute(bytes)
    } finally {
      this.#captured = null
    }
    return Buffer.concat(chunks)
  }

  async #execute(bytes: Uint8Array): Promise<void> {
    this.#scanner.reset()
    if (this.#trace) this.#log.trace('to pglite', { dump: hexDump(bytes) })
    this.socket.cork()
    try {
      await this.#session.execute(bytes, this.#sink)
    } finally {
      this.socket.uncork()
    }
    this.#names.ran(bytes)
    if (this.#scanner.readyCount > 0) this.#txStatus = this.#scanner.lastStatus
  }

  readonly #sink = (chunk: Uint8Array): void => {
    this.#scanner.feed(chunk)
    if (this.#captured) {
      this.#captured.push(Buffer.from(chunk))
      return
    }
    if (this.#discardOutput) return
    // PGlite hands us a view of its WASM memory: copy before it is reused (the restorer copies too).
    if (this.#names.used || this.#session.listeners.size > 0) this.#restorer.feed(chunk, this.#writeRestored)
    else this.#write(Buffer.from(chunk))
  }

  /** The release rule: no open pipeline and ReadyForQuery said Idle. */
  async #releaseIfIdle(): Promise<void> {
    if (this.#pipelineOpen || this.#txStatus !== TxStatus.Idle) return
    if (this.#resetRequested) await this.#resetDatabase()
    if (this.#scanner.settingsChanged) await this.#snapshotSettings()
    if (this.#scanner.listenChanged) await this.#reconcileListening()
    if (this.#scanner.statementsWiped) await this.#remakeOthersStatements()
    // LISTENs that never completed (an error, an aborted transaction) changed nothing.
    this.#listenCommands.length = 0
    this.#session.scheduler.release(this)
  }

  // --- Databases: CREATE DATABASE, DROP DATABASE, pglite_dev_db.reset() ---

  /**
   * CREATE DATABASE or DROP DATABASE as a simple Query, answered by the server. Inside a transaction or a pipeline
   * it goes to PGlite as written, which refuses it as Postgres does (25001).
   */
  async #queryDatabaseCommand(command: DatabaseCommand, frame: Buffer): Promise<void> {
    if (this.#pipelineOpen || this.#txStatus !== TxStatus.Idle) {
      await this.#send(frame, 1, false)
      return
    }
    const replies: Buffer[] = []
    const error = await this.#carryOut(command, replies)
    replies.push(error ? encodeErrorResponse(error.severity, error.sqlstate, error.message) : encodeCommandComplete(commandTag(command)), encodeReadyForQuery(this.#txStatus))
    this.#write(Buffer.concat(replies))
  }

  /**
   * A Bind of a prepared CREATE/DROP DATABASE (PGlite holds a statement that does nothing in its place): the
   * command is carried out now. On success the Bind goes on to PGlite; on failure the client gets the error and the
   * rest of its pipeline is skipped until Sync, with PGlite's side of the pipeline rolled back (or, inside a
   * transaction block, the transaction failed), as Postgres fails a statement.
   */
  async #bindDatabaseCommand(command: DatabaseCommand, frame: Buffer): Promise<void> {
    const replies: Buffer[] = []
    const error =
      this.#txStatus === TxStatus.Idle ? await this.#carryOut(command, replies) : new WireError('ERROR', SqlState.ActiveSqlTransaction, `${commandTag(command)} cannot run inside a transaction block`)
    if (replies.length > 0) this.#write(Buffer.concat(replies))
    if (!error) {
      await this.#send(frame, 0, true)
      return
    }
    if (this.isOwner) {
      await this.#capture(this.#txStatus === TxStatus.Idle ? ABANDON_PIPELINE : Buffer.concat([FAILING_EXTENDED, SYNC]))
      this.#pipelineOpen = false
    }
    this.#write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
    this.#skipUntilSync = true
    this.#databaseStatements.portalsEnded()
    await this.#releaseIfIdle()
  }

  /** Do CREATE/DROP DATABASE; the error the client gets, or null. Notices for the client go to `replies`. */
  async #carryOut(command: DatabaseCommand, replies: Buffer[]): Promise<WireError | null> {
    try {
      if (command.kind === 'drop') return await this.#dropDatabase(command, replies)
      if (await this.#host.databases!.create(command.name)) return null
      return new WireError('ERROR', SqlState.DuplicateDatabase, `database "${command.name}" already exists`)
    } catch (failure) {
      this.#log.error(`${command.kind} database failed`, { database: command.name, error: failure })
      return new WireError('ERROR', SqlState.InternalError, `could not ${command.kind} database "${command.name}": ${(failure as Error).message}`)
    }
  }

  /** DROP DATABASE as Postgres does it: not the one you are in, not one others use unless FORCE (they are ended). */
  async #dropDatabase(command: Extract<DatabaseCommand, { kind: 'drop' }>, notices: Buffer[]): Promise<WireError | null> {
    const databases = this.#host.databases!
    const { name } = command
    if (name === this.database) return new WireError('ERROR', SqlState.ObjectInUse, 'cannot drop the currently open database')
    if (name === databases.mainName) return new WireError('ERROR', SqlState.FeatureNotSupported, `cannot drop "${name}": it is the server's main database (stop the server and remove its data dir instead)`)
    if (!(await databases.exists(name))) {
      if (!command.ifExists) return new WireError('ERROR', SqlState.InvalidCatalogName, `database "${name}" does not exist`)
      notices.push(encodeErrorResponse('NOTICE', '00000', `database "${name}" does not exist, skipping`, BackendCode.NoticeResponse))
      return null
    }
    const db = databases.instance(name)
    const others = db ? [...sessionFor(db).members] : []
    if (others.length > 0 && !command.force) {
      const count = others.length === 1 ? 'There is 1 other session using the database.' : `There are ${others.length} other sessions using the database.`
      return new WireError('ERROR', SqlState.ObjectInUse, `database "${name}" is being accessed by other users (${count})`)
    }
    const goodbye = new WireError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command')
    await Promise.all(others.map((member) => member.terminate(goodbye)))
    await databases.drop(name)
    this.#log.info('database dropped', { database: name, ended: others.length })
    return null
  }

  /**
   * This client called pglite_dev_db.reset() and is now at rest: if the call took effect (its transaction did not
   * roll back), its database goes back to the migrated state. The client still holds the session, so nobody else
   * runs meanwhile; everyone's prepared statements and LISTENs carry over to the fresh database.
   */
  async #resetDatabase(): Promise<void> {
    this.#resetRequested = false
    const requested = firstValue(await this.#capture(encodeQuery(RESET_CHECK_SQL))) === 'requested'
    if (!requested) return
    const started = performance.now()
    const db = await this.#host.databases!.reset(this.database)
    // Reset in place (the same instance, its queries used the unnamed statement) or swapped for a fresh one.
    const inPlace = db === this.#session.db
    if (inPlace) this.#session.unnamedStatementOwner = null
    else await this.#session.replaceDb(db)
    this.#scanner.settingsChanged = false
    this.#log.info('database reset', { database: this.database, how: inPlace ? 'in place' : 'fresh copy', ms: Math.round(performance.now() - started) })
  }

  // --- DISCARD ALL, DEALLOCATE ---

  /**
   * DISCARD ALL or DEALLOCATE ALL for this client only: its own prepared statements are closed, and DISCARD ALL
   * also resets its settings and stops its LISTENs; other clients keep theirs. Where Postgres would refuse
   * (DISCARD ALL in a transaction, anything in a failed one), the statement goes to PGlite as it is, for its error.
   */
  async #resetSession(reset: SessionReset, frame: Buffer): Promise<void> {
    try {
      await this.#acquire()
    } catch (error) {
      this.#refuseWaiting(error, frame)
      return
    }
    if (this.#pipelineOpen || this.#txStatus === TxStatus.Failed || (reset === 'DISCARD ALL' && this.#txStatus !== TxStatus.Idle)) {
      await this.#send(frame, 1, false)
      return
    }
    const frames = [...this.#names.closeAll(), SYNC]
    if (reset === 'DISCARD ALL') {
      frames.push(encodeQuery('RESET ALL'))
      const unneeded = this.#session.unlisten(this, null)
      if (unneeded.length > 0) frames.push(listenQuery(unneeded, 'UNLISTEN'))
    }
    const reply = readSettingsReply(await this.#capture(Buffer.concat(frames)))
    const parts: Buffer[] = []
    if (reset === 'DISCARD ALL') {
      this.#settings = []
      this.#session.appliedSettings = this.#settingsKey = ''
      this.#scanner.settingsChanged = this.#scanner.listenChanged = false
      // The settings the client is told about changed back to the defaults: say so, as Postgres does.
      for (const [name, value] of reply.reported) parts.push(encodeParameterStatus(name, value))
    }
    parts.push(encodeCommandComplete(reset), encodeReadyForQuery(this.#txStatus))
    this.#write(Buffer.concat(parts))
    await this.#releaseIfIdle()
  }

  /**
   * This client's DEALLOCATE ALL or DISCARD ALL reached PGlite (in a pipeline or among other statements, where the
   * server does not take it over): every client's prepared statements are gone. This client's stay gone, as it
   * asked; everyone else's are made again from their Parse messages before anyone else runs.
   */
  async #remakeOthersStatements(): Promise<void> {
    this.#scanner.statementsWiped = false
    this.#names.forgetAll()
    const frames: Buffer[] = []
    for (const member of this.#session.members) {
      // A Sync after each: one that fails now (its table was dropped) must not skip the rest.
      if (member !== this) for (const parse of member.preparedStatementFrames()) frames.push(parse, SYNC)
    }
    if (frames.length === 0) return
    await this.#capture(Buffer.concat(frames))
    this.#log.debug('prepared statements made again after a DEALLOCATE ALL', { count: frames.length / 2 })
  }

  preparedStatementFrames(): Buffer[] {
    return this.#names.parseFrames()
  }

  // --- LISTEN/NOTIFY ---

  /**
   * This client ran LISTEN, UNLISTEN or DISCARD: record where it listens now, from its statements checked against
   * what the session listens on, and make the session listen on exactly the channels somebody listens on.
   */
  async #reconcileListening(): Promise<void> {
    this.#scanner.listenChanged = false
    const session = this.#session
    const now = readChannels(await this.#capture(LISTENING_CHANNELS_QUERY))
    const unneeded: string[] = []
    for (const command of this.#listenCommands) {
      if (command.kind === 'listen') {
        if (now.has(command.channel)) session.listen(this, command.channel)
      } else {
        unneeded.push(...session.unlisten(this, command.channel))
      }
    }
    // Listening nobody accounts for is this client's (a LISTEN inside a function or DO block).
    for (const channel of now) if (!session.listeners.has(channel)) session.listen(this, channel)
    // Its UNLISTEN or DISCARD ALL also stopped the session listening where others still listen: listen again.
    const lost = [...session.listeners.keys()].filter((channel) => !now.has(channel))
    if (lost.length > 0) await this.#capture(listenQuery(lost, 'LISTEN'))
    if (unneeded.length > 0) this.#log.debug('unlistened', { channels: unneeded.join(',') })
  }

  /**
   * A NotificationResponse from PGlite, raised by this client's NOTIFY: every other client listening on the
   * channel gets it now; this client keeps it in its reply if it listens there too. The process id is this
   * client's, as Postgres names the notifying backend.
   */
  #routeNotification(message: Buffer): Buffer | null {
    message.writeInt32BE(this.processId, HEADER_LENGTH)
    const channel = notificationChannel(message)
    const members = this.#session.listeners.get(channel)
    if (members) for (const member of members) if (member !== this) member.notify(message)
    const listensHere = members?.has(this) || this.#listenCommands.some((c) => c.kind === 'listen' && c.channel === channel)
    return listensHere ? message : null
  }

  notify(message: Buffer): void {
    if (this.state === 'ready') this.#write(message)
  }

  // --- Session settings ---

  /** This client SET something: remember its settings, which are now the session's. */
  async #snapshotSettings(): Promise<void> {
    const reply = readSettingsReply(await this.#capture(SNAPSHOT_QUERY))
    this.#scanner.settingsChanged = false
    if (reply.error) {
      this.#session.appliedSettings = UNKNOWN_SETTINGS
      this.#warnSettings('could not record your session settings; a SET may not last beyond this command', reply.error)
      return
    }
    this.#settings = reply.settings
    this.#session.appliedSettings = this.#settingsKey = settingsKey(reply.settings)
  }

  /** Give the session this client's settings (the session is at rest: no pipeline, no transaction). */
  async #applySettings(): Promise<void> {
    const reply = readSettingsReply(await this.#capture(applySettingsQuery(this.#settings, false)))
    this.#scanner.settingsChanged = false
    this.#session.appliedSettings = reply.error ? UNKNOWN_SETTINGS : this.#settingsKey
    if (reply.error) this.#warnSettings('could not restore your session settings; SET them again', reply.error)
  }

  /** Settings bookkeeping failed: the log gets it, and so does the client, as a WARNING it can read. */
  #warnSettings(what: string, error: Buffer): void {
    const { code, message } = errorFields(error)
    this.#log.warn(what, { error: message })
    this.#write(encodeErrorResponse('WARNING', code, `${what}: ${message}`, BackendCode.NoticeResponse))
  }

  /**
   * The settings of the startup packet, applied the first time this client gets the session (connecting never
   * waits for another client's transaction). The client was told the defaults at startup; now it gets a
   * ParameterStatus for each reported setting it changed, as Postgres would have sent at startup. A value
   * Postgres refuses closes the connection with its error as FATAL, as Postgres does at startup.
   */
  async #applyStartupSettings(): Promise<void> {
    this.#startupSettingsPending = false
    const reply = readSettingsReply(await this.#capture(applySettingsQuery(this.#settings, true)))
    this.#scanner.settingsChanged = false
    if (reply.error) {
      this.#session.appliedSettings = UNKNOWN_SETTINGS
      const { code, message } = errorFields(reply.error)
      throw new WireError('FATAL', code as SqlStateCode, message)
    }
    this.#settings = reply.settings
    this.#session.appliedSettings = this.#settingsKey = settingsKey(reply.settings)
    const reported = reply.settings.filter(([name]) => this.#session.reportedDefaults.has(name.toLowerCase()))
    if (reported.length > 0) this.#write(Buffer.concat(reported.map(([name, value]) => encodeParameterStatus(name, value))))
  }

  /** Everything the client receives goes through here: PGlite's replies and the server's own messages. */
  #write(bytes: Uint8Array): void {
    if (this.#trace) this.#log.trace('to client', { dump: hexDump(bytes) })
    if (!this.socket.writable) return
    if (this.#protocolTrace !== null) this.#protocolTrace.out(bytes)
    this.socket.write(bytes)
  }

  readonly #writeRestored = (bytes: Buffer): void => this.#write(bytes)

  // --- Timers ---

  #armIdleTimer(): void {
    this.#disarmIdleTimer()
    const { idleInTransactionTimeoutMs, idleTimeoutMs } = this.#host.options
    if (this.state === 'ready' && this.isOwner) {
      if (idleInTransactionTimeoutMs > 0) {
        this.#idleTimer = setTimeout(() => {
          this.#log.info('idle-in-transaction timeout', { ms: idleInTransactionTimeoutMs, sqlstate: SqlState.IdleInTransactionSessionTimeout })
          this.#close(new WireError('FATAL', SqlState.IdleInTransactionSessionTimeout, 'terminating connection due to idle-in-transaction timeout'))
        }, idleInTransactionTimeoutMs)
      }
    } else if (idleTimeoutMs > 0) {
      this.#idleTimer = setTimeout(() => {
        this.#log.info('idle-session timeout', { ms: idleTimeoutMs, sqlstate: SqlState.IdleSessionTimeout })
        this.#close(new WireError('FATAL', SqlState.IdleSessionTimeout, 'terminating connection due to idle-session timeout'))
      }, idleTimeoutMs)
    }
  }

  #disarmIdleTimer(): void {
    if (this.#idleTimer === undefined) return
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
  }

  // --- Failure and close ---

  #onSocketError(error: Error): void {
    if (isDisconnectError(error)) this.#log.debug('client disconnected', { code: (error as NodeJS.ErrnoException).code })
    else this.#log.warn('socket error', { error })
    this.#close(null)
  }

  #fail(error: unknown): void {
    if (error instanceof SchedulerClosedError) return
    if (error instanceof WireError) {
      this.#log.debug('closing client', { sqlstate: error.sqlstate, error: error.message })
      this.#close(error)
      return
    }
    if (isPGliteFatal(error)) {
      this.#log.error('PGlite failed', { error })
      this.#session.markDead(error)
      this.#close(this.#session.dead as WireError)
      return
    }
    // The pg-gateway rule: the client learns only that something failed; the log gets the details.
    this.#log.error('batch failed', { error })
    this.#close(new WireError('FATAL', SqlState.InternalError, 'internal error in pglite-dev-db; see the server log', { cause: error }))
  }

  #close(error: WireError | null): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') return this.#cleanup ?? Promise.resolve()
    this.state = 'closing'
    this.#disarmIdleTimer()
    clearTimeout(this.#startupDeadline)
    this.#queue.length = 0
    if (error) this.#write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
    this.#protocolTrace?.close(error)
    this.socket.end()
    if (!this.socket.destroyed) {
      const grace = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref()
      this.socket.once('close', () => clearTimeout(grace))
    }
    // A wait for the session is abandoned now; a running batch finishes first, then #drain starts the cleanup.
    if (!this.isOwner) this.#session.scheduler.forget(this)
    if (!this.#draining) this.#startCleanup()
    return this.#cleanupDone
  }

  #startCleanup(): void {
    if (this.#cleanup) return
    this.#cleanup = this.#releaseSession().finally(() => {
      if (this.#session.unnamedStatementOwner === this) this.#session.unnamedStatementOwner = null
      this.#session.members.delete(this)
      this.#session.scheduler.forget(this)
      this.state = 'closed'
      this.#host.closed(this)
      this.#resolveCleanup()
    })
  }

  /**
   * Leave the session as if this client had never been there: close its pipeline, roll back its transaction,
   * deallocate its prepared statements (now if it holds the session, else when the next client takes it).
   */
  async #releaseSession(): Promise<void> {
    if (this.#session.dead) return
    this.#session.abandonChannels(this.#session.unlisten(this, null))
    if (!this.isOwner) {
      this.#session.abandonStatements(this.#names.closeAll())
      return
    }
    this.#discardOutput = true
    try {
      this.#copyIn = null
      if (this.#pipelineOpen) {
        await this.#execute(ABANDON_PIPELINE)
        this.#pipelineOpen = false
      }
      if (this.#txStatus !== TxStatus.Idle) await this.#execute(ROLLBACK)
      // A SET that committed before the client went is still in the session: the next owner resets it.
      if (this.#scanner.settingsChanged) this.#session.appliedSettings = UNKNOWN_SETTINGS
      this.#session.abandonStatements(this.#names.closeAll())
      await this.#session.closeAbandonedWork()
      this.#log.debug('session released after close', { status: String.fromCharCode(this.#txStatus) })
    } catch (error) {
      if (isPGliteFatal(error)) this.#session.markDead(error)
      this.#log.error('cleanup after close failed', { error })
    }
  }
}
