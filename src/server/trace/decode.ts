// Decodes one wire message into the fields a protocol trace records: the spec's message names, values as text
// where they are text, else hex, each cut at a limit with its byte length noted. Never a password or SASL payload.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import { isUtf8 } from 'node:buffer'
import { BackendCode, CODE_LENGTH, FrontendCode, HEADER_LENGTH, LEN_LENGTH, StartupCode } from '../protocol/codes.ts'

/** A value as sent: text, or `{ hex, bytes }` where it is binary (or not UTF-8); null is SQL NULL. */
export type TraceValue = string | { hex: string; bytes: number } | null

/** The decoded fields of one message; `truncated` is set when any value was cut. */
export type TraceFields = { type: string; truncated?: true } & Record<string, unknown>

/** How much of each value is kept: the client's values whole up to `value` bytes (a replay resends them), replies shorter. */
export interface DecodeLimits {
  /** Parameter values, copy data, row values. */
  value: number
  /** SQL text, names, messages, tags. */
  text: number
  /** Values listed per DataRow. */
  columns: number
}

export const CLIENT_LIMITS: DecodeLimits = { value: 64 * 1024, text: 64 * 1024, columns: 1000 }
export const SERVER_LIMITS: DecodeLimits = { value: 200, text: 2048, columns: 100 }

const FRONTEND_NAMES = new Map<number, string>(Object.entries(FrontendCode).map(([name, code]) => [code, name]))
const BACKEND_NAMES = new Map<number, string>(Object.entries(BackendCode).map(([name, code]) => [code, name]))
const FUNCTION_CALL_RESPONSE = 0x56 // V
BACKEND_NAMES.set(FUNCTION_CALL_RESPONSE, 'FunctionCallResponse')

/** Authentication request subtypes (the int32 after the length of an 'R' message). */
const AUTH_NAMES = new Map<number, string>([
  [0, 'AuthenticationOk'],
  [2, 'AuthenticationKerberosV5'],
  [3, 'AuthenticationCleartextPassword'],
  [5, 'AuthenticationMD5Password'],
  [7, 'AuthenticationGSS'],
  [8, 'AuthenticationGSSContinue'],
  [9, 'AuthenticationSSPI'],
  [10, 'AuthenticationSASL'],
  [11, 'AuthenticationSASLContinue'],
  [12, 'AuthenticationSASLFinal'],
])

/** The decoder ran past the bytes kept of a frame. */
class Cut extends Error {}
const CUT = new Cut()

/** Reads a frame's body; past the kept bytes it throws CUT, and the fields read so far stay. */
class Body {
  pos: number
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly fields: TraceFields,
    readonly limits: DecodeLimits,
  ) {
    this.pos = start
  }

  #need(n: number): void {
    if (this.pos + n > this.buf.length) throw CUT
  }

  int8(): number {
    this.#need(1)
    return this.buf[this.pos++]!
  }

  int16(): number {
    this.#need(2)
    const n = this.buf.readInt16BE(this.pos)
    this.pos += 2
    return n
  }

  int32(): number {
    this.#need(4)
    const n = this.buf.readInt32BE(this.pos)
    this.pos += 4
    return n
  }

  cstring(): string {
    const end = this.buf.indexOf(0, this.pos)
    if (end < 0) {
      // The string runs past the bytes kept of this frame.
      this.fields.truncated = true
      const text = this.buf.toString('utf8', this.pos, Math.min(this.buf.length, this.pos + this.limits.text))
      this.pos = this.buf.length
      return `${text}…`
    }
    const text = this.#text(this.pos, end, end - this.pos, this.limits.text)
    this.pos = end + 1
    return text
  }

  /** `length` bytes (some may be past the kept part), as text when `isText` and UTF-8, else hex. */
  value(length: number, isText: boolean, limit = this.limits.value): TraceValue {
    if (length < 0) return null
    const start = this.pos
    const end = Math.min(start + length, this.buf.length)
    this.pos += length
    let cut = Math.min(end, start + limit)
    if (cut < start + length) {
      this.fields.truncated = true
      // Cut text at a character boundary, not inside a UTF-8 sequence (continuation bytes are 10xxxxxx).
      for (let back = 0; back < 3 && cut > start && (this.buf[cut]! & 0xc0) === 0x80; back++) cut--
    }
    if (isText && isUtf8(this.buf.subarray(start, cut))) return this.#text(start, cut, length, Infinity)
    return { hex: this.buf.toString('hex', start, cut) + (cut < start + length ? '…' : ''), bytes: length }
  }

  /** An Int16 count, then that many Int16 (formats). */
  int16s(): number[] {
    const count = this.int16()
    const out: number[] = []
    for (let i = 0; i < count; i++) out.push(this.int16())
    return out
  }

  /** An Int16 count, then that many Int32 (type OIDs). */
  oids(): number[] {
    const count = this.int16()
    const out: number[] = []
    for (let i = 0; i < count; i++) out.push(this.int32())
    return out
  }

  /** Text of [start, end), cut at `limit` bytes; `length` is the whole value's size for the note. */
  #text(start: number, end: number, length: number, limit: number): string {
    if (end - start <= limit && end - start === length) return this.buf.toString('utf8', start, end)
    this.fields.truncated = true
    return `${this.buf.toString('utf8', start, Math.min(end, start + limit))}…(${length} bytes)`
  }
}

