// The statements that manage databases rather than data: CREATE DATABASE, DROP DATABASE, ALTER DATABASE of another
// database, and pglite_dev_db.reset() (rewritten into a session setting acted on once the caller is at rest). Each
// database is its own PGlite, so the server reads them from the SQL and carries them out itself, answering as Postgres
// answers them, with Postgres's errors where it refuses.

import {
  retagStandIns,
  encodeCommandComplete,
  encodeErrorResponse,
  encodeNotice,
  encodeReadyForQuery,
  errorFields,
  findMessage,
  firstValue,
} from '../protocol/backend-messages.ts'
import { Keyword, isName, statements, type Token } from '../sql/tokens.ts'
import { SqlState, WireError, type SqlStateCode } from '../../errors.ts'
import { TxStatus, BackendCode } from '../protocol/codes.ts'
import { ABANDON_PIPELINE, FAILING_EXTENDED, SYNC, encodeQuery } from '../protocol/frontend-messages.ts'
import { SessionChange } from '../protocol/replies.ts'
import type { DatabaseCatalog } from '../session/databases.ts'
import { sessionFor, type SessionHolder } from '../session/session.ts'
import type { NextRead, Turn } from './turn.ts'
import type { DatabaseCommand } from './takeover-kinds.ts'
import { encodingRefusal } from './database-encoding.ts'
import { BUILT_IN_TEMPLATES, lookUpNames, missingName, readCreateOptions } from './database-options.ts'

const LETTER_A = 0x61 // a
const LETTER_C = 0x63 // c
const LETTER_D = 0x64 // d

/**
 * The database command that is `sql` (`first`: its first letter, lower-case; `words`: its Keyword bits), from a
 * client of database `current`; null if none. ALTER DATABASE of `current`, or of a built-in template, is PGlite's.
 */
export function databaseCommandIn(sql: string, words: number, first: number, current: string): DatabaseCommand | null {
  if ((words & Keyword.Database) === 0 || (first !== LETTER_A && first !== LETTER_C && first !== LETTER_D)) return null
  const command = parseDatabaseCommand(sql)
  return command?.kind === 'alter' && (command.name === current || BUILT_IN_TEMPLATES.has(command.name))
    ? null
    : command
}

/**
 * The CREATE, DROP or ALTER DATABASE that is the whole of `sql` (one statement), or null. CREATE DATABASE's options
 * are read and checked as Postgres checks them (database-options.ts).
 */
export function parseDatabaseCommand(sql: string): DatabaseCommand | null {
  const all = statements(sql)
  if (all.length !== 1) return null
  const tokens = all[0]!
  const word = (at: number, text: string): boolean => tokens[at]?.kind === 'word' && tokens[at]!.text === text
  if (!word(1, 'database')) return null
  if (word(0, 'create'))
    return isName(tokens[2]) ? { kind: 'create', name: tokens[2].text, ...readCreateOptions(tokens, sql) } : null
  if (word(0, 'alter'))
    return isName(tokens[2]) && tokens.length > 3
      ? { kind: 'alter', name: tokens[2].text, rename: word(3, 'rename'), sql }
      : null
  if (!word(0, 'drop')) return null
  let at = 2
  const ifExists = word(2, 'if') && word(3, 'exists')
  if (ifExists) at = 4
  const name: Token | undefined = tokens[at]
  if (!isName(name)) return null
  const rest = tokens.slice(at + 1).map((token) => token.text)
  if (rest[0] === 'with') rest.shift()
  const force = rest.length > 0 && rest[0] === '(' && rest.includes('force')
  if (rest.length > 0 && !force) return null
  return { kind: 'drop', name: name.text, ifExists, force }
}

/** The command tag Postgres answers a database command with, which also names it in errors. */
export const commandTag = (command: DatabaseCommand): string => `${command.kind.toUpperCase()} DATABASE`

/**
 * What a prepared CREATE/DROP DATABASE becomes in PGlite: a statement that does nothing (the server does the work
 * when it is bound), so that its Parse, Describe and Execute get PGlite's own answers.
 */
export const NO_OP_STATEMENT = 'DO $pglite_dev_db$BEGIN NULL; END$pglite_dev_db$'

/**
 * PGlite's reply to the Execute of the no-op that stands for `command`, with the no-op's CommandComplete (`DO`) given
 * the command's own tag, as Postgres answers it.
 */
