// Frontend messages: the ones the server itself sends PGlite (its own queries, Sync, Close), and readers for the
// fields of the messages clients send (names and SQL text), without decoding more than is asked for.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import { CODE_LENGTH, FrontendCode, HEADER_LENGTH, LEN_LENGTH, StartupCode } from './codes.ts'
import { firstLetter, keywordsIn } from '../sql/tokens.ts'

function message(code: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength)
  buf[0] = code
  buf.writeInt32BE(LEN_LENGTH + bodyLength, CODE_LENGTH)
  return buf
}

export const SYNC_MESSAGE: Uint8Array = Uint8Array.of(FrontendCode.Sync, 0, 0, 0, 4)
export const SYNC = Buffer.from(SYNC_MESSAGE)
export const FLUSH = Buffer.from([FrontendCode.Flush, 0, 0, 0, 4])

export function encodeQuery(sql: string): Buffer {
  const buf = message(FrontendCode.Query, Buffer.byteLength(sql) + 1)
  buf.write(sql, HEADER_LENGTH)
  buf[buf.length - 1] = 0
  return buf
}

export const ROLLBACK = encodeQuery('ROLLBACK')
/**
 * Closes an abandoned extended-protocol pipeline the way Postgres does when its client goes away: rolled back.
 * A bare Sync would commit the implicit transaction. A ROLLBACK query inside the open pipeline aborts it (Postgres
 * warns "there is no transaction in progress" and rolls back); if an error is already pending, the query is
 * skipped until the Sync, which ends the failed transaction. Either way the session ends up idle.
 */
export const ABANDON_PIPELINE = Buffer.concat([ROLLBACK, SYNC])

/**
 * A statement that fails, to abort PGlite's transaction where the server itself refused a command (its own
 * ErrorResponse is what the client gets): as a Query, and as an unnamed Parse/Bind/Execute inside a pipeline.
 */
const FAILING_STATEMENT = "DO $$BEGIN RAISE EXCEPTION 'refused by pglite-dev-db' USING ERRCODE = '54000'; END$$"
export const FAILING_QUERY = encodeQuery(FAILING_STATEMENT)

/** Parse, Bind and Execute of `sql` as `statement` and `portal` (empty: the unnamed ones), without parameters (no Sync). */
export function encodeExecution(statement: Buffer, portal: Buffer, sql: string): Buffer {
  const parse = message(FrontendCode.Parse, statement.length + 1 + Buffer.byteLength(sql) + 1 + 2)
  statement.copy(parse, HEADER_LENGTH)
  parse[HEADER_LENGTH + statement.length] = 0
  parse.write(sql, HEADER_LENGTH + statement.length + 1)
  parse[parse.length - 3] = 0
  parse.writeInt16BE(0, parse.length - 2)
  const bind = message(FrontendCode.Bind, portal.length + 1 + statement.length + 1 + 2 + 2 + 2)
  bind.fill(0, HEADER_LENGTH)
  portal.copy(bind, HEADER_LENGTH)
  statement.copy(bind, HEADER_LENGTH + portal.length + 1)
  const execute = message(FrontendCode.Execute, portal.length + 1 + 4)
  execute.fill(0, HEADER_LENGTH)
  portal.copy(execute, HEADER_LENGTH)
  return Buffer.concat([parse, bind, execute])
}

const NO_NAME = Buffer.alloc(0)
const encodeUnnamedExecution = (sql: string): Buffer => encodeExecution(NO_NAME, NO_NAME, sql)

/** A Close of one prepared statement ('S') or portal ('P') by the name PGlite knows. */
export function encodeClose(kind: 'S' | 'P', serverName: Buffer): Buffer {
  const frame = message(FrontendCode.Close, 1 + serverName.length + 1)
  frame[HEADER_LENGTH] = kind.charCodeAt(0)
  serverName.copy(frame, HEADER_LENGTH + 1)
  frame[frame.length - 1] = 0
  return frame
}

export const FAILING_EXTENDED = encodeUnnamedExecution(FAILING_STATEMENT)

export function encodeStartupMessage(params: Record<string, string>): Buffer {
  const pairs = Object.entries(params).flatMap(([k, v]) => [k, v])
  const body = Buffer.from(pairs.join('\0') + '\0\0')
  const buf = Buffer.allocUnsafe(8 + body.length)
  buf.writeInt32BE(8 + body.length, 0)
  buf.writeInt32BE(StartupCode.Protocol3, 4)
  body.copy(buf, 8)
  return buf
}

