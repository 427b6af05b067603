// How frontend messages use the unnamed prepared statement, which lives in the shared session, not in the client:
// read from the message codes alone, as postgres.c makes and drops it.

import { FrontendCode, HEADER_LENGTH } from './codes.ts'
import { forEachFrame } from './frames.ts'

const LETTER_S = 0x53 // S: Describe and Close of a statement (P: a portal)

/** How a segment (messages sent on together) uses the unnamed prepared statement. */
export const UnnamedUse = {
  /** The segment makes an unnamed statement. */
  Parsed: 1,
  /** A Bind or Describe of the unnamed statement comes before any Parse or drop of it in the segment. */
  ReferencedFirst: 2,
  /** The segment leaves no unnamed statement: a Query or a Close of it comes after its last Parse (postgres.c drop_unnamed_stmt). */
  Dropped: 4,
} as const

/** `use` (UnnamedUse bits) after the message at `offset`. */
export function unnamedUseStep(use: number, code: number, bytes: Uint8Array, offset: number): number {
  const body = offset + HEADER_LENGTH
  if (code === FrontendCode.Parse) return bytes[body] === 0 ? (use | UnnamedUse.Parsed) & ~UnnamedUse.Dropped : use
  if (code === FrontendCode.Query || (code === FrontendCode.Close && bytes[body] === LETTER_S && bytes[body + 1] === 0))
    return use | UnnamedUse.Dropped
  if ((use & (UnnamedUse.Parsed | UnnamedUse.Dropped)) !== 0) return use
  if (code === FrontendCode.Bind)
    return bytes[bytes.indexOf(0, body) + 1] === 0 ? use | UnnamedUse.ReferencedFirst : use
  if (code === FrontendCode.Describe && bytes[body] === LETTER_S && bytes[body + 1] === 0)
    return use | UnnamedUse.ReferencedFirst
  return use
}

/** How the messages in `bytes` (already handled: names prefixed) use the unnamed statement. */
export function unnamedUseOf(bytes: Uint8Array): number {
  let use = 0
  forEachFrame(bytes, (code, offset) => void (use = unnamedUseStep(use, code, bytes, offset)))
  return use
}
