// DISCARD ALL, DISCARD TEMP and DEALLOCATE ALL, wherever a client sends them: a whole simple Query, the Execute of a
// prepared one, or one statement of several in a Query. On the one shared session they would wipe every client's
// prepared statements, settings, LISTENs, cursors and temporary tables; the server carries them out for the sending
// client alone (its own prepared statements closed; for DISCARD ALL also its settings reset, its LISTENs ended, its
// cursors, temporary objects and advisory locks gone; for DISCARD TEMP its temporary objects) and answers with the
// CommandComplete Postgres would send. (DEALLOCATE name needs nothing here: the name gets the client's prefix like
// every statement name, statements.ts.) DISCARD PLANS and DISCARD SEQUENCES pass as they are: plans are made again
// unseen, and sequence state is the one session's anyway. In a simple Query, CLOSE ALL (other clients' cursors WITH
// HOLD) and DEALLOCATE ALL among other statements (their SQL PREPAREs) are stood in for by a close of the sender's own.

import {
  retagStandIns,
  encodeCommandComplete,
  encodeErrorResponse,
  encodeParameterStatus,
  encodeReadyForQuery,
  hasMessage,
  textRows,
} from '../protocol/backend-messages.ts'
import { statements, type Token } from '../sql/tokens.ts'
import { NO_OP_STATEMENT } from './database-commands.ts'
import { DROP_OWN_TEMP_OBJECTS_SQL, DROP_OWN_TEMP_OBJECTS } from './temp-objects.ts'
import { SqlState } from '../../errors.ts'
import { BackendCode, TxStatus } from '../protocol/codes.ts'
import { FAILING_EXTENDED, SYNC, encodeQuery } from '../protocol/frontend-messages.ts'
import { SessionChange } from '../protocol/replies.ts'
import { listenSql } from '../session/listeners.ts'
import { RESET_IDENTITY, readSettingsReply } from './settings-sql.ts'
import { runWaitingForLocks } from './lock-wait.ts'
import { ServerFunctions } from './server-functions.ts'
import type { NextRead, Turn } from './turn.ts'
import type { DiscardCommand } from './takeover-kinds.ts'

/** The DISCARD ALL, DISCARD TEMP or DEALLOCATE ALL that is the whole of `sql` (one statement, comments allowed), or null. */
export function parseDiscard(sql: string): DiscardCommand | null {
  const all = statements(sql)
  return all.length === 1 ? discardOf(all[0]!) : null
}

function discardOf(tokens: readonly Token[]): DiscardCommand | null {
  const word = (at: number, text: string): boolean => tokens[at]?.kind === 'word' && tokens[at]!.text === text
  if (word(0, 'discard') && tokens.length === 2) {
    if (word(1, 'all')) return 'DISCARD ALL'
    if (word(1, 'temp') || word(1, 'temporary')) return 'DISCARD TEMP'
  }
  if (
    word(0, 'deallocate') &&
    (tokens.length === 2 ? word(1, 'all') : tokens.length === 3 && word(1, 'prepare') && word(2, 'all'))
  )
    return 'DEALLOCATE ALL'
  return null
}

/** What PGlite parses in place of a prepared DISCARD: the drop of the client's own temporary objects, or a no-op. */
export function standInSql(command: DiscardCommand): string {
  return command === 'DISCARD TEMP' ? DROP_OWN_TEMP_OBJECTS_SQL : NO_OP_STATEMENT
}

/** A statement of a simple Query that the server stands in for: its index among the statements, and its tag. */
export interface StandIn {
  index: number
  tag: 'DISCARD TEMP' | 'DEALLOCATE ALL' | 'CLOSE CURSOR ALL'
}

const STAND_IN_WORD = /(?<![\w$])(?:close|deallocate|discard)(?![\w$])/i

/** The SQL that acts for the client alone (features/statements.ts), asked for once a statement needs it. */
export interface OwnCloses {
  closeAllCursors(): string
  deallocateAll(): string
}

/**
 * `sql` (a simple Query) with the statements that would act on every client replaced by what acts on this client
 * alone: DISCARD TEMP and DEALLOCATE ALL among several statements (alone, they are parseDiscard's), and CLOSE ALL.
 * With the index of each among the statements (each statement that runs ends with one CommandComplete, see
 * withStandInTags) and the tag Postgres answers it with; null if there is none.
 */
