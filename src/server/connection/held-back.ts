// What a client at rest sent that asks for no reply yet (extended messages without Sync or Flush): it need not run
// until then, so it waits in the client's BatchRunner, not in the session, and runs before the messages that follow.

import { FrontendCode } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { unnamedUseOf } from '../protocol/unnamed-use.ts'
import type { Segment } from './messages.ts'

/** How much a client at rest may send that asks for no reply before it runs anyway. */
const HELD_BACK_BYTES = 1 << 20

const HOLDABLE = new Set<number>([
  FrontendCode.Parse,
  FrontendCode.Bind,
  FrontendCode.Describe,
  FrontendCode.Execute,
  FrontendCode.Close,
])

/** The last message of `bytes` asks for replies: a Sync, Flush, Query or FunctionCall, or one of unknown kind. */
function asksForReply(bytes: Buffer): boolean {
  let last = 0
  forEachFrame(bytes, (code) => void (last = code))
  return !HOLDABLE.has(last)
}

/**
 * What is held once `segment` is added to `held`; null if it asks for a reply, or would take the held bytes past
 * HELD_BACK_BYTES: then it runs now (after what is held).
 */
export function holdBack(held: Segment | null, segment: Segment): Segment | null {
  const size = segment.bytes.length + (held?.bytes.length ?? 0)
  if (segment.bytes.length === 0 || size > HELD_BACK_BYTES || asksForReply(segment.bytes)) return null
  // The read's buffer is the socket's: keep a copy.
  const bytes = held ? Buffer.concat([held.bytes, segment.bytes]) : Buffer.from(segment.bytes)
  return { bytes, unnamedUse: unnamedUseOf(bytes), functions: (held?.functions ?? 0) | segment.functions }
}

/** The messages held, then `segment`, as one segment. */
export function afterHeld(held: Segment, segment: Segment): Segment {
  if (segment.bytes.length === 0) return held
  const bytes = Buffer.concat([held.bytes, segment.bytes])
  return { bytes, unnamedUse: unnamedUseOf(bytes), functions: held.functions | segment.functions }
}
