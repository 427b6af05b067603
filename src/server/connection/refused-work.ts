// The answer to waiting work that never ran (it was canceled, or its wait for the session timed out), as Postgres
// answers a statement that fails: the ErrorResponse, the rest of the Sync- or Query-ended unit skipped, ReadyForQuery.

import { CODE_LENGTH, FrontendCode } from '../protocol/codes.ts'
import { encodeReadyForQuery } from '../protocol/backend-messages.ts'
import { refusalResponse } from '../session/scheduler.ts'

/**
 * Answers the refused unit at the start of `bytes` through `write`, with `txStatus` in its ReadyForQuery. Returns
 * where it ends in `bytes` (its length when its Sync has not arrived) and whether the messages after it are dropped
 * until that Sync (`discarding`). Rethrows an error that is no refusal.
 */
export function answerRefused(
  error: unknown,
  bytes: Buffer,
  txStatus: number,
  write: (bytes: Buffer) => void,
): { end: number; discarding: boolean } {
  const refused = refusalResponse(error)
  if (!refused) throw error
  write(refused)
  const first = bytes[0]
  if (first === FrontendCode.Query || first === FrontendCode.FunctionCall) {
    // A simple-protocol statement: its own ReadyForQuery ends it.
    write(encodeReadyForQuery(txStatus))
    return { end: CODE_LENGTH + bytes.readInt32BE(CODE_LENGTH), discarding: false }
  }
  for (let offset = 0; offset < bytes.length;) {
    const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
    if (bytes[offset] === FrontendCode.Sync) {
      write(encodeReadyForQuery(txStatus))
      return { end, discarding: false }
    }
    offset = end
  }
  return { end: bytes.length, discarding: true }
}
