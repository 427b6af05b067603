// `pglite-dev-db trace view FILE [--conn ID ...]`: a --trace file as a timeline, each connection in its own lane.
// The file is read as a stream: memory grows with the connections open at once, not with the file.

import { createReadStream } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import type { ConnectionEvent, DroppedEvent, FrameRecord, TraceRecord } from '../server/trace/trace.ts'
import { TRACE_FORMAT } from '../server/trace/trace.ts'
import type { TraceValue } from '../server/trace/decode.ts'

export const TRACE_USAGE = `Usage: pglite-dev-db trace view FILE [--conn ID ...]

Prints a protocol trace written with --trace FILE as a timeline: one line per message, indented into its
connection's lane, with ms since the trace started and a short decoded summary. Consecutive messages of one
type on one connection collapse into one line (×N). -> client to server, <- server to client, + connect,
x close; a line marked ! holds an error.

  --conn ID   show only this connection (the process id its client was told); repeat for more`

/** Columns each lane is indented by; lanes past MAX_LANES wrap around (the connection id is on every line). */
const LANE_WIDTH = 8
const MAX_LANES = 10
const SQL_WIDTH = 80
const VALUE_WIDTH = 24

export interface TraceViewIo {
  stdout: (line: string) => void
  stderr: (line: string) => void
}

/** Runs `trace …` (argv after "trace"); returns the exit status. */
export async function traceCommand(argv: readonly string[], io: TraceViewIo): Promise<number> {
  const usageError = (message: string): number => {
    io.stderr(`pglite-dev-db trace: ${message}\n\n${TRACE_USAGE}`)
    return 2
  }
  if (argv.includes('--help')) {
    io.stdout(TRACE_USAGE)
    return 0
  }
  if (argv[0] !== 'view')
    return usageError(argv[0] === undefined ? 'missing subcommand' : `unknown subcommand '${argv[0]}'`)
  let file: string | undefined
  const conns = new Set<number>()
  for (let i = 1; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--conn' || arg.startsWith('--conn=')) {
      const value = arg === '--conn' ? argv[++i] : arg.slice('--conn='.length)
      if (value === undefined || !/^\d+$/.test(value))
        return usageError(`option '--conn' needs a connection id, got '${value ?? ''}'`)
      conns.add(Number(value))
    } else if (arg.startsWith('--')) {
      return usageError(`unknown option '${arg}'`)
    } else if (file === undefined) {
      file = arg
    } else {
      return usageError(`unexpected argument '${arg}'`)
    }
  }
  if (file === undefined) return usageError('missing FILE')
  return viewTrace(file, conns, io)
}

async function viewTrace(file: string, conns: ReadonlySet<number>, io: TraceViewIo): Promise<number> {
  const input = createReadStream(file)
  try {
    await once(input, 'open')
  } catch (error) {
    io.stderr(`pglite-dev-db trace: cannot read ${file}: ${(error as Error).message}`)
    return 1
  }
  const timeline = new Timeline(conns, io.stdout)
  let lineNumber = 0
  let skipped = 0
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    lineNumber++
    if (line === '') continue
    let record: unknown
    try {
      record = JSON.parse(line)
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error
      // A server killed mid-write leaves a cut last line; anything else is not a trace.
      if (skipped++ === 0) io.stderr(`pglite-dev-db trace: ${file}:${lineNumber}: not a JSON line, skipped`)
      continue
    }
    if (lineNumber === 1) {
      if ((record as { trace?: unknown }).trace !== TRACE_FORMAT) {
        io.stderr(
          `pglite-dev-db trace: ${file} is not a pglite-dev-db protocol trace (its first line has no "trace": "${TRACE_FORMAT}")`,
        )
        input.destroy()
        return 1
      }
      io.stdout(
        `trace started ${(record as { started: string }).started}   -> client to server   <- server to client   ! error`,
      )
      io.stdout(` ${'ms'.padStart(10)}  conn`)
      continue
    }
    timeline.add(record as TraceRecord)
  }
  timeline.end()
  return 0
}

interface Run {
  record: FrameRecord
  count: number
  isError: boolean
}

class Timeline {
  readonly #conns: ReadonlySet<number>
  readonly #print: (line: string) => void
  readonly #lanes = new Map<number, number>()
  readonly #used = new Set<number>()
  #run: Run | null = null

  constructor(conns: ReadonlySet<number>, print: (line: string) => void) {
    this.#conns = conns
    this.#print = print
  }

