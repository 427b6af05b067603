// A client is gone, however it went: leave the session as if it had never been there, as Postgres does when a
// backend exits (its pipeline closed, its transaction rolled back, its statements deallocated, its LISTENs ended).

import { isPGliteFatal } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { TxStatus } from '../protocol/codes.ts'
import { ABANDON_PIPELINE, ROLLBACK } from '../protocol/frontend-messages.ts'
import type { ClientState } from '../features/state.ts'
import { DROP_OWN_TEMP_OBJECTS } from '../features/temp-objects.ts'
import type { Backend } from '../features/backend.ts'

/**
 * What the client left behind goes now if it holds the session, else to the next client that takes it. Never
 * throws: a failure is logged (and a PGlite that died is marked so).
 */
export async function leaveSession(backend: Backend, { statements, temp }: ClientState, log: Logger): Promise<void> {
  const session = backend.session
  if (session.dead) return
  session.advisoryLocks.clientLeft(backend.client.processId)
  session.listeners.abandon(session.listeners.unlisten(backend.client, null))
  if (!backend.isOwner) {
    const dropTemp = temp.dropHidden()
    session.abandonStatements(dropTemp ? [...statements.closeAll(), dropTemp] : statements.closeAll())
    return
  }
  try {
    if (backend.pipelineOpen) await backend.runUnread(ABANDON_PIPELINE)
    if (backend.txStatus !== TxStatus.Idle) await backend.runUnread(ROLLBACK)
    // Its temporary objects have their own names while it holds the session: Postgres drops them at exit.
    await backend.runUnread(DROP_OWN_TEMP_OBJECTS)
    temp.forget()
    // A SET that committed before the client went is still in the session: the next owner resets it.
    backend.leftSettingsBehind()
    session.abandonStatements(statements.closeAll())
    await session.closeAbandonedWork()
    log.debug('session released after close', { status: String.fromCharCode(backend.txStatus) })
  } catch (error) {
    if (isPGliteFatal(error)) session.markDead(error)
    log.error('cleanup after close failed', { error })
  }
}
