// A raw net.Socket Postgres client for deterministic interleavings: tests choose every frame and every write,
// and wait on observable backend messages. Every wait is bounded by a deadline that fails as StalledError.
import net from 'node:net'
import { once } from 'node:events'
import * as wire from './wire.ts'

export const DEFAULT_DEADLINE_MS = 5_000

/** A bounded wait ran out: the server owes a reply it has not sent. */
export class StalledError extends Error {
  override name = 'StalledError'
}

/** The server closed the connection while we waited for something else. */
export class ClosedError extends Error {
  override name = 'ClosedError'
}

/** An ErrorResponse arrived while waiting for another message type. */
export class BackendError extends Error {
  override name = 'BackendError'
  readonly code: string
  readonly severity: string
  constructor(readonly info: wire.ErrorInfo) {
    super(`${info.severity} ${info.code} ${info.message}`)
    this.code = info.code
    this.severity = info.severity
  }
}

export interface Address {
  host: string
  port: number
}

export interface RawClientOptions {
  /** Send a StartupMessage and wait for ReadyForQuery (default true). */
  startup?: boolean
  /** StartupMessage parameters (default user=postgres database=postgres). */
  params?: Record<string, string>
  /** Default bound for every wait on this client (default 5000 ms). */
  deadlineMs?: number
}

export interface WaitOptions {
  deadlineMs?: number
}

export interface RawClient {
  readonly socket: net.Socket
  /** BackendKeyData from startup, if the server sent one. */
  readonly backendKey: { pid: number; key: number } | undefined
  /** ParameterStatus values from startup. */
  readonly parameters: Record<string, string>
  /** Writes all frames in ONE socket write; resolves once the kernel has taken them. */
  send(...frames: Buffer[]): Promise<void>
  /**
   * Resolves with the next message of `type`, skipping others. An ErrorResponse met on the way rejects with
   * BackendError (unless `type` is the error itself); a close rejects with ClosedError; the deadline with StalledError.
   */
  next(type: wire.BackendType, options?: WaitOptions): Promise<wire.BackendMessage>
  /** Every message up to and including the next one of `type` (errors included, never thrown). */
  until(type: wire.BackendType, options?: WaitOptions): Promise<wire.BackendMessage[]>
  /** Simple Query, then everything up to ReadyForQuery, summarized. */
  query(sql: string, options?: WaitOptions): Promise<wire.Summary>
  /** Unnamed Parse/Bind/Describe/Execute/Sync in one write, then everything up to ReadyForQuery, summarized. */
  extended(sql: string, params?: Array<string | null>, options?: WaitOptions): Promise<wire.Summary>
  /** Resolves when the socket has closed (never rejects). */
  readonly closed: Promise<void>
  readonly isClosed: boolean
  /** Every byte the server sent so far, for tests of non-protocol replies. */
  received(): Buffer
  /**
   * Terminate, half-close, and wait (bounded) for the server to close; then destroys the socket either way.
   * Resolves false when the server lingered past the deadline: cleanup must not mask a scenario's verdict.
   */
  end(options?: WaitOptions): Promise<boolean>
  /** Drops the connection at once, without Terminate: a crashed client. */
  destroy(): void
}

/** Parses `postgres://user@host:port/db` (or takes `{ host, port }`). */
export function toAddress(target: string | Address): Address {
  if (typeof target !== 'string') return target
  const url = new URL(target)
  return { host: url.hostname, port: Number(url.port || 5432) }
}

/** A timer that rejects with StalledError; `cancel()` must run on every settle path so no handle stays open. */
function deadline(ms: number, what: () => string): { promise: Promise<never>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StalledError(`stalled: ${what()} within ${ms} ms`)), ms)
  })
  return { promise, cancel: () => clearTimeout(timer) }
}

/** Races `op` against a deadline: the one helper scenarios use to turn "no answer" into StalledError. */
export async function withDeadline<T>(op: Promise<T>, ms: number, what: string): Promise<T> {
  const d = deadline(ms, () => what)
  try {
    return await Promise.race([op, d.promise])
  } finally {
    d.cancel()
  }
}

