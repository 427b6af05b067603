// DISCARD ALL, DISCARD TEMP and DEALLOCATE ALL sent alone as a simple Query, taken over: carried out for this client
// only (its own prepared statements closed; for DISCARD ALL also its settings reset, its LISTENs ended, its cursors,
// temporary objects and advisory locks gone; for DISCARD TEMP its temporary objects), answered as Postgres answers
// them. Other clients keep theirs.

import { TxStatus } from '../protocol/codes.ts'
import { encodeCommandComplete, encodeParameterStatus, encodeReadyForQuery } from '../protocol/backend.ts'
import { SYNC, encodeQuery } from '../protocol/frontend.ts'
import { SessionChange } from '../protocol/replies.ts'
import { listenSql } from '../session/listeners.ts'
import type { DiscardCommand } from '../client/discard.ts'
import { readSettingsReply } from '../client/settings.ts'
import { DROP_OWN_TEMP_OBJECTS } from '../client/temp-objects.ts'
import type { Turn } from './turn.ts'

/**
 * Where Postgres would refuse (DISCARD ALL in a transaction, anything in a failed one) or where a pipeline is open,
 * the statement goes to PGlite as it is, for its own answer.
 */
export async function discardForClient(turn: Turn, command: DiscardCommand, frame: Buffer): Promise<void> {
  try {
    await turn.own()
  } catch (error) {
    turn.refuse(error, frame)
    return
  }
  const { backend, client } = turn
  const status = backend.txStatus
  if (backend.pipelineOpen || status === TxStatus.Failed || (command === 'DISCARD ALL' && status !== TxStatus.Idle)) {
    await turn.run(frame)
    return
  }
  const frames = command === 'DEALLOCATE ALL' ? [...client.statements.closeStatements(), SYNC] : command === 'DISCARD ALL' ? [...client.statements.closeAll(), SYNC] : []
  const session = backend.session
  if (command !== 'DEALLOCATE ALL') {
    // Its temporary objects have their own names now (it holds the session); others' keep theirs.
    frames.push(DROP_OWN_TEMP_OBJECTS)
  }
  if (command === 'DISCARD ALL') {
    frames.push(encodeQuery('RESET ALL'))
    session.advisoryLocks.releasedAll(backend.client.processId)
    const unneeded = session.listeners.unlisten(backend.client, null)
    if (unneeded.length > 0) frames.push(encodeQuery(listenSql(unneeded, 'UNLISTEN')))
  }
  const reply = readSettingsReply(await backend.capture(Buffer.concat(frames)))
  const parts: Buffer[] = []
  if (command === 'DISCARD ALL') {
    backend.settingsDiscarded()
    backend.forgetChanges(SessionChange.Settings | SessionChange.Listening)
    // The settings the client is told about changed back to the defaults: say so, as Postgres does.
    for (const [name, value] of reply.reported) parts.push(encodeParameterStatus(name, value))
  }
  parts.push(encodeCommandComplete(command), encodeReadyForQuery(backend.txStatus))
  turn.write(Buffer.concat(parts))
  await turn.releaseIfAtRest()
}
