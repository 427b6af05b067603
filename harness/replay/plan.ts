// A trace file (pglite-dev-db --trace) as a replay plan: each connection's client messages re-encoded, in the
// recorded global order, grouped as the server read them, each group with the replies connections had by then.
import { createReadStream } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { TRACE_FORMAT, type ConnectionEvent, type FrameRecord, type TraceRecord } from '../../src/server/trace/trace.ts'
import type { TraceFields, TraceValue } from '../../src/server/trace/decode.ts'
import { Writer as WireWriter } from '../wire.ts'

/** A reply as compared: its type and what must match (SQLSTATE, status, tag, columns, values). */
export interface Reply {
  type: string
  detail: string
}

/** The replies (and ReadyForQuery among them) a connection had received at some point of the trace. */
export interface Need {
  replies: number
  ready: number
}

export type Step =
  | { kind: 'connect'; conn: number }
  /**
   * `after`: what connections had received when the server read this group, for those whose count changed since
   * the previous send (a connection's latest entry holds until then). Waiting for other connections' replies too
   * keeps the server's order of work as traced: one connection's queued work may wait on another's next message.
   */
  | { kind: 'send'; conn: number; read: number; frames: Buffer[]; types: string[]; after: Array<[number, Need]> }
  | { kind: 'cancel'; conn: number; target: number }

export interface PlannedConnection {
  conn: number
  params: Record<string, string>
  /** 'ready', or the error that ended the startup ('FATAL 53300'), or 'closed' without either. */
  startup: string
  /** Every reply after startup but ParameterStatus and NoticeResponse (informational, and differ between servers). */
  replies: Reply[]
  ready: number
  closeReason: string
}

export interface Plan {
  connections: Map<number, PlannedConnection>
  steps: Step[]
  /** Why the trace cannot be replayed (cut values, unknown messages); empty when it can. */
  problems: string[]
}

const NOT_COMPARED = new Set(['ParameterStatus', 'NoticeResponse'])
/** Client messages the replay does not resend: its own connection does SSL and authentication. */
const NOT_RESENT = new Set([
  'SSLRequest',
  'GSSENCRequest',
  'PasswordMessage',
  'SASLInitialResponse',
  'SASLResponse',
  'GSSResponse',
])

/** What of a reply is compared: with `typesOnly`, only the SQLSTATE of errors beyond the type. */
export function replyOf(fields: TraceFields, typesOnly: boolean): Reply {
  const f = fields as Record<string, unknown>
  const type = fields.type
  if (type === 'ErrorResponse') return { type, detail: `${String(f.severity)} ${String(f.code)}` }
  if (typesOnly) return { type, detail: '' }
  switch (type) {
    case 'ReadyForQuery':
      return { type, detail: String(f.status) }
    case 'CommandComplete':
      return { type, detail: String(f.tag) }
    case 'RowDescription':
      return { type, detail: (f.columns as string[]).join(', ') }
    case 'DataRow':
    case 'CopyData':
      return { type, detail: JSON.stringify(f.values ?? f.data) }
    case 'NotificationResponse':
      return { type, detail: `${String(f.channel)} ${JSON.stringify(f.payload)}` }
    default:
      return { type, detail: '' }
  }
}

export function isCompared(type: string): boolean {
  return !NOT_COMPARED.has(type)
}

/** Connections that received replies since the last send step. */
type Changed = Set<PlannedConnection>

export async function readPlan(file: string, typesOnly: boolean): Promise<Plan> {
  const input = createReadStream(file)
  await once(input, 'open')
  const plan: Plan = { connections: new Map(), steps: [], problems: [] }
  const changed: Changed = new Set()
  let lineNumber = 0
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    lineNumber++
    if (line === '') continue
    const record = JSON.parse(line) as TraceRecord | { trace?: string }
    if (lineNumber === 1) {
      if ((record as { trace?: string }).trace !== TRACE_FORMAT)
        throw new Error(`${file} is not a pglite-dev-db protocol trace`)
      continue
    }
    if (!('conn' in record)) continue
    let connection = plan.connections.get(record.conn)
    if (!connection) {
      connection = { conn: record.conn, params: {}, startup: 'closed', replies: [], ready: 0, closeReason: '' }
      plan.connections.set(record.conn, connection)
    }
    if ('event' in record) {
      const event = record as ConnectionEvent
      if (event.event === 'close') connection.closeReason = event.reason ?? ''
      continue
    }
    const where = `${file}:${lineNumber} (conn ${record.conn} ${record.type})`
    if (record.dir === 'out') {
      if (addReply(connection, record, typesOnly)) changed.add(connection)
    } else {
      addClientMessage(plan, connection, record, where, changed)
    }
  }
  for (const connection of plan.connections.values()) dropShutdownGoodbye(connection)
  return plan
}

/**
 * A client still connected when the traced server stopped got FATAL 57P01: that is the recording ending, not
 * something the replay should wait for.
 */
