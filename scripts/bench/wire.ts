// The benchmark's own wire-protocol bytes: the frontend messages the in-process raw ceilings send to PGlite, a scan
// of the backend reply that checks it, and a bare startup-only client for the idle-connection count.
// Independent of src/ on purpose: the ceiling must not share the server's code or its bugs.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import net from 'node:net'

/** Message code (1 byte), then an int32 length that includes itself but NOT the code. */
const CODE_LENGTH = 1
const LEN_LENGTH = 4
const HEADER_LENGTH = CODE_LENGTH + LEN_LENGTH
const PROTOCOL_3_0 = 196608 // 3 << 16

const Code = {
  Bind: 0x42, // B
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  Describe: 0x44, // D
  Execute: 0x45, // E
  Parse: 0x50, // P
  Query: 0x51, // Q
  Sync: 0x53, // S
} as const

const Reply = {
  CommandComplete: 0x43, // C
  DataRow: 0x44, // D
  ErrorResponse: 0x45, // E
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const
const INT2_OID = 21
const INT4_OID = 23

function typed(code: number, body: Buffer): Buffer {
  const header = Buffer.allocUnsafe(HEADER_LENGTH)
  header[0] = code
  header.writeInt32BE(LEN_LENGTH + body.length, CODE_LENGTH)
  return Buffer.concat([header, body])
}

const cstring = (text: string): Buffer => Buffer.from(`${text}\0`)
const int16 = (n: number): Buffer => Buffer.of(n >> 8, n & 0xff)
const int32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4)
  b.writeInt32BE(n)
  return b
}

export const SYNC = typed(Code.Sync, Buffer.alloc(0))
const COPY_DONE = typed(Code.CopyDone, Buffer.alloc(0))
/** Describe the unnamed portal, then Execute it with no row limit. */
const DESCRIBE_EXECUTE = Buffer.concat([
  typed(Code.Describe, Buffer.from('P\0')),
  typed(Code.Execute, Buffer.concat([cstring(''), int32(0)])),
])

export function encodeQuery(sql: string): Buffer {
  return typed(Code.Query, cstring(sql))
}

/** Parse/Bind/Describe/Execute/Sync on the unnamed statement and portal; parameters in text format, types left to the server. */
export function encodeExtended(sql: string, params: ReadonlyArray<string>): Buffer {
  const parse = typed(Code.Parse, Buffer.concat([cstring(''), cstring(sql), int16(0)]))
  const values = params.flatMap((value) => {
    const bytes = Buffer.from(value)
    return [int32(bytes.length), bytes]
  })
  // portal, statement, parameter formats (0: all text), values, result formats (0: all text)
  const bind = typed(
    Code.Bind,
    Buffer.concat([cstring(''), cstring(''), int16(0), int16(params.length), ...values, int16(0)]),
  )
  return Buffer.concat([parse, bind, DESCRIBE_EXECUTE, SYNC])
}

/** Parse `sql` as statement `name` (types left to the server), Describe it, Sync: once per statement, as a driver that prepares. */
export function encodePrepare(name: string, sql: string): Buffer {
  return Buffer.concat([
    typed(Code.Parse, Buffer.concat([cstring(name), cstring(sql), int16(0)])),
    typed(Code.Describe, Buffer.concat([Buffer.from('S'), cstring(name)])),
    SYNC,
  ])
}

/** Bind statement `name` (text parameters and results), Execute, Sync: each later use of a prepared statement. */
export function encodeBindExecute(name: string, params: ReadonlyArray<string>): Buffer {
  const values = params.flatMap((value) => {
    const bytes = Buffer.from(value)
    return [int32(bytes.length), bytes]
  })
  const bind = typed(
    Code.Bind,
    Buffer.concat([cstring(''), cstring(name), int16(0), int16(params.length), ...values, int16(0)]),
  )
  return Buffer.concat([bind, typed(Code.Execute, Buffer.concat([cstring(''), int32(0)])), SYNC])
}

/** A RowDescription's columns: name, and whether its type is a 2- or 4-byte integer (read as a number). */
export type Columns = Array<{ name: string; integer: boolean }>

/**
 * The columns a reply's RowDescription names (null if it has none), and its DataRows as objects of `columns` (text
 * values, integers as numbers); throws on an ErrorResponse.
 */
