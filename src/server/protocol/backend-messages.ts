// Backend messages: the few the server writes itself (errors, ReadyForQuery, startup replies, command tags,
// CopyInResponse), and readers for the replies the server's own statements get back from PGlite.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import type { Severity, SqlStateCode } from '../../errors.ts'
import { BackendCode, CODE_LENGTH, HEADER_LENGTH, LEN_LENGTH } from './codes.ts'
import { forEachFrame } from './frames.ts'

/** A message of `bodyLength` bytes after its header, with the header written. */
function message(code: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength)
  buf[0] = code
  buf.writeInt32BE(LEN_LENGTH + bodyLength, CODE_LENGTH)
  return buf
}

/** ErrorResponse (or NoticeResponse) with S, V, C, M fields; Postgres's field codes. */
export function encodeErrorResponse(
  severity: Severity | 'WARNING' | 'NOTICE',
  sqlstate: SqlStateCode | string,
  text: string,
  code: number = BackendCode.ErrorResponse,
  hint?: string,
  detail?: string,
  position?: number,
): Buffer {
  const fields: Array<[string, string]> = [
    ['S', severity],
    ['V', severity],
    ['C', sqlstate],
    ['M', text],
  ]
  if (detail) fields.push(['D', detail])
  if (hint) fields.push(['H', hint])
  if (position !== undefined) fields.push(['P', String(position)])
  let length = 1
  for (const [, value] of fields) length += 1 + Buffer.byteLength(value) + 1
  const buf = message(code, length)
  let offset = HEADER_LENGTH
  for (const [field, value] of fields) {
    buf[offset++] = field.charCodeAt(0)
    offset += buf.write(value, offset)
    buf[offset++] = 0
  }
  buf[offset] = 0
  return buf
}

export function encodeNotice(sqlstate: string, text: string, severity: 'WARNING' | 'NOTICE' = 'NOTICE'): Buffer {
  return encodeErrorResponse(severity, sqlstate, text, BackendCode.NoticeResponse)
}

export function encodeReadyForQuery(status: number): Buffer {
  const buf = message(BackendCode.ReadyForQuery, 1)
  buf[HEADER_LENGTH] = status
  return buf
}

export function encodeAuthenticationOk(): Buffer {
  const buf = message(BackendCode.Authentication, 4)
  buf.writeInt32BE(0, HEADER_LENGTH)
  return buf
}

export function encodeBackendKeyData(processId: number, secretKey: number): Buffer {
  const buf = message(BackendCode.BackendKeyData, 8)
  buf.writeInt32BE(processId, HEADER_LENGTH)
  buf.writeInt32BE(secretKey, HEADER_LENGTH + 4)
  return buf
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  const buf = message(BackendCode.ParameterStatus, Buffer.byteLength(name) + Buffer.byteLength(value) + 2)
  let offset = HEADER_LENGTH
  offset += buf.write(name, offset)
  buf[offset++] = 0
  offset += buf.write(value, offset)
  buf[offset] = 0
  return buf
}

/** NegotiateProtocolVersion: the newest minor version we speak, and the `_pq_.` options we did not recognise. */
export function encodeNegotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  let length = 8
  for (const name of unrecognized) length += Buffer.byteLength(name) + 1
  const buf = message(BackendCode.NegotiateProtocolVersion, length)
  buf.writeInt32BE(newestMinor, HEADER_LENGTH)
  buf.writeInt32BE(unrecognized.length, HEADER_LENGTH + 4)
  let offset = HEADER_LENGTH + 8
  for (const name of unrecognized) {
    offset += buf.write(name, offset)
    buf[offset++] = 0
  }
  return buf
}

export function encodeCommandComplete(tag: string): Buffer {
  const buf = message(BackendCode.CommandComplete, Buffer.byteLength(tag) + 1)
  buf.write(tag, HEADER_LENGTH)
  buf[buf.length - 1] = 0
  return buf
}

/** The tag of a statement's CommandComplete as PGlite answers a no-op the server stood in for (a DO block). */
const STAND_IN_TAG = Buffer.from('DO\0')

/**
 * `reply` with the CommandCompletes of the no-ops the server stood in for (those at `completions`, counted from 0 among
 * the reply's CommandCompletes; every one when null) given `tag`, as Postgres answers the statement itself; `reply`
 * itself when there is none.
 */
export function retagStandIns(reply: Buffer, tag: string, completions: readonly number[] | null = null): Buffer {
  const parts: Buffer[] = []
  let from = 0
  let count = 0
  forEachFrame(reply, (code, offset, length) => {
    if (code !== BackendCode.CommandComplete) return
    const index = count++
    if (
      (completions && !completions.includes(index)) ||
      !reply.subarray(offset + HEADER_LENGTH, offset + length).equals(STAND_IN_TAG)
    )
      return
    parts.push(reply.subarray(from, offset), encodeCommandComplete(tag))
    from = offset + length
  })
  if (parts.length === 0) return reply
  parts.push(reply.subarray(from))
  return Buffer.concat(parts)
}

