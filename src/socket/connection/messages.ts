// What the server does with each message a ready client sends, before PGlite sees it: one handler per message type,
// named as the protocol names it, in a table keyed by message code. A handler gives statement and portal names the
// client's prefix, rewrites SQL the server carries out itself, records what the client now has, and returns a
// Takeover when the server must act in the message's place. The batch is read once; what passes on is gathered
// into a segment that is copied only where a message changed.

import { FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { cstring, editMessage, sqlBounds, type Edit } from '../protocol/frontend.ts'
import { parseCopyFromStdin, type CopyFromStdin } from '../client/copy-in.ts'
import { NO_OP_STATEMENT, parseDatabaseCommand, rewriteResetCalls, type DatabaseCommand } from '../client/database-commands.ts'
import { parseSessionReset, type SessionReset } from '../client/discard.ts'
import { listenCommands, type ListenCommand } from '../client/listen.ts'
import type { Special, Statements } from '../client/statements.ts'
import { statementNameEdits } from '../sql/statement-names.ts'
import { Keyword, firstLetter, keywordsIn } from '../sql/tokens.ts'

/** What the server does in a message's place. `frame` is the message as PGlite would get it (names prefixed). */
export type Takeover =
  | { kind: 'terminate' }
  | { kind: 'copy-in'; copy: CopyFromStdin; viaQuery: boolean; frame: Buffer }
  | { kind: 'database-command'; command: DatabaseCommand; via: 'query' | 'bind'; frame: Buffer }
  | { kind: 'tagged-execute'; command: DatabaseCommand; frame: Buffer }
  | { kind: 'session-reset'; reset: SessionReset; frame: Buffer }

/** How a segment uses the unnamed prepared statement, which lives in the shared session, not in the client. */
export const UnnamedUse = {
  /** The segment makes an unnamed statement. */
  Parsed: 1,
  /** A Bind or Describe of the unnamed statement comes before any Parse of it in the segment. */
  ReferencedFirst: 2,
} as const

/** The messages to pass on to PGlite, in one buffer, and how they use the unnamed statement. */
export interface Segment {
  bytes: Buffer
  unnamedUse: number
}

type Handler = (reader: MessageReader, bytes: Buffer, offset: number, end: number) => Takeover | null

export class MessageReader {
  readonly statements: Statements
  /** LISTEN/UNLISTEN statements read since the client last released the session, in order. */
  listenCommands: ListenCommand[] = []
  /** The client called pglite_dev_db.reset(): the server checks it took effect once the client is at rest. */
  resetRequested = false
  /** CREATE/DROP DATABASE and reset calls are the server's only when it has a catalog of databases. */
  readonly #managesDatabases: boolean
  #source: Buffer = Buffer.alloc(0)
  /** Where the segment being gathered starts, and up to where `#parts` covers the source. */
  #start = 0
  #copied = 0
  /** The segment's pieces once a message in it changed; null while it is a plain slice of the source. */
  #parts: Buffer[] | null = null
  unnamedUse = 0

  constructor(statements: Statements, managesDatabases: boolean) {
    this.statements = statements
    this.#managesDatabases = managesDatabases
  }

  /** Start on a batch of whole messages. */
  begin(bytes: Buffer): void {
    this.#source = bytes
    this.#start = this.#copied = 0
    this.#parts = null
    this.unnamedUse = 0
  }

  /** Handle the message at [offset, end): null when it passes on (rewritten as needed), else what to do instead. */
  handle(offset: number, end: number): Takeover | null {
    const code = this.#source[offset]!
    this.unnamedUse = unnamedUseStep(this.unnamedUse, code, this.#source, offset)
    const handler = HANDLERS[code]
    return handler ? handler(this, this.#source, offset, end) : null
  }

  /** The messages that passed on since the last take, up to `to`; the next segment starts there. */
  take(to: number): Segment {
    let bytes: Buffer
    if (this.#parts === null) bytes = this.#source.subarray(this.#start, to)
    else {
      this.#parts.push(this.#source.subarray(this.#copied, to))
      bytes = Buffer.concat(this.#parts)
      this.#parts = null
    }
    const segment = { bytes, unnamedUse: this.unnamedUse }
    this.#start = this.#copied = to
    this.unnamedUse = 0
    return segment
  }

  /** The message at [offset, end) passes on as `frame` instead. */
  replace(offset: number, end: number, frame: Buffer): void {
    this.#parts ??= []
    this.#parts.push(this.#source.subarray(this.#copied, offset), frame)
    this.#copied = end
  }

  get managesDatabases(): boolean {
    return this.#managesDatabases
  }
}

// --- Handlers, by message ---

function Query(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const text = sqlBounds(bytes, offset, end, false)
  if (!text) return null // malformed: PGlite answers 08P01
  const [start, stop] = text
  const words = keywordsIn(bytes, start, stop)
  const first = firstLetter(bytes, start, stop)
  if (words === 0 && first !== LETTER_D) return null
  let sql = bytes.toString('utf8', start, stop)
  const frame = (): Buffer => bytes.subarray(offset, end)
  if (words & Keyword.Stdin) {
    const copy = parseCopyFromStdin(sql)
    if (copy) return { kind: 'copy-in', copy, viaQuery: true, frame: frame() }
  }
  if (first === LETTER_D) {
    const reset = parseSessionReset(sql)
    if (reset) return { kind: 'session-reset', reset, frame: frame() }
  }
  const command = databaseCommand(reader, words, first, sql)
  if (command) return { kind: 'database-command', command, via: 'query', frame: frame() }
  if (words & Keyword.Listen) reader.listenCommands.push(...listenCommands(sql))
  let changed = false
  if (reader.managesDatabases && words & Keyword.Pglite) {
    const rewritten = rewriteResetCalls(sql)
    if (rewritten !== null) {
      sql = rewritten
      changed = reader.resetRequested = true
    }
  }
  if (words & Keyword.StatementName) {
    const rewritten = prefixStatementNames(reader.statements, sql)
    if (rewritten !== null) (sql = rewritten), (changed = true)
  }
  if (changed) reader.replace(offset, end, editMessage(bytes, offset, end, [[start, stop, Buffer.from(sql)]]))
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
  const text = sqlBounds(bytes, offset, end, true)
  const words = text ? keywordsIn(bytes, text[0], text[1]) : 0
  if (text && words !== 0) {
    const original = bytes.toString('utf8', text[0], text[1])
    let sql = original
    if (words & Keyword.Stdin) {
      const copy = parseCopyFromStdin(sql)
      if (copy) special = { kind: 'copy', copy }
    }
    const command = databaseCommand(reader, words, firstLetter(bytes, text[0], text[1]), sql)
    if (command) (special = { kind: 'database', command }), (sql = NO_OP_STATEMENT)
    if (reader.managesDatabases && words & Keyword.Pglite) {
      const rewritten = rewriteResetCalls(sql)
      if (rewritten !== null) (special = { kind: 'reset' }), (sql = rewritten)
    }
    if (words & Keyword.Listen) reader.listenCommands.push(...listenCommands(sql))
    if (words & Keyword.StatementName) sql = prefixStatementNames(reader.statements, sql) ?? sql
    if (sql !== original) edits.push([text[0], text[1], Buffer.from(sql)])
  }
  const frame = edits.length > 0 ? editMessage(bytes, offset, end, edits) : null
  if (frame) reader.replace(offset, end, frame)
  reader.statements.parsed(server ? bytes.toString('utf8', nameStart, nameEnd) : '', special, server, frame)
  return null
}

function Bind(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const portal = cstring(bytes, offset + HEADER_LENGTH, end)
  const statement = cstring(bytes, portal[1] + 1, end)
  const { statements } = reader
  const special = statements.hasSpecialStatements || statements.hasSpecialPortals ? statements.bound(text(bytes, portal), text(bytes, statement)) : null
  const frame = prefixNames(reader, bytes, offset, end, portal, statement)
  if (special?.kind === 'reset') reader.resetRequested = true
  if (special?.kind === 'database') return { kind: 'database-command', command: special.command, via: 'bind', frame: frame ?? bytes.subarray(offset, end) }
  if (frame) reader.replace(offset, end, frame)
  return null
}

function Execute(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const portal = cstring(bytes, offset + HEADER_LENGTH, end)
  const special = reader.statements.hasSpecialPortals ? reader.statements.executes(text(bytes, portal)) : null
  const frame = prefixNames(reader, bytes, offset, end, portal)
  if (special?.kind === 'copy') return { kind: 'copy-in', copy: special.copy, viaQuery: false, frame: frame ?? bytes.subarray(offset, end) }
  if (special?.kind === 'database') return { kind: 'tagged-execute', command: special.command, frame: frame ?? bytes.subarray(offset, end) }
  if (frame) reader.replace(offset, end, frame)
  return null
}

function Describe(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const name = cstring(bytes, offset + HEADER_LENGTH + 1, end)
  const frame = prefixNames(reader, bytes, offset, end, name)
  if (frame) reader.replace(offset, end, frame)
  return null
}

function Close(reader: MessageReader, bytes: Buffer, offset: number, end: number): Takeover | null {
  const name = cstring(bytes, offset + HEADER_LENGTH + 1, end)
  if (bytes[offset + HEADER_LENGTH] === LETTER_S) reader.statements.closed(text(bytes, name))
  else reader.statements.closedPortal(text(bytes, name))
  const frame = prefixNames(reader, bytes, offset, end, name)
  if (frame) reader.replace(offset, end, frame)
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

// --- What the handlers share ---

/** `use` (UnnamedUse bits) after the message at `offset`. */
function unnamedUseStep(use: number, code: number, bytes: Buffer, offset: number): number {
  const body = offset + HEADER_LENGTH
  if (code === FrontendCode.Parse) return bytes[body] === 0 ? use | UnnamedUse.Parsed : use
  if ((use & UnnamedUse.Parsed) !== 0) return use
  if (code === FrontendCode.Bind) return bytes[bytes.indexOf(0, body) + 1] === 0 ? use | UnnamedUse.ReferencedFirst : use
  if (code === FrontendCode.Describe && bytes[body] === LETTER_S && bytes[body + 1] === 0) return use | UnnamedUse.ReferencedFirst
  return use
}

/** How the messages in `bytes` (already handled: names prefixed) use the unnamed statement. */
export function unnamedUseOf(bytes: Buffer): number {
  let use = 0
  forEachFrame(bytes, (code, offset) => void (use = unnamedUseStep(use, code, bytes, offset)))
  return use
}

const LETTER_C = 0x63 // c
const LETTER_D = 0x64 // d
const LETTER_S = 0x53 // S

function text(bytes: Buffer, [start, end]: [number, number]): string {
  return start === end ? '' : bytes.toString('utf8', start, end)
}

/** The message with its non-empty names (ranges in `bytes`) given the client's prefix; null if it names nothing. */
function prefixNames(reader: MessageReader, bytes: Buffer, offset: number, end: number, first: [number, number], second?: [number, number]): Buffer | null {
  const firstNamed = first[1] > first[0]
  const secondNamed = second !== undefined && second[1] > second[0]
  if (!firstNamed && !secondNamed) return null
  const edits: Edit[] = []
  for (const [start, stop] of secondNamed ? (firstNamed ? [first, second] : [second]) : [first]) {
    edits.push([start, stop, reader.statements.serverName(bytes.subarray(start, stop))])
  }
  return editMessage(bytes, offset, end, edits)
}

/** The CREATE/DROP DATABASE that `sql` is, when the server carries such commands out. */
function databaseCommand(reader: MessageReader, words: number, first: number, sql: string): DatabaseCommand | null {
  if (!reader.managesDatabases || (words & Keyword.Database) === 0 || (first !== LETTER_C && first !== LETTER_D)) return null
  return parseDatabaseCommand(sql)
}

/**
 * `sql` with the statement names of SQL PREPARE, EXECUTE and DEALLOCATE given the client's prefix (as protocol names
 * are), recording what it prepares and deallocates; null when it names none.
 */
function prefixStatementNames(statements: Statements, sql: string): string | null {
  const edits = statementNameEdits(sql)
  if (edits.length === 0) return null
  let out = ''
  let from = 0
  for (const edit of edits) {
    const server = statements.serverName(Buffer.from(edit.name))
    out += `${sql.slice(from, edit.start)}"${server.toString().replaceAll('"', '""')}"`
    from = edit.end
    if (edit.kind === 'prepare') statements.prepared(edit.name, server)
    else if (edit.kind === 'deallocate') statements.closed(edit.name)
  }
  return out + sql.slice(from)
}
