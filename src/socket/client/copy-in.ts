// COPY ... FROM STDIN for a backend that cannot wait: PGlite must get the statement, all CopyData and the
// CopyDone/CopyFail in one call (NOTES §4). So we answer CopyInResponse ourselves, gather the data, then run it all.

import { BackendCode, HEADER_LENGTH } from '../protocol/codes.ts'

export interface CopyIn {
  /** The frames held back: the Query (or Execute) that starts the COPY, then the client's CopyData. */
  parts: Buffer[]
  size: number
  /** Replies owed for frames we held (extended protocol: the Sync after the COPY's Execute). */
  expectedReady: number
}

const STDIN_SPELLINGS = ['stdin', 'STDIN', 'Stdin'].map((s) => Buffer.from(s))

/** Cheap pre-check on raw bytes before decoding SQL text: does it mention stdin at all? */
export function mentionsStdin(bytes: Buffer, start: number, end: number): boolean {
  for (const needle of STDIN_SPELLINGS) {
    const at = bytes.indexOf(needle, start)
    if (at >= 0 && at < end) return true
  }
  return false
}

/** Read the NUL-terminated string at `offset`; returns it and the offset after its terminator. */
export function readCString(bytes: Buffer, offset: number): [string, number] {
  const end = bytes.indexOf(0, offset)
  const stop = end < 0 ? bytes.length : end
  return [bytes.toString('utf8', offset, stop), stop + 1]
}

export interface CopyFromStdin {
  /** The table as written in the statement (quotes kept), for a catalog lookup of its column count. */
  table: string
  /** Column count when the statement lists columns. */
  columns: number | null
  binary: boolean
}

const IDENT = String.raw`(?:"(?:[^"]|"")*"|[^\s("';.]+)`
const COPY_FROM_STDIN = new RegExp(
  String.raw`^\s*copy\s+(binary\s+)?(${IDENT}(?:\s*\.\s*${IDENT})?)\s*(?:\(([^)]*)\))?\s*from\s+stdin\b([\s\S]*)$`,
  'i',
)

/** Recognise a single `COPY table [(cols)] FROM STDIN [options]` statement (comments before it are not handled). */
export function parseCopyFromStdin(sql: string): CopyFromStdin | null {
  const text = sql.replace(/;\s*$/, '')
  const match = COPY_FROM_STDIN.exec(text)
  if (!match) return null
  const options = match[4] ?? ''
  if (options.includes(';')) return null
  const columnList = match[3]
  return {
    table: match[2]!,
    columns: columnList === undefined ? null : columnList.split(',').length,
    binary: match[1] !== undefined || /\bbinary\b/i.test(options),
  }
}

/** CopyInResponse: overall format, then one format per column (all the same for text, csv and binary). */
export function encodeCopyInResponse(binary: boolean, columns: number): Buffer {
  const buf = Buffer.alloc(HEADER_LENGTH + 3 + 2 * columns)
  buf[0] = BackendCode.CopyInResponse
  buf.writeInt32BE(buf.length - 1, 1)
  buf[HEADER_LENGTH] = binary ? 1 : 0
  buf.writeInt16BE(columns, HEADER_LENGTH + 1)
  for (let i = 0; i < columns; i++) buf.writeInt16BE(binary ? 1 : 0, HEADER_LENGTH + 3 + 2 * i)
  return buf
}

/** SQL that counts a table's columns without ever raising an error (to_regclass returns NULL for a bad name). */
export function columnCountQuery(table: string): string {
  const literal = `'${table.replace(/'/g, "''")}'`
  return `select count(*) from pg_catalog.pg_attribute where attrelid = pg_catalog.to_regclass(${literal}) and attnum > 0 and not attisdropped`
}

/** Remove the first message with `code` from a complete backend reply (PGlite repeats the CopyInResponse we already sent). */
export function withoutFirst(reply: Buffer, code: number): Buffer {
  let offset = 0
  while (offset + HEADER_LENGTH <= reply.length) {
    const total = 1 + reply.readInt32BE(offset + 1)
    if (reply[offset] === code) return Buffer.concat([reply.subarray(0, offset), reply.subarray(offset + total)])
    offset += total
  }
  return reply
}

/** The first DataRow's first column as text, from a complete backend reply. */
export function firstValue(reply: Buffer): string | null {
  let offset = 0
  while (offset + HEADER_LENGTH <= reply.length) {
    const total = 1 + reply.readInt32BE(offset + 1)
    if (reply[offset] === BackendCode.DataRow) {
      const length = reply.readInt32BE(offset + HEADER_LENGTH + 2)
      return length < 0 ? null : reply.toString('utf8', offset + HEADER_LENGTH + 6, offset + HEADER_LENGTH + 6 + length)
    }
    offset += total
  }
  return null
}
