// The protocol trace (--trace FILE): every frame each client sends and receives, and its connect and close, as
// JSON lines in one file. assembler.ts reassembles the frames from socket chunks; decode.ts decodes them.

import { createWriteStream, type WriteStream } from 'node:fs'
import type { Socket } from 'node:net'
import path from 'node:path'
import type { WireError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { decodeBackend, decodeFrontend, decodeStartupPacket, type PasswordKind, type TraceFields } from './decode.ts'
import { FrameAssembler } from './assembler.ts'

export const TRACE_FORMAT = 'pglite-dev-db protocol trace'
export const TRACE_VERSION = 1

/** The first line of a trace file: when it started, as wall time. */
export interface TraceHeader {
  trace: typeof TRACE_FORMAT
  version: number
  started: string
}

/**
 * One message. `t`: ms since the trace started; `conn`: the process id the client was told (BackendKeyData);
 * `dir`: "in" client to server, "out" server to client; `read`: which socket read of this client completed the
 * frame (frames of one read arrived together); `len`: the whole message's bytes.
 */
export type FrameRecord = { t: number; conn: number; dir: 'in' | 'out'; read?: number; len: number } & TraceFields

export interface ConnectionEvent {
  t: number
  conn: number
  event: 'connect' | 'close'
  /** connect: the client's address. */
  remote?: string
  /** close: the FATAL the server sent, Terminate, CancelRequest, a socket error, or "client disconnected". */
  reason?: string
  /** close: bytes of an unfinished message the client had sent. */
  pendingBytes?: number
}

/** Lines left out because the disk could not keep up (more than MAX_BUFFERED_BYTES waiting). */
export interface DroppedEvent {
  t: number
  event: 'dropped'
  lines: number
}

export type TraceRecord = FrameRecord | ConnectionEvent | DroppedEvent

/** Bytes kept of one message for decoding: the client's whole (a replay resends them), replies' beginnings. */
export const CLIENT_KEEP = 1024 * 1024
export const SERVER_KEEP = 64 * 1024
/** Past this many bytes waiting for the disk, lines are dropped (and counted) instead of held in memory. */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024

const openFiles = new Map<string, TraceFile>()

/** One trace file, shared by every server of this process given the same path (TCP and Unix socket alike). */
export class TraceFile {
  readonly path: string
  readonly #stream: WriteStream
  readonly #log: Logger
  readonly #startedAt = performance.now()
  #refs = 1
  #lines: string[] = []
  #flushScheduled = false
  #dropped = 0
  #failed = false
  #faulted = false
  #ended = false

  /** Open `where` (truncating it), or share it when this process already traces there; pair with release(). */
  static acquire(where: string, log: Logger): TraceFile {
    const full = path.resolve(where)
    const existing = openFiles.get(full)
    if (existing) {
      existing.#refs++
      return existing
    }
    const file = new TraceFile(full, log)
    openFiles.set(full, file)
    return file
  }

  private constructor(full: string, log: Logger) {
    this.path = full
    this.#log = log
    this.#stream = createWriteStream(full)
    this.#stream.on('error', (error) =>
      this.#fail('cannot write the protocol trace; serving goes on without it', error),
    )
    const header: TraceHeader = { trace: TRACE_FORMAT, version: TRACE_VERSION, started: new Date().toISOString() }
    this.#stream.write(`${JSON.stringify(header)}\n`)
  }

  /** ms since the trace started, to the microsecond. */
  now(): number {
    return Math.round((performance.now() - this.#startedAt) * 1000) / 1000
  }

  write(record: TraceRecord): void {
    if (this.#ended || this.#failed) return
    this.#lines.push(JSON.stringify(record))
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flush)
    }
  }

  /** A new client: records its connect; feed it the client's bytes and ours. */
  connection(processId: number, socket: Socket): ConnectionTrace {
    return new ConnectionTrace(this, processId, socket)
  }

  /** Once the last server sharing the file lets go: everything written out and the file closed. */
  release(): Promise<void> {
    if (--this.#refs > 0) return Promise.resolve()
    if (openFiles.get(this.path) === this) openFiles.delete(this.path)
    this.#flush()
    this.#ended = true
    const stream = this.#stream
    if (stream.closed) return Promise.resolve()
    return new Promise((resolveClosed) => {
      stream.once('close', () => resolveClosed())
      stream.end()
    })
  }

  /** Tracing failed (the file, or a bug in decoding): warn once, never disturb the clients. */
  #fail(what: string, error: unknown): void {
    if (this.#failed) return
    this.#failed = true
    this.#lines = []
    this.#log.warn(what, { path: this.path, error })
  }

  /** A connection's frames could not be traced (a decoding bug): it stops being traced; the first such is logged. */
  fault(error: unknown): void {
    if (this.#faulted) return
    this.#faulted = true
    this.#log.warn('protocol trace: a connection is no longer traced after an error in the trace itself', {
      path: this.path,
      error,
    })
  }

  readonly #flush = (): void => {
    this.#flushScheduled = false
    if (this.#lines.length === 0 || this.#failed || this.#ended) return
    if (this.#stream.writableLength > MAX_BUFFERED_BYTES) {
      this.#dropped += this.#lines.length
      this.#lines = []
      return
    }
    if (this.#dropped > 0) {
      const dropped: DroppedEvent = { t: this.now(), event: 'dropped', lines: this.#dropped }
      this.#lines.unshift(JSON.stringify(dropped))
      this.#dropped = 0
    }
    this.#lines.push('')
    this.#stream.write(this.#lines.join('\n'))
    this.#lines = []
  }
}

/** One client's two directions, each reassembled into whole messages whatever the chunking. */
export class ConnectionTrace {
  readonly #file: TraceFile
  readonly #conn: number
  readonly #socket: Socket
  readonly #client: FrameAssembler
  readonly #server: FrameAssembler
  #reads = 0
  #password: PasswordKind = 'PasswordMessage'
  #lastClientType = ''
  /** The first SSLRequest and GSSENCRequest get a one-byte answer (a repeat is FATAL), in order. */
  readonly #byteAnswers: string[] = []
  #sslSeen = false
  #gssSeen = false
  #off = false

  constructor(file: TraceFile, conn: number, socket: Socket) {
    this.#file = file
    this.#conn = conn
    this.#socket = socket
    this.#client = new FrameAssembler(CLIENT_KEEP, false, this.#clientFrame, this.#garbage('in'))
    this.#server = new FrameAssembler(SERVER_KEEP, true, this.#serverFrame, this.#garbage('out'), this.#serverByte)
    const remote = socket.remoteAddress === undefined ? 'local' : `${socket.remoteAddress}:${socket.remotePort}`
    file.write({ t: file.now(), conn, event: 'connect', remote })
  }

  /** Bytes from the client, as read from the socket. */
  in(chunk: Buffer): void {
    if (this.#off) return
    this.#reads++
    try {
      this.#client.push(chunk)
    } catch (error) {
      this.#stop(error)
    }
  }

  /** Bytes written to the client. */
  out(bytes: Uint8Array): void {
    if (this.#off) return
    try {
      this.#server.push(bytes)
    } catch (error) {
      this.#stop(error)
    }
  }

  /** The connection is closing: with the FATAL it was sent, or null (the client left, or asked). */
  close(error: WireError | null): void {
    if (this.#off) return
    this.#off = true
    const errored = this.#socket.errored as NodeJS.ErrnoException | null
    const reason = error
      ? `${error.severity} ${error.sqlstate} ${error.message}`
      : errored
        ? `socket error ${errored.code ?? errored.message}`
        : this.#lastClientType === 'Terminate' || this.#lastClientType === 'CancelRequest'
          ? this.#lastClientType
          : 'client disconnected'
    const event: ConnectionEvent = { t: this.#file.now(), conn: this.#conn, event: 'close', reason }
    if (this.#client.pending > 0) event.pendingBytes = this.#client.pending
    this.#file.write(event)
  }

  #stop(error: unknown): void {
    this.#off = true
    this.#file.fault(error)
  }

  #record(dir: 'in' | 'out', fields: TraceFields, len: number): void {
    const record = (
      dir === 'in'
        ? { t: this.#file.now(), conn: this.#conn, dir, read: this.#reads, type: fields.type, len }
        : { t: this.#file.now(), conn: this.#conn, dir, type: fields.type, len }
    ) as FrameRecord
    this.#file.write(Object.assign(record, fields))
  }

  readonly #clientFrame = (frame: Buffer, len: number): void => {
    let fields: TraceFields
    if (this.#client.typed) {
      fields = decodeFrontend(frame, this.#password)
    } else {
      fields = decodeStartupPacket(frame)
      if (fields.type === 'StartupMessage') {
        this.#client.typed = true
      } else if (fields.type === 'SSLRequest' && !this.#sslSeen) {
        this.#sslSeen = true
        this.#expectByte('SSLResponse')
      } else if (fields.type === 'GSSENCRequest' && !this.#gssSeen) {
        this.#gssSeen = true
        this.#expectByte('GSSENCResponse')
      }
    }
    this.#lastClientType = fields.type
    this.#record('in', fields, len)
  }

  #expectByte(type: string): void {
    this.#byteAnswers.push(type)
    this.#server.singleBytes++
  }

  readonly #serverFrame = (frame: Buffer, len: number): void => {
    const fields = decodeBackend(frame)
    const type = fields.type
    if (type === 'AuthenticationSASL') this.#password = 'SASLInitialResponse'
    else if (type === 'AuthenticationSASLContinue') this.#password = 'SASLResponse'
    else if (type === 'AuthenticationGSS' || type === 'AuthenticationSSPI') this.#password = 'GSSResponse'
    else if (type === 'AuthenticationCleartextPassword' || type === 'AuthenticationMD5Password')
      this.#password = 'PasswordMessage'
    this.#record('out', fields, len)
  }

  readonly #serverByte = (byte: number): void => {
    this.#record('out', { type: this.#byteAnswers.shift() ?? 'SSLResponse', answer: String.fromCharCode(byte) }, 1)
  }

  #garbage(dir: 'in' | 'out'): (bytes: number) => void {
    return (bytes) => this.#record(dir, { type: 'Garbage' }, bytes)
  }
}
