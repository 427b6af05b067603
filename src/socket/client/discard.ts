// DISCARD ALL and DEALLOCATE ALL sent as a whole simple Query. On the one shared session they would wipe every
// client's prepared statements, settings and LISTENs; the server carries them out for the sending client alone
// and answers with the CommandComplete Postgres would send. (DEALLOCATE name needs nothing here: the name is given
// the client's prefix like every statement name, see ClientNames.rewriteSql.)

import { BackendCode, HEADER_LENGTH, LEN_LENGTH } from '../protocol/codes.ts'

export type SessionReset = 'DISCARD ALL' | 'DEALLOCATE ALL'

const DISCARD_ALL = /^\s*discard\s+all\s*;?\s*$/i
const DEALLOCATE_ALL = /^\s*deallocate\s+(?:prepare\s+)?all\s*;?\s*$/i

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
  if (DISCARD_ALL.test(sql)) return 'DISCARD ALL'
  if (DEALLOCATE_ALL.test(sql)) return 'DEALLOCATE ALL'
  return null
}

export function encodeCommandComplete(tag: string): Buffer {
  const body = Buffer.from(`${tag}\0`)
  const out = Buffer.allocUnsafe(HEADER_LENGTH + body.length)
  out[0] = BackendCode.CommandComplete
  out.writeInt32BE(LEN_LENGTH + body.length, 1)
  body.copy(out, HEADER_LENGTH)
  return out
}
