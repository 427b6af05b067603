// DISCARD ALL, DEALLOCATE ALL and DEALLOCATE name sent as a whole simple Query. On the one shared session they
// would wipe every client's prepared statements, settings and LISTENs; the server carries them out for the
// sending client alone and answers with the CommandComplete Postgres would send.

import { BackendCode, HEADER_LENGTH, LEN_LENGTH } from './protocol.ts'

export type SessionReset = { kind: 'discard-all' } | { kind: 'deallocate-all' } | { kind: 'deallocate'; name: string }

const DISCARD_ALL = /^\s*discard\s+all\s*;?\s*$/i
const DEALLOCATE_ALL = /^\s*deallocate\s+(?:prepare\s+)?all\s*;?\s*$/i
const DEALLOCATE_NAME = /^\s*deallocate\s+(?:prepare\s+)?(?:"((?:[^"]|"")+)"|([A-Za-z_\u0080-\uffff][A-Za-z_0-9$\u0080-\uffff]*))\s*;?\s*$/i

/** Quick test on a Query message: does its text start with d/D after white space? Most queries do not. */
export function mayResetSession(bytes: Buffer, offset: number, end: number): boolean {
  for (let i = offset + HEADER_LENGTH; i < end; i++) {
    const byte = bytes[i]!
    if (byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)) continue
    return (byte | 0x20) === 0x64
  }
  return false
}

export function parseSessionReset(sql: string): SessionReset | null {
  if (DISCARD_ALL.test(sql)) return { kind: 'discard-all' }
  if (DEALLOCATE_ALL.test(sql)) return { kind: 'deallocate-all' }
  const match = DEALLOCATE_NAME.exec(sql)
  if (!match) return null
  // Unquoted names fold to lower case, as Postgres folds them.
  return { kind: 'deallocate', name: match[1] !== undefined ? match[1].replaceAll('""', '"') : match[2]!.toLowerCase() }
}

export function encodeCommandComplete(tag: string): Buffer {
  const body = Buffer.from(`${tag}\0`)
  const out = Buffer.allocUnsafe(HEADER_LENGTH + body.length)
  out[0] = BackendCode.CommandComplete
  out.writeInt32BE(LEN_LENGTH + body.length, 1)
  body.copy(out, HEADER_LENGTH)
  return out
}
