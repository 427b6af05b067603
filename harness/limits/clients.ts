// The clients the limits are measured with: raw wire clients (harness/raw-client.ts) that name themselves 'limits' so
// a shared PostgreSQL's memory can be told apart, timed queries whose every wait is bounded, and CancelRequest.
import { once } from 'node:events'
import net from 'node:net'
import {
  BackendError,
  ClosedError,
  connectRaw,
  StalledError,
  toAddress,
  withDeadline,
  type RawClient,
} from '../raw-client.ts'
import * as wire from '../wire.ts'

export const CLIENT_APP = 'limits'
export const MONITOR_APP = 'limits-monitor'

export interface ClientOptions {
  app?: string
  deadlineMs?: number
}

export function connectClient(url: string, options: ClientOptions = {}): Promise<RawClient> {
  const database = decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres'
  return connectRaw(url, {
    params: { user: 'postgres', database, application_name: options.app ?? CLIENT_APP },
    deadlineMs: options.deadlineMs ?? 10_000,
  })
}

/** A new connection, timed from the TCP connect to ReadyForQuery. */
export async function timedConnect(
  url: string,
  deadlineMs: number,
): Promise<{ client: RawClient | null; ms: number; failure?: string }> {
  const started = performance.now()
  try {
    const client = await connectClient(url, { deadlineMs })
    return { client, ms: performance.now() - started }
  } catch (error) {
    return { client: null, ms: performance.now() - started, failure: describeFailure(error) }
  }
}

export interface Reply {
  /** From the write of the request to the end of its reply (or to the failure). */
  ms: number
  /** performance.now() at the end of the reply. */
  endedAt: number
  outcome: 'ok' | 'error' | 'stalled' | 'closed'
  /** Every ErrorResponse, as `SEVERITY CODE`. */
  errors: string[]
  rows: Array<Array<string | null>>
  /** Message names after the reply, up to the close, when the server closed the connection. */
  detail?: string
}

/** Sends `frames` and reads up to ReadyForQuery, bounded; a close or the deadline is an outcome, not a throw. */
export async function timedRequest(client: RawClient, frames: Buffer[], deadlineMs: number): Promise<Reply> {
  const started = performance.now()
  try {
    await client.send(...frames)
    const summary = wire.summarize(await client.until('ReadyForQuery', { deadlineMs }))
    const endedAt = performance.now()
    const errors = summary.errors.map((e) => `${e.severity} ${e.code}`)
    return { ms: endedAt - started, endedAt, outcome: errors.length > 0 ? 'error' : 'ok', errors, rows: summary.rows }
  } catch (error) {
    const endedAt = performance.now()
    const ms = endedAt - started
    if (error instanceof StalledError)
      return { ms, endedAt, outcome: 'stalled', errors: [], rows: [], detail: error.message }
    if (error instanceof ClosedError || isDisconnect(error))
      return { ms, endedAt, outcome: 'closed', errors: errorsIn(client), rows: [], detail: describeFailure(error) }
    throw error
  }
}

export const timedQuery = (client: RawClient, sql: string, deadlineMs: number): Promise<Reply> =>
  timedRequest(client, [wire.query(sql)], deadlineMs)

/** The ErrorResponses among every byte the server sent (what a closed connection last heard). */
export function errorsIn(client: RawClient): string[] {
  const parser = wire.createBackendParser()
  return parser
    .push(client.received())
    .filter((m) => m.code === 'E')
    .map((m) => {
      const info = wire.decodeError(m.body)
      return `${info.severity} ${info.code}`
    })
}

export function isDisconnect(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNREFUSED' || code === 'ERR_STREAM_DESTROYED'
}

export function describeFailure(error: unknown): string {
  if (error instanceof BackendError) return `${error.severity} ${error.code}`
  if (error instanceof StalledError || error instanceof ClosedError) return error.message
  if (isDisconnect(error)) return (error as NodeJS.ErrnoException).code!
  throw error
}

/** A CancelRequest on its own socket, as libpq sends it; resolves once written (the time the cancel was asked). */
export async function sendCancel(url: string, key: { pid: number; key: number }): Promise<number> {
  const { host, port } = toAddress(url)
  const socket = net.connect(port, host)
  socket.on('error', () => socket.destroy())
  await withDeadline(once(socket, 'connect'), 5_000, 'cancel socket connect')
  const asked = performance.now()
  socket.end(wire.cancelRequest(key.pid, key.key))
  // The server closes it without a reply; bounded either way.
  await withDeadline(once(socket, 'close'), 5_000, 'server closes the cancel socket').catch((error: unknown) => {
    if (!(error instanceof StalledError)) throw error
    socket.destroy()
  })
  return asked
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Milliseconds to seconds, two decimals: `2.01 s`. */
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`
