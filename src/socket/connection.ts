// One client socket: startup, then batches of its frames through the shared session in order, the release
// rule, idle timers, and cleanup that leaves no trace in the session whenever and however the client goes.

import type { Socket } from 'node:net'
import { randomInt } from 'node:crypto'
import { SqlState, WireError, isDisconnectError, isPGliteFatal } from '../errors.ts'
import type { Logger } from '../log.ts'
import { FrameReader, forEachFrame, protocolViolation, type Frames } from './frames.ts'
import {
  FrontendCode,
  StartupCode,
  SYNC_MESSAGE,
  TxStatus,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeNegotiateProtocolVersion,
  encodeQuery,
  encodeReadyForQuery,
} from './protocol.ts'
import { ReplyScanner } from './replies.ts'
import { SchedulerClosedError } from './scheduler.ts'
import type { SessionMember, SharedSession } from './session.ts'
import { hexDump } from './inspect.ts'

export interface ConnectionOptions {
  /** Reap a client that holds the session (open pipeline or transaction) and sends nothing this long: FATAL 25P03. 0 = never. */
  idleInTransactionTimeoutMs: number
  /** Close a client at rest that sends nothing this long: FATAL 57P05. 0 = never. */
  idleTimeoutMs: number
  /** Log every frame in and out as a hex dump (at trace level). */
  inspect: boolean
}

/** What a connection needs from the server that accepted it. */
export interface ConnectionHost {
  readonly session: SharedSession
  readonly log: Logger
  readonly options: ConnectionOptions
  /** Called with the StartupMessage; a returned error refuses the client (e.g. 53300). */
  admit(connection: Connection): WireError | null
  cancel(processId: number, secretKey: number): void
  closed(connection: Connection): void
}

export type ConnectionState = 'startup' | 'ready' | 'closing' | 'closed'

/** Above this many queued batches the socket stops reading until the queue drains. */
const MAX_QUEUED_BATCHES = 64
const ROLLBACK = encodeQuery('ROLLBACK')
const SSL_NOT_SUPPORTED = Buffer.from('N')
/** A FATAL goodbye gets this long to flush before the socket is destroyed. */
const CLOSE_GRACE_MS = 2000

let nextProcessId = 1000 + (process.pid % 1000) * 1000

export class Connection implements SessionMember {
  readonly processId = nextProcessId++
  readonly secretKey = randomInt(0, 2 ** 31)
  readonly socket: Socket
  readonly startupParams = new Map<string, string>()
  state: ConnectionState = 'startup'

