// The server's side of a client's socket lent to its database's thread (engine/lent-reads.ts): when to lend it after a
// unit, and what the thread tells of it when it gives it back.

import { preparedUnitEnd } from '../protocol/frontend-messages.ts'
import { LentSocket, type LendOffer } from '../session/databases.ts'
import type { SharedSession } from '../session/session.ts'
import type { BackendClient } from '../features/backend.ts'
import type { ClientState } from '../features/state.ts'
import { sendingClients, workingDatabases } from './traffic.ts'

/** What the lend of a client's socket is decided on, and what its hand-back updates. */
export interface LendingClient {
  readonly session: SharedSession
  readonly client: BackendClient
  readonly state: ClientState
  /** Nothing is to be done in the session before the client's next unit (ClientBackend.canRide). */
  canRide(): boolean
  /** SessionChange bits the server has yet to record at the unit's end. */
  changes(): number
  /** The unit calls what answers per backend. */
  callsFunctions(): boolean
  /** The client holds the session in a transaction block (or pipeline) it opened before the unit. */
  holdsSession(): boolean
}

/**
 * What the database's thread may run after `unit` from the client's socket, if it may read it at all: the server
 * read none of the client's bytes after it, the client is the only one sending and nobody waits for the session (or
 * the client holds the session in a transaction block, which keeps it from the others until the block ends: then the
 * thread reads only until it ends), the server has nothing to do for it at the unit's end (canRide, no change to
 * record, no advisory lock to let go), its statements need nothing of the server when they run, and the unit is one
 * the thread could run, so likely its next ones are too. Last, the socket's reading is lent.
 */
export function tryLend(lending: LendingClient, unit: Uint8Array): LendOffer | null {
  const { session, client, state } = lending
  const { statements, temp } = state
  if (client.queuedBatches > 0) return null
  const othersWant = sendingClients() > 1 || session.scheduler.waiting > 0
  // While others wait, the thread looks for the client's next unit on a core their clients may want; not while
  // another database works too, which wants the other.
  if (othersWant && (!lending.holdsSession() || workingDatabases() > 1)) return null
  if (!lending.canRide() || lending.changes() !== 0 || state.signaledEarly.size > 0 || session.advisoryLocks.size > 0)
    return null
  // The server reads nothing in plain SQL, unless to prefix held cursors' names or to track temporary objects.
  const unnamed = !statements.holdsCursors && !temp.firstInSearchPath
  if (
    lending.callsFunctions() ||
    !statements.needNothingToRun ||
    preparedUnitEnd(unit as Buffer, 0, unnamed) !== unit.length
  )
    return null
  // A named Bind runs in the thread only once the server knows the client uses names (errors then have them restored).
  return client.output.lendReading()
    ? { prefix: statements.used ? statements.prefix : null, unnamed, othersWant }
    : null
}

/** What the thread tells of the lent socket as it gives it back (DirectReply.handBack), `kind` a LentSocket value. */
export function lentSocketTold({ session, client, state }: LendingClient, kind: number, bytes: Buffer): void {
  if (kind === LentSocket.Unread) return client.output.lentUnread(bytes)
  if (kind === LentSocket.Ran) {
    session.lentUnits += bytes.readUInt32LE(0)
    return client.output.lentRan(bytes.subarray(4))
  }
  // The unnamed statement is the last one the thread's units made, or none after a Query of theirs.
  const parse = kind === LentSocket.UnnamedParsed ? bytes : null
  if (parse) state.statements.parsed('', null, null, parse)
  else state.statements.closed('')
  session.unnamedStatementOwner = parse ? client : null
}
