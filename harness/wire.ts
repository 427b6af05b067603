// Test-side Postgres wire protocol: frontend message builders (pg-protocol `testing/` style, each returns one
// Buffer) and a small incremental backend parser with decoders for the messages tests assert on.
// Deliberately independent of src/: the tests must not share the implementation's vocabulary or its bugs.
// Spec: https://www.postgresql.org/docs/current/protocol-message-formats.html

/** The type byte that starts every message except the startup-phase ones. */
export const CODE_LENGTH = 1
/** The int32 length, which includes itself but NOT the code byte. */
export const LEN_LENGTH = 4
export const HEADER_LENGTH = CODE_LENGTH + LEN_LENGTH
/** Postgres refuses anything longer (PG_LARGE_MESSAGE_LIMIT is 1 GB − 1); a longer length means we are not reading protocol. */
const MAX_MESSAGE_LENGTH = 0x3fffffff

export const ProtocolVersion = { V3_0: 196608, V3_2: 196610 } as const
export const RequestCode = {
  Cancel: 80877102,
  SSL: 80877103,
  GSSENC: 80877104,
} as const

// ---------------------------------------------------------------------------------------------------------------
// Frontend builders

export class Writer {
  #parts: Buffer[] = []
  int8(n: number): this {
    const b = Buffer.alloc(1)
    b.writeUInt8(n)
    this.#parts.push(b)
    return this
  }
  int16(n: number): this {
    const b = Buffer.alloc(2)
    b.writeInt16BE(n)
    this.#parts.push(b)
    return this
  }
  int32(n: number): this {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    this.#parts.push(b)
    return this
  }
  cstring(s: string): this {
    this.#parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]))
    return this
  }
  bytes(b: Buffer): this {
    this.#parts.push(b)
    return this
  }
  /** A typed message: code byte, then an int32 length covering itself and the body. */
  message(code: string): Buffer {
    const body = Buffer.concat(this.#parts)
    const header = Buffer.alloc(HEADER_LENGTH)
    header.write(code, 0, 'latin1')
    header.writeInt32BE(body.length + LEN_LENGTH, CODE_LENGTH)
    return Buffer.concat([header, body])
  }
  /** A startup-phase message: no code byte, the length comes first. */
  untyped(): Buffer {
    const body = Buffer.concat(this.#parts)
    const header = Buffer.alloc(LEN_LENGTH)
    header.writeInt32BE(body.length + LEN_LENGTH)
    return Buffer.concat([header, body])
  }
}

const w = () => new Writer()

export function startup(params: Record<string, string> = {}, version: number = ProtocolVersion.V3_0): Buffer {
  const writer = w().int32(version)
  for (const [key, value] of Object.entries(params)) writer.cstring(key).cstring(value)
  return writer.int8(0).untyped()
}
export const sslRequest = (): Buffer => w().int32(RequestCode.SSL).untyped()
export const gssencRequest = (): Buffer => w().int32(RequestCode.GSSENC).untyped()
export const cancelRequest = (pid: number, key: number): Buffer =>
  w().int32(RequestCode.Cancel).int32(pid).int32(key).untyped()

export const query = (sql: string): Buffer => w().cstring(sql).message('Q')

/** Parse; `types` are parameter type OIDs, 0 (or omitted) lets the server infer. */
export function parse(name: string, sql: string, types: number[] = []): Buffer {
  const writer = w().cstring(name).cstring(sql).int16(types.length)
  for (const oid of types) writer.int32(oid)
  return writer.message('P')
}

/** Bind with every parameter in text format; `null` is SQL NULL. `resultFormats` are 0 (text) or 1 (binary). */
export function bind(
  portal: string,
  statement: string,
  params: Array<string | null> = [],
  resultFormats: number[] = [],
): Buffer {
  const writer = w().cstring(portal).cstring(statement).int16(0).int16(params.length)
  for (const param of params) {
    if (param === null) writer.int32(-1)
    else {
      const bytes = Buffer.from(param, 'utf8')
      writer.int32(bytes.length).bytes(bytes)
    }
  }
  writer.int16(resultFormats.length)
  for (const format of resultFormats) writer.int16(format)
  return writer.message('B')
}

export const describe = (kind: 'S' | 'P', name: string): Buffer =>
  w().int8(kind.charCodeAt(0)).cstring(name).message('D')
export const execute = (portal: string, maxRows = 0): Buffer => w().cstring(portal).int32(maxRows).message('E')
export const close = (kind: 'S' | 'P', name: string): Buffer => w().int8(kind.charCodeAt(0)).cstring(name).message('C')
export const sync = (): Buffer => w().message('S')
export const flush = (): Buffer => w().message('H')
export const terminate = (): Buffer => w().message('X')
export const copyData = (data: Buffer | string): Buffer => w().bytes(Buffer.from(data)).message('d')
export const copyDone = (): Buffer => w().message('c')
export const copyFail = (reason: string): Buffer => w().cstring(reason).message('f')
/** A PasswordMessage / SASLInitialResponse / SASLResponse: the type 'p' message around `data`. */
export const saslResponse = (data: Buffer): Buffer => w().bytes(data).message('p')

// ---------------------------------------------------------------------------------------------------------------
// Backend messages

export const BackendNames = {
  R: 'Authentication',
  S: 'ParameterStatus',
  K: 'BackendKeyData',
  Z: 'ReadyForQuery',
  T: 'RowDescription',
  D: 'DataRow',
  C: 'CommandComplete',
  E: 'ErrorResponse',
  N: 'NoticeResponse',
  '1': 'ParseComplete',
  '2': 'BindComplete',
  '3': 'CloseComplete',
  n: 'NoData',
  s: 'PortalSuspended',
  t: 'ParameterDescription',
  I: 'EmptyQueryResponse',
  A: 'NotificationResponse',
  G: 'CopyInResponse',
  H: 'CopyOutResponse',
  W: 'CopyBothResponse',
  d: 'CopyData',
  c: 'CopyDone',
  v: 'NegotiateProtocolVersion',
} as const

export type BackendCode = keyof typeof BackendNames
export type BackendName = (typeof BackendNames)[BackendCode]
/** Either spelling a test may use to ask for a message: `'Z'` or `'ReadyForQuery'`. */
export type BackendType = BackendCode | BackendName

export interface BackendMessage {
  code: string
  /** The spec's name, or `unknown(<code>)` for a type this table does not know. */
  name: string
  body: Buffer
}

const codeByName = new Map<string, string>(Object.entries(BackendNames).map(([code, name]) => [name, code]))

/** Normalizes `'ReadyForQuery'` or `'Z'` to the code byte `'Z'`. */
export function backendCode(type: BackendType): string {
  return codeByName.get(type) ?? type
}

export function backendName(code: string): string {
  return (BackendNames as Record<string, string>)[code] ?? `unknown(${code})`
}

/** Thrown by the parser when the bytes cannot be protocol (raw text, a bad length). */
export class GarbageError extends Error {
  override name = 'GarbageError'
  constructor(readonly bytes: Buffer) {
    super(`not a backend message: ${JSON.stringify(bytes.subarray(0, 40).toString('latin1'))}`)
  }
}

/**
 * Incremental backend parser: `push(chunk)` returns every message the bytes so far complete and keeps the tail.
 * Throws GarbageError when a header cannot be a message, so a test sees "the server sent text" instead of a hang.
 */
export function createBackendParser() {
  let pending: Buffer = Buffer.alloc(0)
  return {
    push(chunk: Buffer): BackendMessage[] {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      const messages: BackendMessage[] = []
      let offset = 0
      while (pending.length - offset >= HEADER_LENGTH) {
        const length = pending.readInt32BE(offset + CODE_LENGTH)
        if (length < LEN_LENGTH || length > MAX_MESSAGE_LENGTH) throw new GarbageError(pending.subarray(offset))
        const end = offset + CODE_LENGTH + length
        if (end > pending.length) break
        const code = String.fromCharCode(pending[offset]!)
        messages.push({
          code,
          name: backendName(code),
          body: Buffer.from(pending.subarray(offset + HEADER_LENGTH, end)),
        })
        offset = end
      }
      pending = pending.subarray(offset)
      return messages
    },
    /** Bytes received that do not yet form a whole message. */
    get pendingBytes(): number {
      return pending.length
    },
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoders

function readCString(body: Buffer, offset: number): [string, number] {
  const end = body.indexOf(0, offset)
  if (end === -1) throw new Error('unterminated string in backend message')
  return [body.toString('utf8', offset, end), end + 1]
}

/** DataRow: text values, `null` for SQL NULL. */
export function decodeDataRow(body: Buffer): Array<string | null> {
  const count = body.readInt16BE(0)
  const values: Array<string | null> = []
  let offset = 2
  for (let i = 0; i < count; i++) {
    const length = body.readInt32BE(offset)
    offset += 4
    if (length === -1) values.push(null)
    else {
      values.push(body.toString('utf8', offset, offset + length))
      offset += length
    }
  }
  return values
}

export interface FieldDescription {
  name: string
  tableOid: number
  column: number
  typeOid: number
  format: number
}

export function decodeRowDescription(body: Buffer): FieldDescription[] {
  const count = body.readInt16BE(0)
  const fields: FieldDescription[] = []
  let offset = 2
  for (let i = 0; i < count; i++) {
    const [name, next] = readCString(body, offset)
    fields.push({
      name,
      tableOid: body.readInt32BE(next),
      column: body.readInt16BE(next + 4),
      typeOid: body.readInt32BE(next + 6),
      format: body.readInt16BE(next + 16),
    })
    offset = next + 18
  }
  return fields
}

/** ErrorResponse / NoticeResponse fields, keyed by their one-letter type (`C` code, `S` severity, `M` message…). */
export function decodeErrorFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {}
  let offset = 0
  while (offset < body.length && body[offset] !== 0) {
    const type = String.fromCharCode(body[offset]!)
    const [value, next] = readCString(body, offset + 1)
    fields[type] = value
    offset = next
  }
  return fields
}

export interface ErrorInfo {
  /** Localized severity (`S`); `V` (never localized) when present. */
  severity: string
  code: string
  message: string
  detail?: string
  hint?: string
}

export function decodeError(body: Buffer): ErrorInfo {
  const f = decodeErrorFields(body)
  const info: ErrorInfo = { severity: f.V ?? f.S ?? '', code: f.C ?? '', message: f.M ?? '' }
  if (f.D !== undefined) info.detail = f.D
  if (f.H !== undefined) info.hint = f.H
  return info
}

export type TxStatus = 'I' | 'T' | 'E'

export function decodeReadyForQuery(body: Buffer): TxStatus {
  const status = String.fromCharCode(body[0]!)
  if (status !== 'I' && status !== 'T' && status !== 'E') throw new Error(`bad ReadyForQuery status ${status}`)
  return status
}

export function decodeBackendKeyData(body: Buffer): { pid: number; key: number } {
  return { pid: body.readInt32BE(0), key: body.readInt32BE(4) }
}

export function decodeCommandComplete(body: Buffer): string {
  return readCString(body, 0)[0]
}

export function decodeParameterStatus(body: Buffer): [string, string] {
  const [name, next] = readCString(body, 0)
  return [name, readCString(body, next)[0]]
}

/** What one request (up to its ReadyForQuery) produced, in the shape tests assert on. */
export interface Summary {
  fields: string[]
  rows: Array<Array<string | null>>
  commands: string[]
  errors: ErrorInfo[]
  status: TxStatus | undefined
  /** Message names in arrival order, for diagnostics. */
  trace: string[]
}

export function summarize(messages: BackendMessage[]): Summary {
  const summary: Summary = { fields: [], rows: [], commands: [], errors: [], status: undefined, trace: [] }
  for (const m of messages) {
    summary.trace.push(m.name)
    if (m.code === 'T') summary.fields = decodeRowDescription(m.body).map((f) => f.name)
    else if (m.code === 'D') summary.rows.push(decodeDataRow(m.body))
    else if (m.code === 'C') summary.commands.push(decodeCommandComplete(m.body))
    else if (m.code === 'E') summary.errors.push(decodeError(m.body))
    else if (m.code === 'Z') summary.status = decodeReadyForQuery(m.body)
  }
  return summary
}
