// Several databases behind one server: the catalog a server may be given, and the statements that manage it.
// CREATE DATABASE / DROP DATABASE are carried out by the server (each database is its own PGlite); a call of
// pglite_dev_db.reset() is rewritten into a session setting that the server acts on once the caller is at rest.

import { forEachFrame } from '../protocol/frames.ts'
import { BackendCode, CODE_LENGTH, FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { encodeCommandComplete } from './discard.ts'
import { isName, mentions, sqlBounds, statements, type Token } from '../sql/tokens.ts'
import type { SessionDb } from '../session/session.ts'

/**
 * Where the databases a client names come from. Without one, a server has one database and every name leads there
 * (the stock behaviour). Names are as Postgres folds them; the catalog serializes work on one name.
 */
export interface DatabaseCatalog {
  /** The database clients reach when they name no other, and which cannot be dropped. */
  readonly mainName: string
  /** The instance behind `name`, created (from the migrated template) on first use. */
  open(name: string): Promise<SessionDb>
  /** The open instance behind `name`, if it is open. */
  instance(name: string): SessionDb | null
  /** Whether `name` exists (was used or created, and not dropped). */
  exists(name: string): Promise<boolean>
  /** CREATE DATABASE: false if it exists already. */
  create(name: string): Promise<boolean>
  /** DROP DATABASE: closes and deletes it; false if it did not exist. Its clients must be gone already. */
  drop(name: string): Promise<boolean>
  /** Back to the migrated state: the instance to use from now on. The old one is closed by the catalog. */
  reset(name: string): Promise<SessionDb>
}

export type DatabaseCommand =
  | { kind: 'create'; name: string }
  | { kind: 'drop'; name: string; ifExists: boolean; force: boolean }

/** Quick test on a Query or Parse message: does its SQL text start with c/C or d/D after white space? */
export function mayManageDatabase(bytes: Buffer, offset: number, end: number, isParse: boolean): boolean {
  const bounds = sqlBounds(bytes, offset, end, isParse)
  if (!bounds) return false
  for (let i = bounds[0]; i < bounds[1]; i++) {
    const byte = bytes[i]!
    if (byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)) continue
    const lower = byte | 0x20
    return lower === 0x63 || lower === 0x64
  }
  return false
}

/**
 * The CREATE DATABASE or DROP DATABASE that is the whole of `sql` (one statement), or null. Options of CREATE
 * DATABASE (OWNER, TEMPLATE, ENCODING, ...) are accepted and ignored: every database starts as the migrated template.
 */