function dropShutdownGoodbye(connection: PlannedConnection): void {
  const last = connection.replies.at(-1)
  if (
    connection.closeReason.startsWith('FATAL 57P01') &&
    last?.type === 'ErrorResponse' &&
    last.detail === 'FATAL 57P01'
  )
    connection.replies.pop()
}

/** Returns whether the reply is one the replay compares. */
function addReply(connection: PlannedConnection, record: FrameRecord, typesOnly: boolean): boolean {
  if (connection.startup !== 'ready') {
    if (record.type === 'ReadyForQuery') connection.startup = 'ready'
    else if (record.type === 'ErrorResponse') connection.startup = `${String(record.severity)} ${String(record.code)}`
    return false
  }
  if (!isCompared(record.type)) return false
  connection.replies.push(replyOf(record, typesOnly))
  if (record.type === 'ReadyForQuery') connection.ready++
  return true
}

function addClientMessage(
  plan: Plan,
  connection: PlannedConnection,
  record: FrameRecord,
  where: string,
  changed: Changed,
): void {
  const { conn, type } = record
  if (NOT_RESENT.has(type)) return
  if (type === 'StartupMessage') {
    connection.params = (record.params ?? {}) as Record<string, string>
    plan.steps.push({ kind: 'connect', conn })
    return
  }
  if (type === 'CancelRequest') {
    plan.steps.push({ kind: 'cancel', conn, target: Number(record.pid) })
    return
  }
  if (record.truncated) {
    plan.problems.push(`${where}: the trace holds only part of this ${record.len}-byte message, so it cannot be resent`)
    return
  }
  const frame = encodeClientMessage(record)
  if (typeof frame === 'string') {
    plan.problems.push(`${where}: ${frame}`)
    return
  }
  if (frame.length !== record.len) {
    plan.problems.push(`${where}: re-encoded as ${frame.length} bytes, but the trace says ${record.len}`)
    return
  }
  const last = plan.steps.at(-1)
  const read = record.read ?? 0
  if (last?.kind === 'send' && last.conn === conn && last.read === read) {
    last.frames.push(frame)
    last.types.push(type)
    return
  }
  const after: Array<[number, Need]> = [...changed].map((c) => [c.conn, { replies: c.replies.length, ready: c.ready }])
  changed.clear()
  plan.steps.push({ kind: 'send', conn, read, frames: [frame], types: [type], after })
}

// --- Encoding client messages from their trace fields ---

/** The test helpers' message writer, with what trace fields need: any value as a C string, int16 lists, values. */
class Writer extends WireWriter {
  override cstring(s: unknown): this {
    return super.cstring(String(s ?? ''))
  }
  int16s(values: unknown): this {
    const list = (values ?? []) as number[]
    this.int16(list.length)
    for (const n of list) this.int16(n)
    return this
  }
  /** A value with its int32 length; -1 for NULL. */
  value(v: TraceValue): this {
    if (v === null) return this.int32(-1)
    const b = valueBytes(v)
    return this.int32(b.length).bytes(b)
  }
}

function valueBytes(v: Exclude<TraceValue, null>): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.hex, 'hex')
}

const SIMPLE: Record<string, string> = { Sync: 'S', Flush: 'H', Terminate: 'X', CopyDone: 'c' }

/** The message as the client sent it, or why it cannot be rebuilt. */
export function encodeClientMessage(r: FrameRecord): Buffer | string {
  const w = new Writer()
  const simple = SIMPLE[r.type]
  if (simple) return w.message(simple)
  switch (r.type) {
    case 'Query':
      return w.cstring(r.query).message('Q')
    case 'Parse': {
      w.cstring(r.statement).cstring(r.query)
      const types = (r.paramTypes ?? []) as number[]
      w.int16(types.length)
      for (const oid of types) w.int32(oid)
      return w.message('P')
    }
    case 'Bind': {
      w.cstring(r.portal).cstring(r.statement).int16s(r.paramFormats)
      const params = (r.params ?? []) as TraceValue[]
      w.int16(params.length)
      for (const p of params) w.value(p)
      return w.int16s(r.resultFormats).message('B')
    }
    case 'Describe':
    case 'Close':
      return w
        .int8(String(r.kind).charCodeAt(0))
        .cstring(r.name)
        .message(r.type === 'Describe' ? 'D' : 'C')
    case 'Execute':
      return w
        .cstring(r.portal)
        .int32(Number(r.maxRows ?? 0))
        .message('E')
    case 'CopyData':
      return w.bytes(valueBytes((r.data ?? '') as Exclude<TraceValue, null>)).message('d')
    case 'CopyFail':
      return w.cstring(r.message).message('f')
    case 'FunctionCall': {
      w.int32(Number(r.oid)).int16s(r.argFormats)
      const args = (r.args ?? []) as TraceValue[]
      w.int16(args.length)
      for (const a of args) w.value(a)
      return w.int16(Number(r.resultFormat ?? 0)).message('F')
    }
    default:
      return `a ${r.type} message cannot be resent`
  }
}