export function rewriteStandIns(sql: string, own: OwnCloses): { sql: string; standIns: StandIn[] } | null {
  // The lexer's prefilter also passes closed_at, execute, temp...: only a text with one of these words is read whole.
  if (!STAND_IN_WORD.test(sql)) return null
  const all = statements(sql)
  let out = ''
  let from = 0
  const standIns: StandIn[] = []
  all.forEach((tokens, index) => {
    const tag = standInTag(tokens, all.length)
    if (!tag) return
    const standIn =
      tag === 'CLOSE CURSOR ALL'
        ? own.closeAllCursors()
        : tag === 'DEALLOCATE ALL'
          ? own.deallocateAll()
          : DROP_OWN_TEMP_OBJECTS_SQL
    out += sql.slice(from, tokens[0]!.start) + standIn
    from = tokens[tokens.length - 1]!.end
    standIns.push({ index, tag })
  })
  return standIns.length > 0 ? { sql: out + sql.slice(from), standIns } : null
}

function standInTag(tokens: readonly Token[], statementCount: number): StandIn['tag'] | null {
  if (
    tokens.length === 2 &&
    tokens[0]!.kind === 'word' &&
    tokens[0]!.text === 'close' &&
    tokens[1]!.kind === 'word' &&
    tokens[1]!.text === 'all'
  )
    return 'CLOSE CURSOR ALL'
  const discard = statementCount > 1 ? discardOf(tokens) : null
  return discard === 'DISCARD TEMP' || discard === 'DEALLOCATE ALL' ? discard : null
}

/** PGlite's reply with the CommandCompletes at `completions`, those of the stand-ins, given the tag of `command`. */
export const withDiscardTags = (reply: Buffer, completions: readonly number[], command: DiscardCommand): Buffer =>
  retagStandIns(reply, command, completions)

/** PGlite's reply to a Query rewritten by rewriteStandIns, each stand-in's CommandComplete given its tag. */
export function withStandInTags(reply: Buffer, standIns: readonly StandIn[]): Buffer {
  let out = reply
  for (const tag of new Set(standIns.map((standIn) => standIn.tag))) {
    out = retagStandIns(
      out,
      tag,
      standIns.filter((standIn) => standIn.tag === tag).map((standIn) => standIn.index),
    )
  }
  return out
}

/**
 * Sent alone as a simple Query. Where Postgres would refuse (DISCARD ALL in a transaction, anything in a failed one)
 * or skip it (after an error in an open pipeline), the statement goes to PGlite as it is, for its own answer. In an
 * open pipeline a Query ends the implicit transaction, as the Sync of carrying it out does.
 */
export async function discardForClient(turn: Turn, command: DiscardCommand, frame: Buffer): Promise<void> {
  try {
    await turn.own()
  } catch (error) {
    turn.refuse(error, frame)
    return
  }
  const { backend } = turn
  const status = backend.txStatus
  // After an error in the pipeline, or in a failed block, takeover.ts gave the message to PGlite already. In a
  // transaction block, or once a statement of the open pipeline ran, PGlite refuses it (25001) before it does anything.
  if (command === 'DISCARD ALL' && (status !== TxStatus.Idle || (backend.pipelineOpen && turn.pipelineExecuted))) {
    await turn.run(frame)
    return
  }
  turn.write(Buffer.concat([...(await carryOut(turn, command)), encodeReadyForQuery(backend.txStatus)]))
  await turn.releaseIfAtRest()
}

/**
 * Postgres 18 refuses DISCARD ALL in a transaction block, and once a statement of the pipeline's implicit transaction
 * ran (PreventInTransactionBlock), with the same words (15 said "cannot be executed within a pipeline" for the second).
 */
const IN_BLOCK = encodeErrorResponse(
  'ERROR',
  SqlState.ActiveSqlTransaction,
  'DISCARD ALL cannot run inside a transaction block',
)

/**
 * The Execute of a prepared one's portal (PGlite parsed a stand-in: features/discard.ts standInSql), answered as
 * Postgres answers it (its CommandComplete; the ReadyForQuery is the Sync's). DISCARD ALL is refused inside a
 * transaction block or after another statement of the pipeline ran (25001, as Postgres refuses it), else carried
 * out as above: the Sync of that ends the pipeline's implicit transaction there, whose portals DISCARD ALL closes
 * anyway. DISCARD TEMP runs as its stand-in (the drop of the client's own temporary objects) and DEALLOCATE ALL as
 * Close of the client's own statements, in place, transactional or not as Postgres's.
 */