export function parseDatabaseCommand(sql: string): DatabaseCommand | null {
  const all = statements(sql)
  if (all.length !== 1) return null
  const tokens = all[0]!
  const word = (at: number, text: string): boolean => tokens[at]?.kind === 'word' && tokens[at]!.text === text
  if (!word(1, 'database')) return null
  if (word(0, 'create')) return isName(tokens[2]) ? { kind: 'create', name: tokens[2].text } : null
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
export const commandTag = (command: DatabaseCommand): string => (command.kind === 'create' ? 'CREATE DATABASE' : 'DROP DATABASE')

/** The statement a prepared CREATE/DROP DATABASE becomes in PGlite: it does nothing (the server does the work). */
const NO_OP = 'DO $pglite_dev_db$BEGIN NULL; END$pglite_dev_db$'

/**
 * CREATE DATABASE / DROP DATABASE prepared with Parse (postgres.js, any extended-protocol client). PGlite gets a
 * statement that does nothing; the server carries the command out each time the statement is bound.
 */
export class DatabaseStatements {
  /** Commands behind this client's prepared statements, by the name PGlite knows them by. */
  readonly #byName = new Map<string, DatabaseCommand>()
  /** Portals bound to one of them and not yet executed, by server name: their Execute answers the command's tag. */
  readonly #portals = new Map<string, DatabaseCommand>()

  /** The client has such a statement or portal: its Bind, Execute and Close messages matter in any batch. */
  get tracking(): boolean {
    return this.#byName.size > 0 || this.#portals.size > 0
  }
  readonly #serverName: (name: Buffer) => string

  constructor(serverName: (name: Buffer) => string) {
    this.#serverName = serverName
  }

  /** Rewrite the Parse messages in `bytes` (whole frames, client names) that prepare a database command. */
  rewrite(bytes: Buffer): Buffer {
    let parts: Buffer[] | null = null
    let copied = 0
    for (let offset = 0; offset < bytes.length; ) {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (code === FrontendCode.Parse) {
        const command = mayManageDatabase(bytes, offset, end, true) ? parseDatabaseCommand(parseSql(bytes, offset, end)) : null
        if (command || this.#byName.size > 0) {
          const name = this.#serverName(bytes.subarray(offset + HEADER_LENGTH, bytes.indexOf(0, offset + HEADER_LENGTH)))
          if (command) {
            this.#byName.set(name, command)
            parts ??= []
            parts.push(bytes.subarray(copied, offset), withSql(bytes, offset, end, NO_OP))
            copied = end
          } else {
            this.#byName.delete(name)
          }
        }
      } else if (code === FrontendCode.Close && this.#byName.size > 0 && bytes[offset + HEADER_LENGTH] === 0x53 /* S */) {
        this.#byName.delete(this.#serverName(bytes.subarray(offset + HEADER_LENGTH + 1, end - 1)))
      }
      offset = end
    }
    if (!parts) return bytes
    parts.push(bytes.subarray(copied))
    return Buffer.concat(parts)
  }

  /** The command a Bind message (server names) binds, if it binds one; its portal is remembered for Execute. */
  boundBy(bytes: Buffer, offset: number): DatabaseCommand | null {
    if (!this.tracking) return null
    const portalEnd = bytes.indexOf(0, offset + HEADER_LENGTH)
    const portal = bytes.toString('utf8', offset + HEADER_LENGTH, portalEnd)
    const command = this.#byName.get(bytes.toString('utf8', portalEnd + 1, bytes.indexOf(0, portalEnd + 1))) ?? null
    if (command) this.#portals.set(portal, command)
    else this.#portals.delete(portal)
    return command
  }

  /** The client's portals are gone (its pipeline failed, which ends the transaction that held them). */
  portalsEnded(): void {
    this.#portals.clear()
  }

  /** The command whose portal an Execute message (server names) runs, if it runs one. */
  executes(bytes: Buffer, offset: number): DatabaseCommand | null {
    if (this.#portals.size === 0) return null
    const portal = bytes.toString('utf8', offset + HEADER_LENGTH, bytes.indexOf(0, offset + HEADER_LENGTH))
    const command = this.#portals.get(portal) ?? null
    this.#portals.delete(portal)
    return command
  }
}

const NO_OP_TAG = Buffer.from('DO\0')

/**
 * PGlite's reply to the Execute of a no-op that stands for `command`, with the no-op's CommandComplete (`DO`) given
 * the command's own tag, as Postgres answers it.
 */
export function withCommandTag(reply: Buffer, command: DatabaseCommand): Buffer {
  let at = -1
  forEachFrame(reply, (code, offset, length) => {
    if (code !== BackendCode.CommandComplete || !reply.subarray(offset + HEADER_LENGTH, offset + length).equals(NO_OP_TAG)) return
    at = offset
    return false
  })
  if (at < 0) return reply
  return Buffer.concat([reply.subarray(0, at), encodeCommandComplete(commandTag(command)), reply.subarray(at + HEADER_LENGTH + NO_OP_TAG.length)])
}

function parseSql(bytes: Buffer, offset: number, end: number): string {
  const text = sqlBounds(bytes, offset, end, true)
  return text ? bytes.toString('utf8', text[0], text[1]) : ''
}

/** What a call of reset is rewritten to: a session setting (undone with its transaction) the server checks at rest. */
export const RESET_SETTING = 'pglite_dev_db.reset'
const RESET_REWRITE = `select pg_catalog.set_config('${RESET_SETTING}', 'requested', false) as reset`
export const RESET_CHECK_SQL = `select pg_catalog.current_setting('${RESET_SETTING}', true)`
/** For the quick byte test (which compares letters only, so no underscore). */
const RESET_WORDS = ['pglite']
/** Words in every reset call and every database command (both end in the same letter, as `mentions` needs). */
const GATE_WORDS = ['pglite', 'database']

/**
 * One quick scan of a batch (no parsing, no strings): can it hold a reset call or a CREATE/DROP DATABASE? Batches
 * that cannot, and that bind none of the client's tracked statements, skip both rewrites.
 */
export function mayConcernDatabases(bytes: Buffer, start = 0): boolean {
  return mentions(bytes, start, bytes.length, GATE_WORDS)
}

/** Where the CopyData messages at the start of `bytes` end: their rows can hold any word and are never SQL. */
export function afterCopyData(bytes: Buffer): number {
  let offset = 0
  while (offset < bytes.length && bytes[offset] === FrontendCode.CopyData) offset += CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
  return offset
}

/**
 * Calls of pglite_dev_db.reset() in a client's batch, rewritten, and the prepared statements that hold one. A
 * statement that is exactly `select pglite_dev_db.reset()` (any case, any spacing) is replaced; anything else
 * mentioning the name reaches Postgres as written (and fails: the schema does not exist).
 */
export class ResetCalls {
  /** Names of this client's prepared statements that are a reset call. */
  readonly #statements = new Set<string>()

  /** The client has such a statement: binding it is a call even in a batch that names no reset. */
  get tracking(): boolean {
    return this.#statements.size > 0
  }

  /**
   * Rewrite the calls in `bytes` (whole frames). Returns the bytes to run (the same buffer when nothing changed)
   * and whether a call is made, by a Query or by binding a reset statement.
   */
  rewrite(bytes: Buffer): { bytes: Buffer; called: boolean } {
    if (this.#statements.size === 0 && !mentions(bytes, 0, bytes.length, RESET_WORDS)) return { bytes, called: false }
    let called = false
    let parts: Buffer[] | null = null
    let copied = 0
    for (let offset = 0; offset < bytes.length; ) {
      const code = bytes[offset]!
      const end = offset + 1 + bytes.readInt32BE(offset + 1)
      if (code === FrontendCode.Query || code === FrontendCode.Parse) {
        const isParse = code === FrontendCode.Parse
        const text = sqlBounds(bytes, offset, end, isParse)
        const name = isParse ? bytes.toString('utf8', offset + HEADER_LENGTH, bytes.indexOf(0, offset + HEADER_LENGTH)) : ''
        const sql = text && mentions(bytes, text[0], text[1], RESET_WORDS) ? bytes.toString('utf8', text[0], text[1]) : null
        const rewritten = sql === null ? null : rewriteResetCalls(sql)
        if (isParse) {
          if (rewritten !== null) this.#statements.add(name)
          else this.#statements.delete(name)
        }
        if (rewritten !== null && text) {
          if (!isParse) called = true
          parts ??= []
          parts.push(bytes.subarray(copied, offset), replaceSql(bytes, offset, end, text, rewritten))
          copied = end
        }
      } else if (code === FrontendCode.Bind && this.#statements.size > 0) {
        const portalEnd = bytes.indexOf(0, offset + HEADER_LENGTH)
        const statement = bytes.toString('utf8', portalEnd + 1, bytes.indexOf(0, portalEnd + 1))
        if (this.#statements.has(statement)) called = true
      } else if (code === FrontendCode.Close && bytes[offset + HEADER_LENGTH] === 0x53 /* S */) {
        this.#statements.delete(bytes.toString('utf8', offset + HEADER_LENGTH + 1, end - 1))
      }
      offset = end
    }
    if (!parts) return { bytes, called }
    parts.push(bytes.subarray(copied))
    return { bytes: Buffer.concat(parts), called }
  }
}

/** `sql` with each statement that is exactly a reset call replaced, or null if there is none. */
function rewriteResetCalls(sql: string): string | null {
  let out = ''
  let from = 0
  for (const tokens of statements(sql)) {
    const texts = tokens.map((token) => token.text)
    const isCall = tokens.length === 6 && tokens[0]!.kind === 'word' && texts.join(' ') === 'select pglite_dev_db . reset ( )'
    if (!isCall) continue
    out += sql.slice(from, tokens[0]!.start) + RESET_REWRITE
    from = tokens[5]!.end
  }
  return from === 0 ? null : out + sql.slice(from)
}

/** The Query or Parse message at [offset, end) with its SQL text replaced. */
function replaceSql(bytes: Buffer, offset: number, end: number, text: [number, number], sql: string): Buffer {
  const before = bytes.subarray(offset, text[0])
  const after = bytes.subarray(text[1], end)
  const middle = Buffer.from(sql)
  const frame = Buffer.concat([before, middle, after])
  frame.writeInt32BE(frame.length - CODE_LENGTH, CODE_LENGTH)
  return frame
}

/** The Parse message at [offset, end) with its SQL text replaced by `sql` (name and parameter types kept). */
export function withSql(bytes: Buffer, offset: number, end: number, sql: string): Buffer {
  const text = sqlBounds(bytes, offset, end, true)!
  return replaceSql(bytes, offset, end, text, sql)
}