export const withCommandTag = (reply: Buffer, command: DatabaseCommand): Buffer =>
  retagStandIns(reply, commandTag(command))

/** What a call of reset is rewritten to: a session setting (undone with its transaction) the server checks at rest. */
export const RESET_SETTING = 'pglite_dev_db.reset'
const RESET_REWRITE = `select pg_catalog.set_config('${RESET_SETTING}', 'requested', false) as reset`
export const RESET_CHECK_SQL = `select pg_catalog.current_setting('${RESET_SETTING}', true)`

/**
 * `sql` with each statement that is exactly `select pglite_dev_db.reset()` (any case, any spacing) replaced, or null
 * if there is none. Anything else mentioning the name reaches Postgres as written (and fails: the schema does not
 * exist).
 */
export function rewriteResetCalls(sql: string): string | null {
  let out = ''
  let from = 0
  for (const tokens of statements(sql)) {
    const texts = tokens.map((token) => token.text)
    const isCall =
      tokens.length === 6 && tokens[0]!.kind === 'word' && texts.join(' ') === 'select pglite_dev_db . reset ( )'
    if (!isCall) continue
    out += sql.slice(from, tokens[0]!.start) + RESET_REWRITE
    from = tokens[5]!.end
  }
  return from === 0 ? null : out + sql.slice(from)
}

/**
 * CREATE DATABASE or DROP DATABASE as a simple Query, answered by the server. Inside a transaction or a pipeline
 * it goes to PGlite as written, which refuses it as Postgres does (25001).
 */
export async function queryDatabaseCommand(turn: Turn, command: DatabaseCommand, frame: Buffer): Promise<void> {
  if (!turn.backend.atRest) {
    await turn.run(frame)
    return
  }
  const replies: Buffer[] = []
  const error = await carryOut(turn, command, replies)
  replies.push(
    error ? encodeError(error) : encodeCommandComplete(commandTag(command)),
    encodeReadyForQuery(turn.backend.txStatus),
  )
  turn.write(Buffer.concat(replies))
}

/**
 * A Bind of a prepared CREATE/DROP DATABASE (PGlite holds a statement that does nothing in its place): the
 * command is carried out now. On success the Bind goes on to PGlite; on failure the client gets the error and the
 * rest of its pipeline is skipped until Sync, with PGlite's side of the pipeline rolled back (or, inside a
 * transaction block, the transaction failed), as Postgres fails a statement.
 */
export async function bindDatabaseCommand(turn: Turn, command: DatabaseCommand, frame: Buffer): Promise<NextRead> {
  const { backend } = turn
  const replies: Buffer[] = []
  // In a block, or once a statement of the open pipeline ran (BEGIN among them), Postgres 18 refuses it alike.
  const inBlock = backend.txStatus !== TxStatus.Idle || turn.pipelineExecuted
  const error = inBlock
    ? new WireError(
        'ERROR',
        SqlState.ActiveSqlTransaction,
        `${commandTag(command)} cannot run inside a transaction block`,
      )
    : await carryOut(turn, command, replies)
  if (replies.length > 0) turn.write(Buffer.concat(replies))
  if (!error) {
    await turn.run(frame)
    return null
  }
  if (backend.isOwner) await backend.capture(inBlock ? Buffer.concat([FAILING_EXTENDED, SYNC]) : ABANDON_PIPELINE)
  turn.write(encodeError(error))
  turn.client.statements.portalsEnded()
  await turn.releaseIfAtRest()
  return 'discard-until-sync'
}

/**
 * The Execute of a prepared CREATE/DROP DATABASE's portal (the command ran at its Bind): the no-op runs alone and is
 * answered with the command's own tag. Its portal is in the pipeline this client holds the session for.
 */
export async function taggedExecute(turn: Turn, command: DatabaseCommand, frame: Buffer): Promise<void> {
  if (turn.backend.isOwner) turn.write(withCommandTag(await turn.backend.capture(frame), command))
  else await turn.run(frame)
}