/** [start, end) of the NUL-terminated string at `start`, or an empty range when it has no terminator before `end`. */
export function cstring(bytes: Buffer, start: number, end: number): [number, number] {
  const zero = bytes.indexOf(0, start)
  // A missing terminator is PGlite's to report (08P01); the caller leaves the message as it is.
  return zero < 0 || zero >= end ? [start, start] : [start, zero]
}

/** Read the NUL-terminated string at `offset`; returns it and the offset after its terminator. */
export function readCString(bytes: Buffer, offset: number): [string, number] {
  const end = bytes.indexOf(0, offset)
  const stop = end < 0 ? bytes.length : end
  return [bytes.toString('utf8', offset, stop), stop + 1]
}

/** [start, end) of the SQL text of a Query or Parse message (whole message at `offset`), or null if malformed. */
export function sqlBounds(bytes: Buffer, offset: number, end: number, isParse: boolean): [number, number] | null {
  const start = isParse ? bytes.indexOf(0, offset + HEADER_LENGTH) + 1 : offset + HEADER_LENGTH
  const zero = bytes.indexOf(0, start)
  return start <= 0 || zero < 0 || zero >= end ? null : [start, zero]
}

/**
 * The integer a Bind gives its parameter `index` (0-based), in text or binary format; null if it gives none, or no
 * integer. `from`: where the Bind's parameter format codes begin (after the statement's name).
 */
export function bindInteger(bytes: Buffer, from: number, end: number, index: number): number | null {
  if (from + 2 > end) return null
  const formats = bytes.readInt16BE(from)
  let at = from + 2 + 2 * formats
  if (formats < 0 || at + 2 > end) return null
  const count = bytes.readInt16BE(at)
  at += 2
  for (let i = 0; i < count && at + 4 <= end; i++) {
    const length = bytes.readInt32BE(at)
    at += 4
    if (i < index) {
      at += Math.max(0, length)
      continue
    }
    if (length < 0 || at + length > end) return null
    const binary =
      formats === 0 ? false : bytes.readInt16BE(from + 2 + 2 * (formats === 1 ? 0 : Math.min(i, formats - 1))) === 1
    if (!binary) {
      const text = bytes.toString('latin1', at, at + length)
      return /^\s*\d{1,10}\s*$/.test(text) ? Number(text) : null
    }
    return length === 4
      ? bytes.readInt32BE(at)
      : length === 8
        ? Number(bytes.readBigInt64BE(at))
        : length === 2
          ? bytes.readInt16BE(at)
          : null
  }
  return null
}

/** One replacement in a message: the bytes [from, to) become `bytes`. */
export type Edit = [from: number, to: number, bytes: Buffer]

/** The message at [offset, end) with each edit made (edits in order, not overlapping), its length field fixed. */
export function editMessage(bytes: Buffer, offset: number, end: number, edits: readonly Edit[]): Buffer {
  let length = end - offset
  for (const [from, to, middle] of edits) length += middle.length - (to - from)
  const frame = Buffer.allocUnsafe(length)
  writeEdited(frame, 0, bytes, offset, end, edits)
  return frame
}

/** Write the message at [offset, end) of `bytes` with `edits` made into `out` at `at`; returns the bytes written. */
export function writeEdited(
  out: Buffer,
  at: number,
  bytes: Buffer,
  offset: number,
  end: number,
  edits: readonly Edit[],
): number {
  const start = at
  let copied = offset
  for (const [from, to, middle] of edits) {
    at += bytes.copy(out, at, copied, from)
    at += middle.copy(out, at)
    copied = to
  }
  at += bytes.copy(out, at, copied, end)
  out.writeInt32BE(at - start - CODE_LENGTH, start + CODE_LENGTH)
  return at - start
}

/** The messages in `bytes` (whole ones) are nothing but Terminate. */
export function onlyTerminate(bytes: Buffer): boolean {
  for (let offset = 0; offset < bytes.length; offset += CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)) {
    if (bytes[offset] !== FrontendCode.Terminate) return false
  }
  return true
}