function decodeWith(frame: Buffer, type: string, limits: DecodeLimits, read: (body: Body) => void): TraceFields {
  const fields: TraceFields = { type }
  try {
    read(new Body(frame, frame.length >= HEADER_LENGTH ? HEADER_LENGTH : frame.length, fields, limits))
  } catch (error) {
    if (error !== CUT) throw error
    fields.truncated = true
  }
  return fields
}

/** The format of parameter `i` from a Bind's format codes: none = all text, one = for all, else one each. */
function formatOf(formats: number[], i: number): number {
  return formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : (formats[i] ?? 0)
}

/**
 * Format codes, then values in those formats (Bind's parameters, FunctionCall's arguments), each field set as soon
 * as it is read: a frame cut short keeps what came before the cut.
 */
function readFormattedValues(body: Body, formatsField: string, valuesField: string): void {
  const formats = body.int16s()
  body.fields[formatsField] = formats
  const values: TraceValue[] = []
  body.fields[valuesField] = values
  const count = body.int16()
  for (let i = 0; i < count; i++) values.push(body.value(body.int32(), formatOf(formats, i) === 0))
}

/** What a password message ('p') is depends on what the server asked; its payload is never decoded. */
export type PasswordKind = 'PasswordMessage' | 'SASLInitialResponse' | 'SASLResponse' | 'GSSResponse'

/** A typed frontend message (`frame` starts at its code byte, possibly cut short of `total`). */
export function decodeFrontend(
  frame: Buffer,
  password: PasswordKind,
  limits: DecodeLimits = CLIENT_LIMITS,
): TraceFields {
  const code = frame[0]!
  if (code === FrontendCode.Password) {
    return decodeWith(frame, password, limits, (b) => {
      if (password === 'SASLInitialResponse') b.fields.mechanism = b.cstring()
    })
  }
  const name = FRONTEND_NAMES.get(code)
  if (name === undefined) return { type: 'Unknown', code: String.fromCharCode(code) }
  return decodeWith(frame, name, limits, (b) => {
    const f = b.fields
    switch (code) {
      case FrontendCode.Query:
        f.query = b.cstring()
        break
      case FrontendCode.Parse:
        f.statement = b.cstring()
        f.query = b.cstring()
        f.paramTypes = b.oids()
        break
      case FrontendCode.Bind:
        f.portal = b.cstring()
        f.statement = b.cstring()
        readFormattedValues(b, 'paramFormats', 'params')
        f.resultFormats = b.int16s()
        break
      case FrontendCode.Describe:
      case FrontendCode.Close:
        f.kind = String.fromCharCode(b.int8())
        f.name = b.cstring()
        break
      case FrontendCode.Execute:
        f.portal = b.cstring()
        f.maxRows = b.int32()
        break
      case FrontendCode.CopyData:
        f.data = b.value(frame.readInt32BE(CODE_LENGTH) - LEN_LENGTH, true)
        break
      case FrontendCode.CopyFail:
        f.message = b.cstring()
        break
      case FrontendCode.FunctionCall:
        f.oid = b.int32()
        readFormattedValues(b, 'argFormats', 'args')
        f.resultFormat = b.int16()
        break
    }
  })
}

/** A startup-phase packet (no code byte): StartupMessage, SSLRequest, GSSENCRequest or CancelRequest. */
export function decodeStartupPacket(frame: Buffer, limits: DecodeLimits = CLIENT_LIMITS): TraceFields {
  const code = frame.length >= 8 ? frame.readInt32BE(LEN_LENGTH) : -1
  if (code === StartupCode.SSLRequest) return { type: 'SSLRequest' }
  if (code === StartupCode.GSSENCRequest) return { type: 'GSSENCRequest' }
  if (code === StartupCode.CancelRequest) {
    // The secret key is a credential: only the process id it names is kept.
    return frame.length >= 12
      ? { type: 'CancelRequest', pid: frame.readInt32BE(8) }
      : { type: 'CancelRequest', truncated: true }
  }
  const fields: TraceFields = { type: 'StartupMessage', version: `${code >>> 16}.${code & 0xffff}` }
  const params: Record<string, string> = {}
  fields.params = params
  const body = new Body(frame, 8, fields, limits)
  try {
    while (body.pos < frame.length && frame[body.pos] !== 0) {
      const name = body.cstring()
      const value = body.cstring()
      params[name] = name === 'password' ? '***' : value
    }
  } catch (error) {
    if (error !== CUT) throw error
    fields.truncated = true
  }
  return fields
}

