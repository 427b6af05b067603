// The statements that manage databases rather than data. CREATE DATABASE / DROP DATABASE are carried out by the
// server (each database is its own PGlite); a call of pglite_dev_db.reset() is rewritten into a session setting
// that the server acts on once the caller is at rest. What they are, read from SQL text.

import { retagStandIns } from '../protocol/backend.ts'
import { Keyword, isName, statements, type Token } from '../sql/tokens.ts'

export type DatabaseCommand =
  | { kind: 'create'; name: string; template: string | null }
  | { kind: 'drop'; name: string; ifExists: boolean; force: boolean }
  /** ALTER DATABASE of another database than the client's: run in that database's PGlite (`sql`, as written). */
  | { kind: 'alter'; name: string; rename: boolean; sql: string }

/** What CREATE DATABASE copies when it names no template of its own: the migrated template. */
export const BUILT_IN_TEMPLATES: ReadonlySet<string> = new Set(['template1', 'template0'])

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
  return command?.kind === 'alter' && (command.name === current || BUILT_IN_TEMPLATES.has(command.name)) ? null : command
}

/**
 * The CREATE, DROP or ALTER DATABASE that is the whole of `sql` (one statement), or null. CREATE DATABASE's
 * TEMPLATE is read (null: none, DEFAULT, template1 or template0, which are the migrated template here); its other
 * options (OWNER, ENCODING, ...) are accepted and ignored.
 */
export function parseDatabaseCommand(sql: string): DatabaseCommand | null {
  const all = statements(sql)
  if (all.length !== 1) return null
  const tokens = all[0]!
  const word = (at: number, text: string): boolean => tokens[at]?.kind === 'word' && tokens[at]!.text === text
  if (!word(1, 'database')) return null
  if (word(0, 'create')) return isName(tokens[2]) ? { kind: 'create', name: tokens[2].text, template: templateOption(tokens) } : null
  if (word(0, 'alter')) return isName(tokens[2]) && tokens.length > 3 ? { kind: 'alter', name: tokens[2].text, rename: word(3, 'rename'), sql } : null
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

/** The TEMPLATE [=] name option of CREATE DATABASE's tokens, unless it names a built-in template (or DEFAULT). */
function templateOption(tokens: readonly Token[]): string | null {
  for (let at = 3; at < tokens.length; at++) {
    const token = tokens[at]!
    if (token.kind !== 'word' || token.text !== 'template' || tokens[at - 1]?.text === '=') continue
    const value = tokens[at + 1]?.text === '=' ? tokens[at + 2] : tokens[at + 1]
    if (!isName(value) || (value.kind === 'word' && value.text === 'default') || BUILT_IN_TEMPLATES.has(value.text)) return null
    return value.text
  }
  return null
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
export const withCommandTag = (reply: Buffer, command: DatabaseCommand): Buffer => retagStandIns(reply, commandTag(command))

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
    const isCall = tokens.length === 6 && tokens[0]!.kind === 'word' && texts.join(' ') === 'select pglite_dev_db . reset ( )'
    if (!isCall) continue
    out += sql.slice(from, tokens[0]!.start) + RESET_REWRITE
    from = tokens[5]!.end
  }
  return from === 0 ? null : out + sql.slice(from)
}