/**
 * The messages in `bytes` (whole ones) are one unit that ends with its ReadyForQuery: a Query alone, or Parse, Bind,
 * Describe, Execute, Close and Flush messages ended by one Sync. So nothing of it is outstanding once it has run.
 */
export function isSingleUnit(bytes: Buffer): boolean {
  const n = bytes.length
  for (let offset = 0; offset + HEADER_LENGTH <= n;) {
    const code = bytes[offset]!
    const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
    if (end >= n) return end === n && (code === FrontendCode.Sync || (code === FrontendCode.Query && offset === 0))
    if (!IN_UNIT.has(code)) return false
    offset = end
  }
  return false
}

const IN_UNIT = new Set<number>([
  FrontendCode.Parse,
  FrontendCode.Bind,
  FrontendCode.Describe,
  FrontendCode.Execute,
  FrontendCode.Close,
  FrontendCode.Flush,
])

/** What preparedUnitEnd found in a unit. */
export interface PreparedUnit {
  /** Binds of named statements, and the longest of their names. */
  names: number
  longest: number
  /** Where the unit's last Parse (of the unnamed statement) is, or -1; whether it is a Query (which drops that one). */
  parse: number
  query: boolean
}

/**
 * Where the unit that starts at `start` in `bytes` ends, if it is complete and needs nothing of the server, as a
 * pooler forwards it: Binds of named statements to the unnamed portal, Describe and Execute of that portal, then
 * Sync; with `unnamed`, also a Parse of the unnamed statement (and Binds of it after it) or a Query alone, of SQL
 * the server reads nothing in (plainSql). -1 otherwise. Such units are what a database's thread may read from a lent
 * socket and run itself (engine/lent-reads.ts); `shape` gets what it found.
 */
export function preparedUnitEnd(
  bytes: Buffer,
  start: number,
  unnamed: boolean,
  shape: PreparedUnit | null = null,
): number {
  let at = start
  let parse = -1
  for (;;) {
    if (bytes.length - at < HEADER_LENGTH) return -1
    const code = bytes[at]!
    const end = at + CODE_LENGTH + bytes.readInt32BE(at + CODE_LENGTH)
    if (end > bytes.length || end < at + HEADER_LENGTH) return -1
    const body = at + HEADER_LENGTH
    if (code === FrontendCode.Sync || code === FrontendCode.Query) {
      if (
        code === FrontendCode.Query &&
        (!unnamed || at !== start || !plainSql(bytes, sqlBounds(bytes, at, end, false)))
      )
        return -1
      if (shape) Object.assign(shape, { parse, query: code === FrontendCode.Query })
      return end
    }
    if (code === FrontendCode.Parse) {
      if (!unnamed || bytes[body] !== 0 || !plainSql(bytes, sqlBounds(bytes, at, end, true))) return -1
      parse = at
    } else if (code === FrontendCode.Bind) {
      const name = bytes.indexOf(0, body + 1)
      if (bytes[body] !== 0 || name < 0 || name >= end) return -1
      // The unnamed statement: only the one this unit made (whose it is in the session, the server tracks).
      if (name === body + 1 && parse < 0) return -1
      if (shape && name > body + 1) {
        shape.names++
        shape.longest = Math.max(shape.longest, name - body - 1)
      }
    } else if (code === FrontendCode.Describe) {
      if (bytes[body] !== LETTER_P || bytes[body + 1] !== 0) return -1
    } else if (code !== FrontendCode.Execute || bytes[body] !== 0) return -1
    at = end
  }
}

/**
 * SQL in which the server reads nothing (sql/tokens.ts keywordsIn finds none of its words, and its first letter is not
 * one of mayBeServerStatement's), so it passes to PGlite as it is.
 */
function plainSql(bytes: Buffer, text: [number, number] | null): boolean {
  return (
    text !== null &&
    !mayBeServerStatement(firstLetter(bytes, text[0], text[1])) &&
    keywordsIn(bytes, text[0], text[1]) === 0
  )
}

/**
 * Whether SQL whose first letter (after white space) is `first` may be a statement the server carries out, whatever
 * words it holds: DISCARD and DEALLOCATE begin with a d, and a comment first hides what the statement is.
 */
export function mayBeServerStatement(first: number): boolean {
  return first === LETTER_D || first === SLASH || first === DASH
}

const LETTER_P = 0x50
const LETTER_D = 0x64
const SLASH = 0x2f
const DASH = 0x2d