/** A backend message (`frame` starts at its code byte, possibly cut short of its length). */
export function decodeBackend(frame: Buffer, limits: DecodeLimits = SERVER_LIMITS): TraceFields {
  const code = frame[0]!
  if (code === BackendCode.Authentication) {
    const subtype = frame.length >= HEADER_LENGTH + 4 ? frame.readInt32BE(HEADER_LENGTH) : -1
    const name = AUTH_NAMES.get(subtype) ?? 'Authentication'
    // SASLContinue and SASLFinal carry the exchange (salt, nonces, signatures): only the name is kept.
    return decodeWith(frame, name, limits, (b) => {
      b.int32()
      if (subtype === 10) {
        const mechanisms: string[] = []
        for (let m = b.cstring(); m !== ''; m = b.cstring()) mechanisms.push(m)
        b.fields.mechanisms = mechanisms
      } else if (name === 'Authentication') {
        b.fields.subtype = subtype
      }
    })
  }
  const name = BACKEND_NAMES.get(code)
  if (name === undefined) return { type: 'Unknown', code: String.fromCharCode(code) }
  return decodeWith(frame, name, limits, (b) => {
    const f = b.fields
    switch (code) {
      case BackendCode.ReadyForQuery:
        f.status = String.fromCharCode(b.int8())
        break
      case BackendCode.CommandComplete:
        f.tag = b.cstring()
        break
      case BackendCode.ErrorResponse:
      case BackendCode.NoticeResponse:
        readErrorFields(b)
        break
      case BackendCode.ParameterStatus:
        f.name = b.cstring()
        f.value = b.cstring()
        break
      case BackendCode.BackendKeyData:
        // The secret key is a credential: only the process id, which is this connection's id in the trace.
        f.pid = b.int32()
        break
      case BackendCode.RowDescription: {
        const count = b.int16()
        const columns: string[] = []
        const types: number[] = []
        f.columns = columns
        f.types = types
        for (let i = 0; i < count; i++) {
          columns.push(b.cstring())
          b.pos += 6 // table oid, column number
          types.push(b.int32())
          b.pos += 8 // type size, type modifier, format
        }
        break
      }
      case BackendCode.DataRow: {
        const count = b.int16()
        f.columns = count
        const values: TraceValue[] = []
        f.values = values
        for (let i = 0; i < count; i++) {
          if (i === limits.columns) {
            f.truncated = true
            break
          }
          values.push(b.value(b.int32(), true))
        }
        break
      }
      case BackendCode.ParameterDescription:
        f.types = b.oids()
        break
      case BackendCode.CopyInResponse:
      case BackendCode.CopyOutResponse:
      case BackendCode.CopyBothResponse:
        f.format = b.int8()
        f.columns = b.int16s().length
        break
      case BackendCode.CopyData:
        f.data = b.value(frame.readInt32BE(CODE_LENGTH) - LEN_LENGTH, true)
        break
      case BackendCode.NotificationResponse:
        f.pid = b.int32()
        f.channel = b.cstring()
        {
          const end = b.buf.indexOf(0, b.pos)
          if (end < 0) f.truncated = true
          f.payload = b.value((end < 0 ? b.buf.length : end) - b.pos, true)
        }
        break
      case BackendCode.NegotiateProtocolVersion: {
        f.minor = b.int32()
        const count = b.int32()
        const options: string[] = []
        for (let i = 0; i < count; i++) options.push(b.cstring())
        f.options = options
        break
      }
      case FUNCTION_CALL_RESPONSE:
        f.value = b.value(b.int32(), false)
        break
    }
  })
}

/** ErrorResponse/NoticeResponse: severity (the unlocalized V when sent), SQLSTATE, message, and detail/hint if any. */
function readErrorFields(b: Body): void {
  const raw = new Map<string, string>()
  for (let field = b.int8(); field !== 0; field = b.int8()) raw.set(String.fromCharCode(field), b.cstring())
  const f = b.fields
  f.severity = raw.get('V') ?? raw.get('S') ?? ''
  f.code = raw.get('C') ?? ''
  f.message = raw.get('M') ?? ''
  if (raw.has('D')) f.detail = raw.get('D')
  if (raw.has('H')) f.hint = raw.get('H')
}