  readonly #host: ConnectionHost
  readonly #session: SharedSession
  readonly #log: Logger
  readonly #reader = new FrameReader()
  readonly #scanner = new ReplyScanner()
  readonly #queue: Frames[] = []
  #draining = false
  #pipelineOpen = false
  #txStatus: number = TxStatus.Idle
  /** While true, PGlite's output is followed but not sent (cleanup after the client is gone). */
  #discardOutput = false
  #idleTimer: NodeJS.Timeout | undefined
  #cleanup: Promise<void> | null = null
  #resolveCleanup: () => void = () => {}
  readonly #cleanupDone = new Promise<void>((resolve) => {
    this.#resolveCleanup = resolve
  })
  #pausedForBackpressure = false
  readonly #trace: boolean

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket
    this.#host = host
    this.#session = host.session
    this.#log = host.log.child({ conn: this.processId })
    this.#trace = host.options.inspect && this.#log.enabled('trace')
    // Cleanup is wired before anything async can happen, so no path leaks a slot or the session.
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (error) => this.#onSocketError(error))
    socket.on('close', () => {
      this.#close(null)
    })
    socket.setNoDelay(true)
    this.#armIdleTimer()
  }

  get isOwner(): boolean {
    return this.#session.scheduler.isOwner(this)
  }

  get queuedBatches(): number {
    return this.#queue.length
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
    if (this.state === 'closing' || this.state === 'closed') return
    this.#disarmIdleTimer()
    if (this.#trace) this.#log.trace('frontend bytes', { dump: hexDump(chunk) })
    try {
      this.#reader.push(chunk)
      if (!this.#reader.isTyped) {
        this.#readStartup()
        if (this.state !== 'ready') return
      }
      let frames: Frames | null
      while ((frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
    } catch (error) {
      this.#fail(error)
    }
  }

  #readStartup(): void {
    let packet: Buffer | null
    while (this.state === 'startup' && (packet = this.#reader.readStartupPacket()) !== null) {
      const code = packet.readInt32BE(4)
      if (code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest) {
        if (packet.length !== 8) throw protocolViolation('invalid length of startup packet')
        this.#write(SSL_NOT_SUPPORTED)
        continue
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
    const refusal = this.#host.admit(this)
    if (refusal) {
      this.#close(refusal)
      return
    }
    const prefix = this.#session.startupPrefixNow
    if (!prefix) throw new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up')
    const parts = [prefix, encodeBackendKeyData(this.processId, this.secretKey), encodeReadyForQuery(TxStatus.Idle)]
    // A newer 3.x minor or `_pq_.` options: say we speak 3.0 and which options we ignored; the client carries on.
    if (minor > 0 || unrecognized.length > 0) parts.unshift(encodeNegotiateProtocolVersion(0, unrecognized))
    this.state = 'ready'
    this.#reader.startTyped()
    this.#write(Buffer.concat(parts))
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
        await this.#runBatch(frames)
      }
    } finally {
      this.#draining = false
      if (this.state === 'closing') this.#startCleanup()
      else if (this.state === 'ready' && this.#queue.length === 0) this.#armIdleTimer()
    }
  }

  // --- Execution ---

  async #runBatch(frames: Frames): Promise<void> {
    let end = frames.bytes.length
    let terminate = false
    let expectedReady = 0
    let pipelineOpen = this.#pipelineOpen
    forEachFrame(frames.bytes, (code, offset) => {
      switch (code) {
        case FrontendCode.Terminate:
          end = offset
          terminate = true
          return false
        case FrontendCode.Sync:
        case FrontendCode.Query:
        case FrontendCode.FunctionCall:
          expectedReady++
          pipelineOpen = false
          break
        case FrontendCode.Parse:
        case FrontendCode.Bind:
        case FrontendCode.Describe:
        case FrontendCode.Execute:
        case FrontendCode.Close:
          pipelineOpen = true
          break
      }
      return true
    })
    if (end > 0) {
      const wait = this.#session.scheduler.acquire(this)
      if (wait) await wait
      if (this.state !== 'ready') return
      const bytes = end === frames.bytes.length ? frames.bytes : frames.bytes.subarray(0, end)
      await this.#execute(bytes)
      // Every Sync/Query yields a ReadyForQuery in the same call, except a Query skipped while an error waits for Sync.
      if (this.#scanner.readyCount < expectedReady) pipelineOpen = true
      this.#pipelineOpen = pipelineOpen
      this.#releaseIfIdle()
    }
    if (terminate) this.#close(null)
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
    if (this.#scanner.readyCount > 0) this.#txStatus = this.#scanner.lastStatus
  }

  readonly #sink = (chunk: Uint8Array): void => {
    this.#scanner.feed(chunk)
    if (this.#discardOutput) return
    if (this.#trace) this.#log.trace('backend bytes', { dump: hexDump(chunk) })
    // PGlite hands us a view of its WASM memory: copy before it is reused.
    this.#write(Buffer.from(chunk))
  }

  /** The release rule: no open pipeline and ReadyForQuery said Idle. */
  #releaseIfIdle(): void {
    if (!this.#pipelineOpen && this.#txStatus === TxStatus.Idle) this.#session.scheduler.release(this)
  }

  #write(bytes: Uint8Array): void {
    if (this.socket.writable) this.socket.write(bytes)
  }

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
    this.#queue.length = 0
    if (error && this.socket.writable) this.socket.write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
    this.socket.end()
    if (!this.socket.destroyed) setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref()
    // A wait for the session is abandoned now; a running batch finishes first, then #drain starts the cleanup.
    if (!this.isOwner) this.#session.scheduler.forget(this)
    if (!this.#draining) this.#startCleanup()
    return this.#cleanupDone
  }

  #startCleanup(): void {
    if (this.#cleanup) return
    this.#cleanup = this.#releaseSession().finally(() => {
      this.#session.scheduler.forget(this)
      this.state = 'closed'
      this.#host.closed(this)
      this.#resolveCleanup()
    })
  }

  /** Leave the session as if this client had never been there: close its pipeline, roll back its transaction. */
  async #releaseSession(): Promise<void> {
    if (!this.isOwner || this.#session.dead) return
    this.#discardOutput = true
    try {
      if (this.#pipelineOpen) {
        await this.#execute(SYNC_MESSAGE)
        this.#pipelineOpen = false
      }
      if (this.#txStatus !== TxStatus.Idle) await this.#execute(ROLLBACK)
      this.#log.debug('session released after close', { status: String.fromCharCode(this.#txStatus) })
    } catch (error) {
      if (isPGliteFatal(error)) this.#session.markDead(error)
      this.#log.error('cleanup after close failed', { error })
    }
  }
}