/** CopyInResponse: overall format, then one format per column (all the same for text, csv and binary). */
export function encodeCopyInResponse(binary: boolean, columns: number): Buffer {
  const buf = message(BackendCode.CopyInResponse, 3 + 2 * columns)
  buf[HEADER_LENGTH] = binary ? 1 : 0
  buf.writeInt16BE(columns, HEADER_LENGTH + 1)
  for (let i = 0; i < columns; i++) buf.writeInt16BE(binary ? 1 : 0, HEADER_LENGTH + 3 + 2 * i)
  return buf
}

// --- Reading complete replies (the server's own statements; never the hot path) ---

/** The first DataRow's first column as text, from a complete backend reply. */
export function firstValue(reply: Buffer): string | null {
  let value: string | null = null
  forEachFrame(reply, (code, offset) => {
    if (code !== BackendCode.DataRow) return
    const length = reply.readInt32BE(offset + HEADER_LENGTH + 2)
    const start = offset + HEADER_LENGTH + 6
    value = length < 0 ? null : reply.toString('utf8', start, start + length)
    return false
  })
  return value
}

/** The first column of every DataRow, as text (NULLs left out). */
export function firstColumn(reply: Buffer): string[] {
  const values: string[] = []
  forEachFrame(reply, (code, offset) => {
    if (code !== BackendCode.DataRow) return
    const length = reply.readInt32BE(offset + HEADER_LENGTH + 2)
    const start = offset + HEADER_LENGTH + 6
    if (length >= 0) values.push(reply.toString('utf8', start, start + length))
  })
  return values
}

/** Every DataRow of `reply`, its columns as text (NULL as null). */
export function textRows(reply: Buffer): Array<Array<string | null>> {
  const rows: Array<Array<string | null>> = []
  forEachFrame(reply, (code, offset) => {
    if (code !== BackendCode.DataRow) return
    const row: Array<string | null> = []
    let at = offset + HEADER_LENGTH + 2
    for (let n = reply.readInt16BE(offset + HEADER_LENGTH); n > 0; n--) {
      const length = reply.readInt32BE(at)
      at += 4
      row.push(length < 0 ? null : reply.toString('utf8', at, at + length))
      if (length > 0) at += length
    }
    rows.push(row)
  })
  return rows
}

/** A complete reply without its first message of type `code` (PGlite repeats the CopyInResponse we already sent). */
export function withoutFirst(reply: Buffer, code: number): Buffer {
  let found = -1
  let length = 0
  forEachFrame(reply, (each, offset, total) => {
    if (each !== code) return
    found = offset
    length = total
    return false
  })
  return found < 0 ? reply : Buffer.concat([reply.subarray(0, found), reply.subarray(found + length)])
}

/** SQLSTATE and message of an ErrorResponse (whole message, header included). */
export function errorFields(message: Buffer): { code: string; message: string; detail: string } {
  const fields = { code: 'XX000', message: '', detail: '' }
  let at = HEADER_LENGTH
  while (at < message.length && message[at] !== 0) {
    const type = message[at]!
    const end = message.indexOf(0, at + 1)
    if (end < 0) break
    if (type === 0x43)
      fields.code = message.toString('utf8', at + 1, end) // C
    else if (type === 0x4d)
      fields.message = message.toString('utf8', at + 1, end) // M
    else if (type === 0x44) fields.detail = message.toString('utf8', at + 1, end) // D
    at = end + 1
  }
  return fields
}

/** The (name, value) of a ParameterStatus body (after the header). */
export function readParameterStatus(body: Buffer): [string, string] {
  const nameEnd = body.indexOf(0)
  return [body.toString('utf8', 0, nameEnd), body.toString('utf8', nameEnd + 1, body.indexOf(0, nameEnd + 1))]
}

/** The first of the backend messages in `reply` of type `code`, whole; null if none is. */
export function findMessage(reply: Buffer, code: number): Buffer | null {
  for (let at = 0; at + HEADER_LENGTH <= reply.length;) {
    const end = at + CODE_LENGTH + reply.readInt32BE(at + CODE_LENGTH)
    if (reply[at] === code) return reply.subarray(at, end)
    at = end
  }
  return null
}

/** Whether the backend messages in `reply` include one of type `code`. */
export function hasMessage(reply: Buffer, code: number): boolean {
  return findMessage(reply, code) !== null
}