  add(record: TraceRecord): void {
    if ('event' in record && record.event === 'dropped') {
      this.#flushRun()
      this.#line(
        record.t,
        null,
        `${(record as DroppedEvent).lines} trace lines dropped here (the disk fell behind)`,
        true,
      )
      return
    }
    const { conn } = record as FrameRecord | ConnectionEvent
    if (this.#conns.size > 0 && !this.#conns.has(conn)) return
    if ('event' in record) {
      this.#flushRun()
      const event = record as ConnectionEvent
      if (event.event === 'connect') {
        this.#line(event.t, conn, `+ connect ${event.remote ?? ''}`, false)
      } else {
        const pending = event.pendingBytes ? ` (${event.pendingBytes} bytes of an unfinished message)` : ''
        const reason = event.reason ?? ''
        this.#line(
          event.t,
          conn,
          `x close: ${reason}${pending}`,
          reason.startsWith('FATAL') || reason.startsWith('PANIC') || reason.startsWith('socket error'),
        )
        this.#used.delete(this.#lanes.get(conn) ?? -1)
        this.#lanes.delete(conn)
      }
      return
    }
    const frame = record as FrameRecord
    const run = this.#run
    if (run && run.record.conn === frame.conn && run.record.dir === frame.dir && run.record.type === frame.type) {
      run.count++
      return
    }
    this.#flushRun()
    this.#run = { record: frame, count: 1, isError: frame.type === 'ErrorResponse' || frame.type === 'Garbage' }
  }

  end(): void {
    this.#flushRun()
  }

  #flushRun(): void {
    const run = this.#run
    if (!run) return
    this.#run = null
    const { record } = run
    const summary = summarize(record)
    const size = record.truncated ? ` (${record.len} bytes)` : ''
    const times = run.count > 1 ? `  ×${run.count}` : ''
    this.#line(
      record.t,
      record.conn,
      `${record.dir === 'in' ? '->' : '<-'} ${record.type}${summary ? ` ${summary}` : ''}${size}${times}`,
      run.isError,
    )
  }

  #line(t: number, conn: number | null, text: string, isError: boolean): void {
    const lane = conn === null ? 0 : this.#laneOf(conn)
    const who = conn === null ? '' : `${conn} `
    this.#print(
      `${isError ? '!' : ' '}${t.toFixed(3).padStart(10)}  ${' '.repeat((lane % MAX_LANES) * LANE_WIDTH)}${who}${text}`,
    )
  }

  /** A connection keeps its lane until it closes; a new one takes the lowest free lane. */
  #laneOf(conn: number): number {
    let lane = this.#lanes.get(conn)
    if (lane !== undefined) return lane
    for (lane = 0; this.#used.has(lane); lane++);
    this.#lanes.set(conn, lane)
    this.#used.add(lane)
    return lane
  }
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`
}

function sql(text: unknown): string {
  return cut(
    String(text ?? '')
      .replace(/\s+/g, ' ')
      .trim(),
    SQL_WIDTH,
  )
}

function value(v: TraceValue | undefined): string {
  if (v === null || v === undefined) return 'NULL'
  if (typeof v === 'string') return JSON.stringify(cut(v, VALUE_WIDTH))
  return `\\x${cut(v.hex, VALUE_WIDTH)}(${v.bytes} bytes)`
}

const name = (n: unknown): string => JSON.stringify(n ?? '')

/** A few words per message: what a reader scanning for an interleaving needs. */
function summarize(r: FrameRecord): string {
  switch (r.type) {
    case 'StartupMessage': {
      const params = (r.params ?? {}) as Record<string, string>
      return ['user', 'database', 'application_name']
        .filter((key) => params[key] !== undefined)
        .map((key) => `${key}=${params[key]}`)
        .join(' ')
    }
    case 'Query':
      return sql(r.query)
    case 'Parse':
      return `${name(r.statement)} ${sql(r.query)}`
    case 'Bind': {
      const params = (r.params ?? []) as TraceValue[]
      return `portal=${name(r.portal)} stmt=${name(r.statement)}${params.length > 0 ? ` [${params.map(value).join(', ')}]` : ''}`
    }
    case 'Describe':
    case 'Close':
      return `${String(r.kind)} ${name(r.name)}`
    case 'Execute':
      return `portal=${name(r.portal)}${r.maxRows ? ` max=${String(r.maxRows)}` : ''}`
    case 'CopyData':
      return value(r.data as TraceValue)
    case 'CopyFail':
      return String(r.message)
    case 'ErrorResponse':
    case 'NoticeResponse':
      return `${String(r.severity)} ${String(r.code)} ${cut(String(r.message), SQL_WIDTH)}`
    case 'ReadyForQuery':
      return String(r.status)
    case 'CommandComplete':
      return String(r.tag)
    case 'RowDescription':
      return `(${((r.columns ?? []) as string[]).join(', ')})`
    case 'DataRow':
      return `[${((r.values ?? []) as TraceValue[]).map(value).join(', ')}]`
    case 'ParameterStatus':
      return `${String(r.name)}=${String(r.value)}`
    case 'BackendKeyData':
    case 'CancelRequest':
      return `pid=${String(r.pid)}`
    case 'NotificationResponse':
      return `${String(r.channel)} ${value(r.payload as TraceValue)}`
    case 'CopyInResponse':
    case 'CopyOutResponse':
      return `${String(r.columns)} columns`
    case 'AuthenticationSASL':
      return ((r.mechanisms ?? []) as string[]).join(' ')
    case 'SASLInitialResponse':
      return String(r.mechanism)
    case 'SSLResponse':
    case 'GSSENCResponse':
      return String(r.answer)
    case 'Unknown':
      return `code ${String(r.code)}`
    default:
      return ''
  }
}
