// The session's one unnamed statement, kept each client's own: the session has one, the last client's that made one,
// and any Query drops it (the server's own too), so a client's unit that uses it gets it made again first.

import { BackendCode, FrontendCode } from '../protocol/codes.ts'
import { FLUSH } from '../protocol/frontend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { UnnamedUse } from '../protocol/unnamed-use.ts'
import type { Statements } from '../features/statements.ts'
import type { SharedSession } from '../session/session.ts'
import type { Backend, BackendClient } from '../features/backend.ts'

/** Close the unnamed statement; Flush, not Sync, so a pipeline the client has open stays open. */
const CLOSE_UNNAMED_STATEMENT = Buffer.from([FrontendCode.Close, 0, 0, 0, 6, 0x53, 0, FrontendCode.Flush, 0, 0, 0, 4])

/**
 * The client's unit binds or describes the unnamed statement it made in an earlier one: unless the session's is still
 * this client's, it is made again from the client's last unnamed Parse, or closed if the client has none, so that the
 * client gets what its own backend would give it (its statement, or 26000), never another client's statement.
 */
export async function makeUnnamedStatementOwn(
  backend: Backend,
  client: BackendClient,
  statements: Statements,
): Promise<void> {
  const { session } = backend
  if (session.unnamedStatementOwner === client) return
  const parse = statements.unnamedParse
  const reply = await backend.capture(parse ? Buffer.concat([parse, FLUSH]) : CLOSE_UNNAMED_STATEMENT)
  const done = parse ? BackendCode.ParseComplete : BackendCode.CloseComplete
  // Not done if PGlite skipped it (after an error in the client's open pipeline) or the Parse failed: nobody's yet.
  forEachFrame(reply, (code, offset, length) => {
    if (code === done) session.unnamedStatementOwner = client
    // Postgres plans the statement again at the Bind and fails where the Parse fails (its table was dropped
    // meanwhile): that error is the client's answer, and PGlite skips the unit up to its Sync, as Postgres would.
    else client.write(statements.restore(reply.subarray(offset, offset + length)))
  })
}

/** The client's unit ran: after it, the session's unnamed statement is the one it made, or none if it dropped it. */
export function ranUnnamed(session: SharedSession, client: BackendClient, use: number): void {
  if (use & UnnamedUse.Dropped) session.unnamedStatementOwner = null
  else if (use & UnnamedUse.Parsed) session.unnamedStatementOwner = client
}
