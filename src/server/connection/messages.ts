// What the server does with each message a ready client sends, before PGlite sees it: one handler per message type,
// named as the protocol names it, in a table keyed by message code. A handler gives statement and portal names the
// client's prefix, rewrites SQL the server carries out itself, records what the client now has (features/state.ts),
// and returns a Takeover when the server must act in the message's place. The batch is read once; what passes on
// is gathered into a segment, a slice of the batch unless a message in it changed, then written once.

import { FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import {
  cstring,
  editMessage,
  mayBeServerStatement,
  sqlBounds,
  writeEdited,
  type Edit,
} from '../protocol/frontend-messages.ts'
import { unnamedUseStep } from '../protocol/unnamed-use.ts'
import { parseCopyFromStdin } from '../features/copy-in.ts'
import { NO_OP_STATEMENT, databaseCommandIn, rewriteResetCalls } from '../features/database-commands.ts'
import { parseDiscard, rewriteStandIns, standInSql, type StandIn } from '../features/discard.ts'
import { listenCommands } from '../features/listen.ts'
import { prefixCursorNames, prefixStatementNames } from '../features/names-in-sql.ts'
import type { ClientState } from '../features/state.ts'
import type { Statements } from '../features/statements.ts'
import type { CopyFromStdin, DatabaseCommand, DiscardCommand, Special } from '../features/takeover-kinds.ts'
import { rewriteAuthorizationDefaults } from '../features/settings-sql.ts'
import { createdExtensions } from '../sql/extensions.ts'
import { rewriteServerFunctions, type SignalArgument } from '../features/server-functions.ts'
import { Keyword, firstLetter, keywordsIn } from '../sql/tokens.ts'
import { edited, functionBits, mayBeDiscard, prefixNames, settingsBit, text } from './message-parts.ts'

/** What the server does in a message's place. `frame` is the message as PGlite would get it (names prefixed). */
export type Takeover =
  | { kind: 'terminate' }
  | { kind: 'copy-in'; copy: CopyFromStdin; viaQuery: boolean; frame: Buffer }
  | { kind: 'database-command'; command: DatabaseCommand; via: 'query' | 'bind'; frame: Buffer }
  | { kind: 'tagged-execute'; command: DatabaseCommand; frame: Buffer }
  | { kind: 'discard'; command: DiscardCommand; via: 'query' | 'execute'; frame: Buffer }
  | { kind: 'query-with-stand-ins'; standIns: StandIn[]; functions: number; frame: Buffer }

/** The messages to pass on to PGlite, in one buffer, and how they use the unnamed statement. */
export interface Segment {
  bytes: Buffer
  unnamedUse: number
  /** What they call that answers per backend (ServerFunctions bits). */
  functions: number
}

type Handler = (reader: MessageReader, bytes: Buffer, offset: number, end: number) => Takeover | null

export class MessageReader {
  readonly client: ClientState
  /** CREATE/DROP DATABASE and reset calls are the server's only when it has a catalog of databases. */
  readonly managesDatabases: boolean
  /** The client's database (known once it is admitted, before any of its messages is read). */
  readonly database: () => string
  #source: Buffer = Buffer.alloc(0)
  /** Where the segment being gathered starts. */
  #start = 0
  /** Messages of the segment that pass on changed: where each is in the source, and its edits. */
  #changed: Array<{ offset: number; end: number; edits: readonly Edit[] }> = []
  /** How the segment uses the unnamed statement (UnnamedUse bits). */
  #unnamedUse = 0
  /** What the segment calls that answers per backend (ServerFunctions bits). */
  #functions = 0

  constructor(client: ClientState, managesDatabases: boolean, database: () => string) {
    this.client = client
    this.managesDatabases = managesDatabases
    this.database = database
  }

  get statements(): Statements {
    return this.client.statements
  }

  /** Start on a batch of whole messages. */
  begin(bytes: Buffer): void {
    this.#source = bytes
    this.#start = 0
    this.#changed.length = 0
    this.#unnamedUse = 0
    this.#functions = 0
  }

  /** The message being handled calls functions that answer per backend (ServerFunctions bits). */
  callsFunctions(bits: number): void {
    this.#functions |= bits
  }

  /** Handle the message at [offset, end): null when it passes on (rewritten as needed), else what to do instead. */
  handle(offset: number, end: number): Takeover | null {
    const code = this.#source[offset]!
    const handler = HANDLERS[code]
    const takeover = handler ? handler(this, this.#source, offset, end) : null
    // A message taken over does not reach PGlite: only those that pass on count for the segment.
    if (!takeover) this.#unnamedUse = unnamedUseStep(this.#unnamedUse, code, this.#source, offset)
    return takeover
  }

  /** The message at [offset, end) passes on with `edits` made. */
  edit(offset: number, end: number, edits: readonly Edit[]): void {
    this.#changed.push({ offset, end, edits })
  }

  /** The messages that passed on since the last take, up to `to`; the next segment starts there. */
  take(to: number): Segment {
    const source = this.#source
    let bytes: Buffer
    if (this.#changed.length === 0) bytes = source.subarray(this.#start, to)
    else {
      // One buffer, written once: the unchanged stretches and each changed message with its edits made.
      let length = to - this.#start
      for (const { edits } of this.#changed)
        for (const [from, stop, middle] of edits) length += middle.length - (stop - from)
      bytes = Buffer.allocUnsafe(length)
      let at = 0
      let copied = this.#start
      for (const { offset, end, edits } of this.#changed) {
        at += source.copy(bytes, at, copied, offset)
        at += writeEdited(bytes, at, source, offset, end, edits)
        copied = end
      }
      source.copy(bytes, at, copied, to)
      this.#changed.length = 0
    }
    const segment = { bytes, unnamedUse: this.#unnamedUse, functions: this.#functions }
    this.#start = to
    this.#unnamedUse = 0
    this.#functions = 0
    return segment
  }
}

// --- Handlers, by message ---

function Query(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  // Postgres runs a simple Query as the unnamed statement: the client's own is gone.
  reader.statements.closed('')
  const text = sqlBounds(bytes, offset, end, false)
  if (!text) return null // malformed: PGlite answers 08P01
  const [start, stop] = text
  const words = keywordsIn(bytes, start, stop)
  const first = firstLetter(bytes, start, stop)
  if (reader.client.temp.firstInSearchPath) reader.client.temp.mayMake = true
  if (words === 0 && !mayBeServerStatement(first) && !reader.statements.holdsCursors) return null
  let sql = bytes.toString('utf8', start, stop)
  const frame = (): Buffer => bytes.subarray(offset, end)
  if (words & Keyword.Stdin) {
    const copy = parseCopyFromStdin(sql)
    if (copy) return { kind: 'copy-in', copy, viaQuery: true, frame: frame() }
  }
  const discard = mayBeDiscard(bytes, start, stop, first, sql) ? parseDiscard(sql) : null
  if (discard) return { kind: 'discard', command: discard, via: 'query', frame: frame() }
  const command = reader.managesDatabases ? databaseCommandIn(sql, words, first, reader.database()) : null
  if (command) return { kind: 'database-command', command, via: 'query', frame: frame() }
  if (words & Keyword.Listen) reader.client.listenCommands.push(...listenCommands(sql))
  if (words & Keyword.Temp) reader.client.temp.mayMake = true
  if (words & Keyword.Extension && reader.managesDatabases)
    reader.client.extensionsWanted.push(...createdExtensions(sql))
  let changed = false
  let functions = 0
  if (reader.managesDatabases && words & Keyword.Pglite) {
    const rewritten = rewriteResetCalls(sql)
    if (rewritten !== null) {
      sql = rewritten
      changed = reader.client.resetRequested = true
    }
  }
  if (words & Keyword.Authorization) {
    const rewritten = rewriteAuthorizationDefaults(sql)
    if (rewritten !== null) {
      sql = rewritten
      changed = true
    }
  }
  if (words & Keyword.StatementName) {
    const rewritten = prefixStatementNames(reader.statements, sql)
    if (rewritten !== null) {
      sql = rewritten
      changed = true
    }
  }
  if (words & Keyword.Declare || reader.statements.holdsCursors) {
    const rewritten = prefixCursorNames(reader.statements, sql)
    if (rewritten !== null) {
      sql = rewritten
      changed = true
    }
  }
  if (words & Keyword.PgName) {
    const use = rewriteServerFunctions(sql, reader.client.processId)
    if (use) {
      sql = use.sql
      changed = true
      functions = functionBits(use)
      for (const signal of use.signals) if ('pid' in signal) reader.client.signals.push(signal)
    }
  }
  functions |= settingsBit(reader.client, words, sql)
  // DISCARD TEMP and DEALLOCATE ALL among other statements, and CLOSE ALL: stand-ins that act for this client alone.
  const standIns =
    words & (Keyword.Temp | Keyword.Close | Keyword.StatementName) ? rewriteStandIns(sql, reader.statements) : null
  if (standIns) {
    return {
      kind: 'query-with-stand-ins',
      standIns: standIns.standIns,
      functions,
      frame: editMessage(bytes, offset, end, [[start, stop, Buffer.from(standIns.sql)]]),
    }
  }
  reader.callsFunctions(functions)
  if (changed) reader.edit(offset, end, [[start, stop, Buffer.from(sql)]])
  return null
}

function Parse(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const [nameStart, nameEnd] = cstring(bytes, offset + HEADER_LENGTH, end)
  const edits: Edit[] = []
  let server: Buffer | null = null
  if (nameEnd > nameStart) {
    server = reader.statements.serverName(bytes.subarray(nameStart, nameEnd))
    edits.push([nameStart, nameEnd, server])
  }
  let special: Special | null = null
  let functions = 0
  let signals: SignalArgument[] = []
  const text = sqlBounds(bytes, offset, end, true)
  const words = text ? keywordsIn(bytes, text[0], text[1]) : 0
  if (reader.client.temp.firstInSearchPath) reader.client.temp.mayMake = true
  const first = text ? firstLetter(bytes, text[0], text[1]) : 0
  const discard =
    text && mayBeDiscard(bytes, text[0], text[1], first, null)
      ? parseDiscard(bytes.toString('utf8', text[0], text[1]))
      : null
  if (text && discard) {
    // PGlite parses a stand-in; the Execute of its portal is the server's (features/discard.ts).
    special = { kind: 'discard', command: discard }
    edits.push([text[0], text[1], Buffer.from(standInSql(discard))])
  } else if (text && (words !== 0 || reader.statements.holdsCursors)) {
    const original = bytes.toString('utf8', text[0], text[1])
    let sql = original
    if (words & Keyword.Stdin) {
      const copy = parseCopyFromStdin(sql)
      if (copy) special = { kind: 'copy', copy }
    }
    const command = reader.managesDatabases ? databaseCommandIn(sql, words, first, reader.database()) : null
    if (command) {
      special = { kind: 'database', command }
      sql = NO_OP_STATEMENT
    }
    if (reader.managesDatabases && words & Keyword.Pglite) {
      const rewritten = rewriteResetCalls(sql)
      if (rewritten !== null) {
        special = { kind: 'reset' }
        sql = rewritten
      }
    }
    if (words & Keyword.Listen) reader.client.listenCommands.push(...listenCommands(sql))
    if (words & Keyword.Temp) reader.client.temp.mayMake = true
    if (words & Keyword.Extension && reader.managesDatabases)
      reader.client.extensionsWanted.push(...createdExtensions(sql))
    if (words & Keyword.Authorization) sql = rewriteAuthorizationDefaults(sql) ?? sql
    if (words & Keyword.StatementName) sql = prefixStatementNames(reader.statements, sql) ?? sql
    if (words & Keyword.Declare || reader.statements.holdsCursors)
      sql = prefixCursorNames(reader.statements, sql) ?? sql
    if (words & Keyword.PgName) {
      const use = rewriteServerFunctions(sql, reader.client.processId)
      if (use) {
        sql = use.sql
        functions = functionBits(use)
        signals = use.signals
      }
    }
    functions |= settingsBit(reader.client, words, sql)
    if (sql !== original) edits.push([text[0], text[1], Buffer.from(sql)])
  }
  const name = server ? bytes.toString('utf8', nameStart, nameEnd) : ''
  if (edits.length > 0) reader.edit(offset, end, edits)
  // Kept as PGlite gets it, to make the statement again after a wipe, or once the session's unnamed one is another's.
  reader.statements.parsed(name, special, server, editMessage(bytes, offset, end, edits))
  reader.statements.callsFunctions(name, functions, signals)
  reader.callsFunctions(functions)
  return null
}

function Bind(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const portal = cstring(bytes, offset + HEADER_LENGTH, end)
  const statement = cstring(bytes, portal[1] + 1, end)
  const { statements } = reader
  const special =
    statements.hasSpecialStatements || statements.hasSpecialPortals
      ? statements.bound(text(bytes, portal), text(bytes, statement))
      : null
  const edits = prefixNames(reader.statements, bytes, portal, statement)
  // The statement's name is decoded only when some statement of the client calls such functions (a Bind is per query).
  if (statements.callsAnyFunctions) {
    const name = text(bytes, statement)
    const functions = statements.functionsOf(name)
    reader.callsFunctions(functions)
    if (functions !== 0) reader.client.signals.push(...statements.signalsOf(name, bytes, statement[1] + 1, end))
  }
  if (special?.kind === 'reset') reader.client.resetRequested = true
  if (special?.kind === 'database')
    return { kind: 'database-command', command: special.command, via: 'bind', frame: edited(bytes, offset, end, edits) }
  if (edits) reader.edit(offset, end, edits)
  return null
}

function Execute(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const portal = cstring(bytes, offset + HEADER_LENGTH, end)
  const special = reader.statements.hasSpecialPortals ? reader.statements.executes(text(bytes, portal)) : null
  const edits = prefixNames(reader.statements, bytes, portal)
  if (special?.kind === 'copy')
    return { kind: 'copy-in', copy: special.copy, viaQuery: false, frame: edited(bytes, offset, end, edits) }
  if (special?.kind === 'database')
    return { kind: 'tagged-execute', command: special.command, frame: edited(bytes, offset, end, edits) }
  if (special?.kind === 'discard')
    return { kind: 'discard', command: special.command, via: 'execute', frame: edited(bytes, offset, end, edits) }
  if (edits) reader.edit(offset, end, edits)
  return null
}

function Describe(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const name = cstring(bytes, offset + HEADER_LENGTH + 1, end)
  const edits =
    bytes[offset + HEADER_LENGTH] === LETTER_S
      ? prefixNames(reader.statements, bytes, null, name)
      : prefixNames(reader.statements, bytes, name)
  if (edits) reader.edit(offset, end, edits)
  return null
}

function Close(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const name = cstring(bytes, offset + HEADER_LENGTH + 1, end)
  const isStatement = bytes[offset + HEADER_LENGTH] === LETTER_S
  const edits = isStatement
    ? prefixNames(reader.statements, bytes, null, name)
    : prefixNames(reader.statements, bytes, name)
  if (isStatement) reader.statements.closed(text(bytes, name))
  else {
    reader.statements.closedPortal(text(bytes, name))
    reader.statements.closedCursor(text(bytes, name))
  }
  if (edits) reader.edit(offset, end, edits)
  return null
}

function Terminate(): Takeover {
  return { kind: 'terminate' }
}

/** Sync, Flush, FunctionCall and CopyData/CopyDone/CopyFail (outside a COPY, Postgres ignores them) pass as they are. */
const HANDLERS: Array<Handler | undefined> = []
HANDLERS[FrontendCode.Query] = Query
HANDLERS[FrontendCode.Parse] = Parse
HANDLERS[FrontendCode.Bind] = Bind
HANDLERS[FrontendCode.Execute] = Execute
HANDLERS[FrontendCode.Describe] = Describe
HANDLERS[FrontendCode.Close] = Close
HANDLERS[FrontendCode.Terminate] = Terminate

const LETTER_S = 0x53 // S