export async function executeDiscard(turn: Turn, command: DiscardCommand, frame: Buffer): Promise<NextRead> {
  const { backend, client } = turn
  // Not in the client's pipeline (no portal then): PGlite's own answer to the stand-in's Execute, which does nothing.
  // After an error in the pipeline, or in a failed block, takeover.ts gave the message to PGlite already.
  if (!backend.isOwner) {
    await turn.run(frame)
    return null
  }
  if (command === 'DISCARD ALL') {
    const inBlock = backend.txStatus !== TxStatus.Idle
    if (inBlock || turn.pipelineExecuted) {
      // As Postgres fails a statement: the transaction (implicit: the pipeline's) fails, the rest waits for Sync.
      await backend.capture(Buffer.concat([FAILING_EXTENDED, SYNC]))
      turn.write(IN_BLOCK)
      client.statements.portalsEnded()
      return 'discard-until-sync'
    }
    turn.write(Buffer.concat(await carryOut(turn, command)))
    // Its Sync left PGlite at rest: others may run before the client's next message (its Sync gets ReadyForQuery).
    await turn.releaseIfAtRest()
    return null
  }
  if (command === 'DEALLOCATE ALL') {
    const closes = client.statements.closeStatements()
    if (closes.length > 0) await backend.capture(Buffer.concat(closes))
  }
  turn.write(withDiscardTags(await backend.capture(frame, true), [0], command))
  return null
}

/**
 * A simple Query with statements the server stands in for (features/discard.ts rewriteStandIns): DISCARD TEMP among
 * others, each the drop of the client's own temporary objects, and CLOSE ALL, the close of every cursor but the other
 * clients' WITH HOLD ones. Its reply goes out with their CommandCompletes given the tags Postgres answers with.
 * (DISCARD ALL among others needs nothing: PGlite refuses it, 25001, as Postgres does.)
 */
export async function queryWithStandIns(
  turn: Turn,
  standIns: readonly StandIn[],
  functions: number,
  frame: Buffer,
): Promise<void> {
  try {
    await turn.own()
  } catch (error) {
    turn.refuse(error, frame)
    return
  }
  const { backend, client } = turn
  let reply: Buffer
  if (functions & ServerFunctions.MayWait && backend.txStatus === TxStatus.Idle && !turn.pipelineExecuted) {
    // A pg_advisory_lock that finds the lock taken waits for it, and the Query runs again, as any Query's does.
    let last = Buffer.alloc(0)
    await runWaitingForLocks(
      { backend, waitOutside: turn.waitOutside, write: (bytes) => (last = Buffer.from(bytes)) },
      frame,
      functions,
      null,
    )
    reply = last
  } else {
    reply = await backend.capture(frame, true, functions)
  }
  if (standIns.some((standIn) => standIn.tag !== 'DISCARD TEMP')) {
    // Which of its cursors and statements the client still has: the Query may have failed before the stand-in, or
    // made some after it. In a failed transaction nothing ran, and the records stand.
    const names = await backend.capture(client.statements.ownNamesQuery())
    if (!hasMessage(names, BackendCode.ErrorResponse)) client.statements.keepExisting(textRows(names))
  }
  turn.write(withStandInTags(reply, standIns))
  await turn.releaseIfAtRest()
}

/** Carry out `command` for the client alone, in PGlite and in the server's records: the replies before ReadyForQuery. */
async function carryOut(turn: Turn, command: DiscardCommand): Promise<Buffer[]> {
  const { backend, client } = turn
  const frames =
    command === 'DEALLOCATE ALL'
      ? [...client.statements.closeStatements(), SYNC]
      : command === 'DISCARD ALL'
        ? [...client.statements.closeAll(), SYNC]
        : []
  const session = backend.session
  // As Postgres's DISCARD ALL, as the session's own user first: the rest may need its rights.
  if (command === 'DISCARD ALL') frames.push(encodeQuery(RESET_IDENTITY))
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
  if (reply.error) backend.warn(`${command} did not do all it does on Postgres`, reply.error)
  const parts: Buffer[] = []
  if (command === 'DISCARD ALL') {
    backend.settingsDiscarded()
    backend.forgetChanges(SessionChange.Settings | SessionChange.Listening)
    // The settings the client is told about changed back to the defaults: say so, as Postgres does.
    for (const [name, value] of reply.reported) parts.push(encodeParameterStatus(name, value))
  }
  parts.push(encodeCommandComplete(command))
  return parts
}
