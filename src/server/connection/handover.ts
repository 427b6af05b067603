// What a client takes and leaves with the session. Taking it gives the session this client's settings, its prepared
// statements that are missing and its temporary objects' names back; at rest, what the client changed in the session
// (settings, LISTENs, a DEALLOCATE ALL, its temporary objects) is recorded or set aside before the next client has it.

import type { Logger } from '../../log.ts'
import { BackendCode } from '../protocol/codes.ts'
import { textRows } from '../protocol/backend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { SessionChange, type ReplyReader } from '../protocol/replies.ts'
import { remakeStatements, type SessionMember, type SharedSession } from '../session/session.ts'
import type { ClientState } from '../features/state.ts'
import { LIST_OWN_TEMP_OBJECTS } from '../features/temp-objects.ts'
import { reconcileListening, type ListeningBackend } from '../features/listen.ts'
import type { FunctionsClient } from '../features/server-functions.ts'
import type { ClientSettings } from '../features/settings.ts'

/** What a handover runs through: the client's backend (shared-backend.ts ClientBackend). */
export interface HandoverBackend extends ListeningBackend {
  /** Keeping the session as the client left it failed: the log and the client are told. */
  warn(what: string, error: Buffer): void
}

/** One client's backend and the parts of it that a handover reads and changes. */
export interface Handover {
  backend: HandoverBackend
  client: SessionMember & FunctionsClient & { readonly left: boolean }
  session: SharedSession
  state: ClientState
  reader: ReplyReader
  settings: ClientSettings
  log: Logger
}

/**
 * The client just became the session's owner: the session is at rest between owners, the moment to drop
 * statements that departed clients left behind, and to give the session this client's settings.
 */
export async function takeSession(handover: Handover): Promise<void> {
  const { backend, client, session, state } = handover
  handover.reader.acquired()
  if (session.hasAbandonedWork) await session.closeAbandonedWork()
  await handover.settings.give()
  const unmade = state.statements.takeUnmade()
  if (unmade.length > 0) await remakeStatements([client], (bytes) => backend.capture(bytes), unmade)
  const reveal = state.temp.reveal()
  if (reveal)
    warnIfFailed(backend, 'could not give your temporary tables their names back', await backend.capture(reveal))
}

/**
 * Whether releaseSession would run nothing in the session: the client changed nothing the server keeps for it there
 * (settings, LISTENs, temporary objects, others' statements) and did not leave.
 */
export function releasesQuietly({ reader, state, client }: Handover, last: boolean): boolean {
  return reader.changes === 0 && !state.temp.mayMake && !state.temp.revealed && !(last && client.left)
}

/**
 * The client is at rest: record what it changed in the session, then let the next client have it. LISTENs that
 * never completed (an error, an aborted transaction) changed nothing and are forgotten.
 */
export async function releaseSession(handover: Handover, last = false): Promise<void> {
  const { backend, client, session, state, settings } = handover
  const changes = handover.reader.takeChanges()
  settings.blockEnded()
  // Clients its SQL ended whose call it never reached (the statement failed first) are told now.
  for (const pid of state.signaledEarly) client.answered(pid)
  state.signaledEarly.clear()
  const locks = session.advisoryLocks
  if (locks.size > 0 && locks.holdsTransactionLocks(client.processId)) locks.transactionEnded(client.processId)
  if (changes & SessionChange.TempDropped) {
    session.serverFunctionsInstalled = false
    state.temp.forget()
  }
  const { temp } = state
  if (temp.mayMake || temp.revealed) await hideTemp(handover)
  if (changes & SessionChange.Settings) {
    await settings.snapshot()
    temp.firstInSearchPath = settings.tempSchemaFirst
  }
  if (changes & SessionChange.DatabaseSettings) session.databaseSettings = null
  if (changes & SessionChange.Listening) await reconcileListening(backend, state.listenCommands, handover.log)
  if (changes & SessionChange.StatementsWiped) await remakeOthersStatements(handover)
  state.listenCommands.length = 0
  // The last unit of a client that left: its statements and cursors go before the next client takes the session, as
  // when a client is closed (Membership.stop), not after its connection's cleanup.
  if (last && client.left) session.abandonStatements(state.statements.closeAll())
  session.scheduler.release(client)
}

/** The client's temporary objects get names of its own while it is away (features/temp-objects.ts). */
async function hideTemp({ backend, state }: Handover): Promise<void> {
  const rows = textRows(await backend.capture(LIST_OWN_TEMP_OBJECTS)) as Array<[string, string, string]>
  const hide = state.temp.hide(rows)
  if (hide) warnIfFailed(backend, 'could not set your temporary tables aside', await backend.capture(hide))
}

function warnIfFailed(backend: HandoverBackend, what: string, reply: Buffer): void {
  forEachFrame(reply, (code, offset, length) => {
    if (code === BackendCode.ErrorResponse) backend.warn(what, reply.subarray(offset, offset + length))
  })
}

/**
 * This client's DEALLOCATE ALL or DISCARD ALL reached PGlite (in a pipeline or among other statements, where the
 * server does not take it over): every client's prepared statements are gone. This client's stay gone, as it
 * asked; everyone else's are made again from their Parse messages before anyone else runs.
 */
async function remakeOthersStatements({ backend, client, session, state, log }: Handover): Promise<void> {
  state.statements.forgetAll()
  // A Sync after each: one that fails now (its table was dropped) must not skip the rest; it is tried again later.
  const count = await remakeStatements(
    [...session.members].filter((member) => member !== client),
    (bytes) => backend.capture(bytes),
  )
  if (count > 0) log.debug('prepared statements made again after a DEALLOCATE ALL', { count })
}