/** Do CREATE/DROP DATABASE; the error the client gets, or null. Notices for the client go to `replies`. */
async function carryOut(turn: Turn, command: DatabaseCommand, replies: Buffer[]): Promise<WireError | null> {
  try {
    const databases = turn.databases!
    if (command.kind === 'drop') return await dropDatabase(turn, databases, command, replies)
    if (command.kind === 'alter') return await alterDatabase(turn, databases, command)
    const refused = await createRefusal(turn, databases, command, replies)
    if (refused) return refused
    if (await databases.create(command.name, command.template)) return null
    return new WireError('ERROR', SqlState.DuplicateDatabase, `database "${command.name}" already exists`)
  } catch (failure) {
    turn.log.error(`${command.kind} database failed`, { database: command.name, error: failure })
    return new WireError(
      'ERROR',
      SqlState.InternalError,
      `could not ${command.kind} database "${command.name}": ${(failure as Error).message}`,
    )
  }
}

/**
 * Why Postgres would refuse this CREATE DATABASE, in the order it looks: the options (whose WARNINGs go to
 * `notices`), OWNER, TEMPLATE, STRATEGY, ENCODING, TABLESPACE, and last the name.
 */
async function createRefusal(
  turn: Turn,
  databases: DatabaseCatalog,
  command: Extract<DatabaseCommand, { kind: 'create' }>,
  notices: Buffer[],
): Promise<WireError | null> {
  notices.push(...command.warnings)
  if (command.early) return command.early
  const found = command.owner === null && command.tablespace === null ? null : await lookUpNames(turn, command)
  if (found instanceof WireError) return found
  return (
    missingName('owner', command, found?.owner ?? false) ??
    (command.template === null ? null : await templateRefusal(turn, databases, command.template)) ??
    command.strategy ??
    encodingRefusal(command.encoding) ??
    missingName('tablespace', command, found?.tablespace ?? false) ??
    ((await databases.exists(command.name))
      ? new WireError('ERROR', SqlState.DuplicateDatabase, `database "${command.name}" already exists`)
      : null)
  )
}

/** DROP DATABASE as Postgres does it: not the one you are in, not one others use unless FORCE (they are ended). */
async function dropDatabase(
  turn: Turn,
  databases: DatabaseCatalog,
  command: Extract<DatabaseCommand, { kind: 'drop' }>,
  notices: Buffer[],
): Promise<WireError | null> {
  const { name } = command
  if (name === turn.database)
    return new WireError('ERROR', SqlState.ObjectInUse, 'cannot drop the currently open database')
  if (name === databases.mainName)
    return new WireError(
      'ERROR',
      SqlState.FeatureNotSupported,
      `cannot drop "${name}": it is the server's main database (stop the server and remove its data dir instead)`,
    )
  if (!(await databases.exists(name))) {
    if (!command.ifExists)
      return new WireError('ERROR', SqlState.InvalidCatalogName, `database "${name}" does not exist`)
    notices.push(encodeNotice('00000', `database "${name}" does not exist, skipping`))
    return null
  }
  const db = databases.instance(name)
  const session = db ? sessionFor(db) : null
  // As Postgres does, give clients that are leaving (their cleanup running) a few seconds to be gone.
  if (session && !command.force) await membersLeft(session.members)
  const others = session ? [...session.members] : []
  if (others.length > 0 && !command.force) {
    return new WireError('ERROR', SqlState.ObjectInUse, `database "${name}" is being accessed by other users`, {
      detail: otherSessions(others.length),
    })
  }
  const goodbye = new WireError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command')
  await Promise.all(others.map((member) => member.terminate(goodbye)))
  await databases.drop(name)
  turn.log.info('database dropped', { database: name, ended: others.length })
  return null
}

/**
 * ALTER DATABASE of another database of the server: run in that database's PGlite, where the database carries its
 * name, once its session is at rest (within ALTER_WAIT_MS). RENAME is refused: the server names each database's files.
 */