export async function connectRaw(target: string | Address, options: RawClientOptions = {}): Promise<RawClient> {
  const address = toAddress(target)
  const defaultDeadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS
  const parser = wire.createBackendParser()
  const inbox: wire.BackendMessage[] = []
  const chunks: Buffer[] = []
  const parameters: Record<string, string> = {}
  let backendKey: { pid: number; key: number } | undefined
  let isClosed = false
  let failure: Error | undefined
  let wake: (() => void) | undefined

  const socket = net.connect(address.port, address.host)
  socket.setNoDelay(true)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    if (failure) return
    try {
      inbox.push(...parser.push(chunk))
    } catch (error) {
      failure = error as Error
    }
    wake?.()
  })
  // A reset or refused connection shows up as the close that follows; waits report it as ClosedError.
  socket.on('error', (error) => {
    failure ??= error
  })
  socket.once('close', () => {
    isClosed = true
    wake?.()
  })

  const received = () => Buffer.concat(chunks)
  const describeState = () => `${received().length} bytes received, ${parser.pendingBytes} unparsed`

  /** Takes messages off the inbox until `take` says stop; waits (bounded) for more when the inbox runs dry. */
  async function drain(type: wire.BackendType, ms: number, take: (m: wire.BackendMessage) => boolean): Promise<void> {
    if (wake) throw new Error('raw client: only one wait at a time')
    const code = wire.backendCode(type)
    const seen: string[] = []
    const d = deadline(
      ms,
      () => `no ${wire.backendName(code)} (seen: ${seen.join(', ') || 'nothing'}; ${describeState()})`,
    )
    try {
      for (;;) {
        while (inbox.length > 0) {
          const message = inbox.shift()!
          seen.push(message.name)
          if (take(message)) return
        }
        if (failure) throw failure
        if (isClosed) {
          throw new ClosedError(
            `connection closed while waiting for ${wire.backendName(code)} (seen: ${seen.join(', ') || 'nothing'}; ${describeState()})`,
          )
        }
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), d.promise])
        wake = undefined
      }
    } finally {
      wake = undefined
      d.cancel()
    }
  }

  const client: RawClient = {
    socket,
    get backendKey() {
      return backendKey
    },
    parameters,
    send(...frames) {
      return new Promise((resolve, reject) => {
        socket.write(Buffer.concat(frames), (error) => (error ? reject(error) : resolve()))
      })
    },
    async next(type, waitOptions = {}) {
      const code = wire.backendCode(type)
      let found: wire.BackendMessage | undefined
      await drain(type, waitOptions.deadlineMs ?? defaultDeadlineMs, (m) => {
        if (m.code === code) {
          found = m
          return true
        }
        if (m.code === 'E') throw new BackendError(wire.decodeError(m.body))
        return false
      })
      return found!
    },
    async until(type, waitOptions = {}) {
      const code = wire.backendCode(type)
      const collected: wire.BackendMessage[] = []
      await drain(type, waitOptions.deadlineMs ?? defaultDeadlineMs, (m) => {
        collected.push(m)
        return m.code === code
      })
      return collected
    },
    async query(sql, waitOptions) {
      await client.send(wire.query(sql))
      return wire.summarize(await client.until('Z', waitOptions))
    },
    async extended(sql, params = [], waitOptions) {
      await client.send(
        wire.parse('', sql),
        wire.bind('', '', params),
        wire.describe('P', ''),
        wire.execute(''),
        wire.sync(),
      )
      return wire.summarize(await client.until('Z', waitOptions))
    },
    closed,
    get isClosed() {
      return isClosed
    },
    received,
    async end(waitOptions = {}) {
      if (isClosed) return true
      if (socket.writable) socket.end(wire.terminate())
      const d = deadline(waitOptions.deadlineMs ?? defaultDeadlineMs, () => 'close after Terminate')
      try {
        await Promise.race([closed, d.promise])
        return true
      } catch (error) {
        if (!(error instanceof StalledError)) throw error
        return false
      } finally {
        d.cancel()
        socket.destroy()
      }
    },
    destroy() {
      socket.destroy()
    },
  }

  try {
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve)
        socket.once('error', reject)
      }),
      defaultDeadlineMs,
      'TCP connect',
    )
    if (options.startup !== false) {
      await client.send(wire.startup(options.params ?? { user: 'postgres', database: 'postgres' }))
      // A startup refusal is ErrorResponse + close with no ReadyForQuery: throw it as soon as it arrives.
      await drain('Z', defaultDeadlineMs, (m) => {
        if (m.code === 'E') throw new BackendError(wire.decodeError(m.body))
        if (m.code === 'K') backendKey = wire.decodeBackendKeyData(m.body)
        if (m.code === 'S') {
          const [name, value] = wire.decodeParameterStatus(m.body)
          parameters[name] = value
        }
        return m.code === 'Z'
      })
    }
  } catch (error) {
    socket.destroy()
    throw error
  }
  return client
}

/**
 * Send a CancelRequest for `key` on a socket of its own, as libpq does, and resolve once the server has closed that
 * socket (it answers nothing).
 */
export async function sendCancelRequest(
  target: string | Address,
  key: { pid: number; key: number } | undefined,
): Promise<void> {
  if (!key) throw new Error('the client got no BackendKeyData')
  const { host, port } = toAddress(target)
  const socket = net.connect(port, host)
  socket.on('error', () => socket.destroy())
  await withDeadline(once(socket, 'connect'), 3_000, 'cancel socket connect')
  const closed = once(socket, 'close')
  socket.write(wire.cancelRequest(key.pid, key.key))
  await withDeadline(closed, 3_000, 'server closes the cancel socket')
}