export function readRows(
  reply: Uint8Array,
  columns: Columns | null,
): { columns: Columns | null; rows: Array<Record<string, unknown>> } {
  const buf = Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength)
  const rows: Array<Record<string, unknown>> = []
  for (let offset = 0; offset + HEADER_LENGTH <= buf.length;) {
    const code = buf[offset]!
    const end = offset + CODE_LENGTH + buf.readInt32BE(offset + CODE_LENGTH)
    let at = offset + HEADER_LENGTH
    if (code === Reply.ErrorResponse) throw new Error(errorText(buf.subarray(at, end)))
    if (code === Reply.RowDescription) {
      columns = []
      const count = buf.readInt16BE(at)
      at += 2
      // Each field: its name, then table OID (4), column number (2), type OID (4), size (2), modifier (4), format (2).
      for (let i = 0; i < count; i++) {
        const nameEnd = buf.indexOf(0, at)
        const type = buf.readInt32BE(nameEnd + 7)
        columns.push({ name: buf.toString('utf8', at, nameEnd), integer: type === INT2_OID || type === INT4_OID })
        at = nameEnd + 19
      }
    } else if (code === Reply.DataRow && columns) {
      const row: Record<string, unknown> = {}
      at += 2
      for (const column of columns) {
        const length = buf.readInt32BE(at)
        const text = length < 0 ? null : buf.toString('utf8', at + 4, at + 4 + length)
        row[column.name] = text !== null && column.integer ? Number(text) : text
        at += 4 + Math.max(length, 0)
      }
      rows.push(row)
    }
    offset = end
  }
  return { columns, rows }
}

/** A whole COPY FROM STDIN as one call: Query, CopyData per chunk, CopyDone (PGlite cannot wait between them). */
export function encodeCopyIn(sql: string, chunks: ReadonlyArray<Buffer>): Buffer {
  return Buffer.concat([encodeQuery(sql), ...chunks.map((chunk) => typed(Code.CopyData, chunk)), COPY_DONE])
}

export function encodeStartup(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    int32(PROTOCOL_3_0),
    ...Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]),
    Buffer.of(0),
  ])
  return Buffer.concat([int32(LEN_LENGTH + body.length), body])
}

/** What a reply said, as far as the benchmark checks it. */
export interface ReplySummary {
  /** `SQLSTATE message` of the first ErrorResponse, else null. */
  error: string | null
  rows: number
  /** First column of the first DataRow, as text (null for SQL NULL or no row). */
  first: string | null
  /** Tag of the last CommandComplete (`INSERT 0 1`, `COPY 100000`). */
  tag: string | null
  isReady: boolean
}

export function scanReply(reply: Uint8Array): ReplySummary {
  const buf = Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength)
  const summary: ReplySummary = { error: null, rows: 0, first: null, tag: null, isReady: false }
  let offset = 0
  while (offset + HEADER_LENGTH <= buf.length) {
    const code = buf[offset]!
    const end = offset + CODE_LENGTH + buf.readInt32BE(offset + CODE_LENGTH)
    const body = offset + HEADER_LENGTH
    if (code === Reply.DataRow) {
      if (summary.rows === 0 && buf.readInt16BE(body) > 0) {
        const length = buf.readInt32BE(body + 2)
        summary.first = length < 0 ? null : buf.toString('utf8', body + 6, body + 6 + length)
      }
      summary.rows++
    } else if (code === Reply.CommandComplete) {
      summary.tag = buf.toString('utf8', body, end - 1)
    } else if (code === Reply.ErrorResponse && summary.error === null) {
      summary.error = errorText(buf.subarray(body, end))
    } else if (code === Reply.ReadyForQuery) {
      summary.isReady = true
    }
    offset = end
  }
  return summary
}

/** `C` (SQLSTATE) and `M` (message) fields of an ErrorResponse body. */
function errorText(body: Buffer): string {
  const fields = new Map<string, string>()
  let offset = 0
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1)
    fields.set(String.fromCharCode(body[offset]!), body.toString('utf8', offset + 1, end))
    offset = end + 1
  }
  return `${fields.get('C') ?? '?????'} ${fields.get('M') ?? ''}`
}

/**
 * Connect, send a StartupMessage and resolve once the first ReadyForQuery arrives: a client at rest that costs the
 * benchmark almost nothing, for counting what an idle connection costs the server.
 */
export function openIdleConnection(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    let received = Buffer.alloc(0)
    const fail = (error: Error) => {
      socket.destroy()
      reject(error)
    }
    socket.once('error', fail)
    socket.once('connect', () => socket.write(encodeStartup({ user: 'postgres', database: 'postgres' })))
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const summary = scanReply(received)
      if (summary.error) fail(new Error(`startup refused: ${summary.error}`))
      else if (summary.isReady) {
        socket.off('data', onData)
        socket.off('error', fail)
        // Later errors (the server closing at the end) are expected; the caller destroys the socket.
        socket.on('error', () => socket.destroy())
        resolve(socket)
      }
    }
    socket.on('data', onData)
  })
}