async function alterDatabase(
  turn: Turn,
  databases: DatabaseCatalog,
  command: Extract<DatabaseCommand, { kind: 'alter' }>,
): Promise<WireError | null> {
  const { name } = command
  if (!(await databases.exists(name)))
    return new WireError('ERROR', SqlState.InvalidCatalogName, `database "${name}" does not exist`)
  if (command.rename) {
    const detail =
      'Each database is a PGlite of its own; CREATE DATABASE new TEMPLATE old, then DROP DATABASE old, renames it.'
    return new WireError('ERROR', SqlState.FeatureNotSupported, `cannot rename database "${name}" on this server`, {
      detail,
    })
  }
  const session = sessionFor(await databases.open(name))
  const holder: SessionHolder = { processId: turn.client.processId, applicationName: '', idleInTransactionSince: null }
  const waiting = session.scheduler.acquire(holder)
  if (waiting) {
    const giveUp = setTimeout(() => session.scheduler.cancelWait(holder, new Error('waited too long')), ALTER_WAIT_MS)
    try {
      await waiting
    } catch (error) {
      return new WireError(
        'ERROR',
        SqlState.LockNotAvailable,
        `could not alter database "${name}": its session is in use (${(error as Error).message})`,
      )
    } finally {
      clearTimeout(giveUp)
    }
  }
  try {
    const chunks: Buffer[] = []
    await session.execute(encodeQuery(command.sql), (chunk) => void chunks.push(Buffer.from(chunk)))
    // A Query leaves the session's unnamed statement nobody's; its SET clauses are for that database's next clients.
    session.unnamedStatementOwner = null
    session.databaseSettings = null
    const failed = findMessage(Buffer.concat(chunks), BackendCode.ErrorResponse)
    const error = failed ? errorFields(failed) : null
    return error
      ? new WireError('ERROR', error.code as SqlStateCode, error.message, error.detail ? { detail: error.detail } : {})
      : null
  } finally {
    session.scheduler.release(holder)
  }
}

/**
 * Why CREATE DATABASE ... TEMPLATE `name` cannot copy it, as Postgres refuses: it does not exist, or another client
 * uses it (after waiting for them to leave, as for DROP DATABASE; the client that asks may be in it).
 */
async function templateRefusal(turn: Turn, databases: DatabaseCatalog, name: string): Promise<WireError | null> {
  if (!(await databases.exists(name)))
    return new WireError('ERROR', SqlState.InvalidCatalogName, `template database "${name}" does not exist`)
  const db = databases.instance(name)
  const members = db ? sessionFor(db).members : null
  if (!members) return null
  const others = (): number => members.size - (members.has(turn.backend.client) ? 1 : 0)
  for (const started = Date.now(); others() > 0 && Date.now() - started < DROP_WAIT_MS;)
    await new Promise((resolve) => setTimeout(resolve, 100))
  const count = others()
  if (count === 0) return null
  return new WireError('ERROR', SqlState.ObjectInUse, `source database "${name}" is being accessed by other users`, {
    detail: otherSessions(count),
  })
}

const otherSessions = (count: number): string =>
  count === 1 ? 'There is 1 other session using the database.' : `There are ${count} other sessions using the database.`

const encodeError = (error: WireError): Buffer =>
  encodeErrorResponse(
    error.severity,
    error.sqlstate,
    error.message,
    undefined,
    error.hint,
    error.detail,
    error.position,
  )

/** How long ALTER DATABASE of another database waits for that database's session, held by one of its clients. */
const ALTER_WAIT_MS = 5000

/** Postgres waits up to 5 s for the other backends of a database to exit before DROP DATABASE gives up. */
const DROP_WAIT_MS = 5000

async function membersLeft(members: ReadonlySet<unknown>): Promise<void> {
  for (const started = Date.now(); members.size > 0 && Date.now() - started < DROP_WAIT_MS;) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/**
 * This client called pglite_dev_db.reset() and is now at rest: if the call took effect (its transaction did not
 * roll back), its database goes back to the migrated state. The client still holds the session, so nobody else
 * runs meanwhile; everyone's prepared statements and LISTENs carry over to the fresh database.
 */
export async function resetDatabaseIfRequested(turn: Turn): Promise<void> {
  const { backend, client } = turn
  client.resetRequested = false
  const requested = firstValue(await backend.capture(encodeQuery(RESET_CHECK_SQL))) === 'requested'
  if (!requested) return
  const started = performance.now()
  const db = await turn.databases!.reset(turn.database)
  const session = backend.session
  // Reset in place (the same instance, its queries used the unnamed statement) or swapped for a fresh one.
  const inPlace = db === session.db
  if (inPlace) session.unnamedStatementOwner = null
  else await session.replaceDb(db)
  backend.forgetChanges(SessionChange.Settings)
  turn.log.info('database reset', {
    database: turn.database,
    how: inPlace ? 'in place' : 'fresh copy',
    ms: Math.round(performance.now() - started),
  })
}
