// CREATE DATABASE's options, read as Postgres's grammar reads them and checked in the order its createdb() checks
// them. The server makes each database itself (a copy of a template), so PGlite never sees the statement: what
// Postgres refuses, the server refuses with Postgres's error; what Postgres accepts and a copy cannot honour (LOCALE,
// OID, CONNECTION LIMIT, IS_TEMPLATE...) is accepted, and the copy keeps what its template has.

import { SqlState, WireError, type SqlStateCode } from '../../errors.ts'
import { encodeErrorResponse, errorFields, findMessage, textRows } from '../protocol/backend-messages.ts'
import { BackendCode } from '../protocol/codes.ts'
import { SYNC, encodeClose, encodeExecution } from '../protocol/frontend-messages.ts'
import { isName, type Token } from '../sql/tokens.ts'
import { encodingRefusal } from './database-encoding.ts'
import type { Turn } from './turn.ts'
import type { CreateOptions } from './takeover-kinds.ts'

/** A value as the grammar hands it on: a number (as written; `integer`: an int4), a string, or DEFAULT (null). */
type Value = { number: string; integer: boolean } | { string: string } | null

interface Item {
  name: string
  value: Value
  /** Where the option's name is, 1-based. */
  position: number
}

/** The options Postgres 18's createdb() knows; LOCATION and OID are not checked for repeats. */
const KNOWN = new Set([
  'tablespace',
  'owner',
  'template',
  'encoding',
  'locale',
  'builtin_locale',
  'lc_collate',
  'lc_ctype',
  'icu_locale',
  'icu_rules',
  'locale_provider',
  'is_template',
  'allow_connections',
  'connection_limit',
  'collation_version',
  'strategy',
  'oid',
  'location',
])

/** Reserved key words, which cannot be a value (DEFAULT, TRUE, FALSE and ON are read before this is asked). */
const RESERVED = new Set(
  (
    'all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create ' +
    'current_catalog current_date current_role current_time current_timestamp current_user deferrable desc distinct ' +
    'do else end except fetch for foreign from grant group having in initially intersect into lateral leading limit ' +
    'localtime localtimestamp not null offset only or order placing primary references returning select ' +
    'session_user some symmetric system_user table then to trailing union unique user using variadic when where ' +
    'window with'
  ).split(' '),
)

/** The reserved words a value may be, which no option's name can. */
const VALUE_WORDS = new Set(['default', 'true', 'false', 'on'])

/** What CREATE DATABASE copies when it names no template of its own: the migrated template. */
export const BUILT_IN_TEMPLATES: ReadonlySet<string> = new Set(['template1', 'template0'])
const FIRST_NORMAL_OBJECT_ID = 16384
const NUMBER = /^([+-]?)\s*((\d+)(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)/

/** The options of CREATE DATABASE `tokens` (its name is tokens[2]), read from `sql`, its text. */
export function readCreateOptions(tokens: readonly Token[], sql: string): CreateOptions {
  const items: Item[] = []
  const end = tokens[tokens.length - 1]!.end
  let at = tokens[3]?.kind === 'word' && tokens[3].text === 'with' ? 4 : 3
  while (at < tokens.length) {
    const nameToken = tokens[at]!
    if (
      !isName(nameToken) ||
      (nameToken.kind === 'word' && (RESERVED.has(nameToken.text) || VALUE_WORDS.has(nameToken.text)))
    )
      return noOptions(syntaxError(nameToken, sql, end))
    let name = nameToken.text
    at++
    if (nameToken.kind === 'word' && name === 'connection') {
      if (tokens[at]?.kind !== 'word' || tokens[at]!.text !== 'limit')
        return noOptions(syntaxError(tokens[at], sql, end))
      name = 'connection_limit'
      at++
    }
    if (tokens[at]?.kind === 'other' && tokens[at]!.text === '=') at++
    const read = readValue(tokens, at, sql, end)
    if ('error' in read) return noOptions(read.error)
    items.push({ name, value: read.value, position: nameToken.start + 1 })
    at = read.next
  }
  return checked(items)
}

function readValue(
  tokens: readonly Token[],
  at: number,
  sql: string,
  end: number,
): { value: Value; next: number } | { error: WireError } {
  const token = tokens[at]
  if (token === undefined) return { error: syntaxError(undefined, sql, end) }
  if (token.kind === 'ident') return { value: { string: token.text }, next: at + 1 }
  if (token.kind === 'word') {
    if (token.text === 'default') return { value: null, next: at + 1 }
    if (RESERVED.has(token.text)) return { error: syntaxError(token, sql, end) }
    return { value: { string: token.text }, next: at + 1 }
  }
  if (token.text === "'") return { value: { string: literal(sql.slice(token.start, token.end)) }, next: at + 1 }
  const number = NUMBER.exec(sql.slice(token.start))
  if (!number) return { error: syntaxError(token, sql, end) }
  const numberEnd = token.start + number[0].length
  let next = at
  while (next < tokens.length && tokens[next]!.start < numberEnd) next++
  const text = `${number[1] === '-' ? '-' : ''}${number[2]}`
  const integer = number[3] !== undefined && number[4] === undefined && number[5] === undefined
  return { value: { number: text, integer: integer && Math.abs(Number(text)) <= 2 ** 31 - 1 }, next }
}

/** A string literal's value: '' for a quote, and in an E'' string the backslash escapes of quotes and backslashes. */
function literal(raw: string): string {
  if (raw[0] === "'") return raw.slice(1, -1).replaceAll("''", "'")
  return raw
    .slice(2, -1)
    .replace(/''|\\(.)/g, (all, escaped: string | undefined) =>
      all === "''" ? "'" : escaped === 'n' ? '\n' : escaped === 't' ? '\t' : (escaped ?? ''),
    )
}

/**
 * Postgres's own words for a token its grammar does not expect there (a reserved word, a stray symbol), or for the
 * end of the statement (`token` undefined: the last token of the statement ended at `end`), where its `;` is named.
 */
function syntaxError(token: Token | undefined, sql: string, end: number): WireError {
  if (token !== undefined) {
    const near = sql.slice(token.start, token.end)
    return new WireError('ERROR', SqlState.SyntaxError, `syntax error at or near "${near}"`, {
      position: token.start + 1,
    })
  }
  const semicolon = /^\s*;/.exec(sql.slice(end))
  if (semicolon)
    return new WireError('ERROR', SqlState.SyntaxError, 'syntax error at or near ";"', {
      position: end + semicolon[0].length,
    })
  return new WireError('ERROR', SqlState.SyntaxError, 'syntax error at end of input', { position: sql.length + 1 })
}

const noOptions = (early: WireError | null): CreateOptions => ({
  template: null,
  encoding: null,
  owner: null,
  tablespace: null,
  early,
  strategy: null,
  warnings: [],
})

const stringOf = (value: Value): string | null =>
  value === null ? null : 'string' in value ? value.string : value.number

/** The options of `items`, with the refusals Postgres would give, each where it gives it. */
function checked(items: readonly Item[]): CreateOptions {
  const options = noOptions(null)
  const seen = new Map<string, Item>()
  for (const item of items) {
    const { name, value, position } = item
    if (!KNOWN.has(name)) {
      options.early = new WireError('ERROR', SqlState.SyntaxError, `option "${name}" not recognized`, { position })
      return options
    }
    if (name === 'location') {
      options.warnings.push(
        encodeErrorResponse(
          'WARNING',
          SqlState.FeatureNotSupported,
          'LOCATION is not supported anymore',
          BackendCode.NoticeResponse,
          'Consider using tablespaces instead.',
          undefined,
          position,
        ),
      )
      continue
    }
    if (name === 'oid') {
      options.early = oidRefusal(value)
      if (options.early) return options
      continue
    }
    if (seen.has(name)) {
      options.early = new WireError('ERROR', SqlState.SyntaxError, 'conflicting or redundant options', { position })
      return options
    }
    seen.set(name, item)
  }
  const valueOf = (name: string): Value => seen.get(name)?.value ?? null
  const encoding = seen.get('encoding')
  options.encoding = stringOf(encoding?.value ?? null)
  const encodingName = encodingRefusal(options.encoding)
  const template = stringOf(valueOf('template'))
  options.template = template === null || BUILT_IN_TEMPLATES.has(template) ? null : template
  options.owner = stringOf(valueOf('owner'))
  options.tablespace = stringOf(valueOf('tablespace'))
  options.strategy = strategyRefusal(stringOf(valueOf('strategy')))
  options.early =
    (encodingName?.sqlstate === SqlState.UndefinedObject
      ? new WireError('ERROR', encodingName.sqlstate, encodingName.message, { position: encoding!.position })
      : null) ??
    providerRefusal(stringOf(valueOf('locale_provider'))) ??
    booleanRefusal('is_template', valueOf('is_template')) ??
    booleanRefusal('allow_connections', valueOf('allow_connections')) ??
    connectionLimitRefusal(valueOf('connection_limit'))
  return options
}

function oidRefusal(value: Value): WireError | null {
  if (value === null || !('number' in value))
    return new WireError('ERROR', SqlState.SyntaxError, 'oid requires a numeric value')
  if (Number(value.number) >= FIRST_NORMAL_OBJECT_ID) return null
  return new WireError(
    'ERROR',
    SqlState.InvalidParameterValue,
    `OIDs less than ${FIRST_NORMAL_OBJECT_ID} are reserved for system objects`,
  )
}

function providerRefusal(provider: string | null): WireError | null {
  if (provider === null || ['builtin', 'icu', 'libc'].includes(provider.toLowerCase())) return null
  return new WireError('ERROR', SqlState.InvalidObjectDefinition, `unrecognized locale provider: ${provider}`)
}

/** Postgres's defGetBoolean: 0 or 1, or true, false, on, off in any case. */
function booleanRefusal(name: string, value: Value): WireError | null {
  if (value === null) return null
  const ok =
    'number' in value
      ? value.integer && (Number(value.number) === 0 || Number(value.number) === 1)
      : ['true', 'false', 'on', 'off'].includes(value.string.toLowerCase())
  return ok ? null : new WireError('ERROR', SqlState.SyntaxError, `${name} requires a Boolean value`)
}

function connectionLimitRefusal(value: Value): WireError | null {
  if (value === null) return null
  if (!('number' in value) || !value.integer)
    return new WireError('ERROR', SqlState.SyntaxError, 'connection_limit requires an integer value')
  const limit = Number(value.number)
  return limit >= -1
    ? null
    : new WireError('ERROR', SqlState.InvalidParameterValue, `invalid connection limit: ${limit}`)
}

function strategyRefusal(strategy: string | null): WireError | null {
  if (strategy === null || ['wal_log', 'file_copy'].includes(strategy.toLowerCase())) return null
  return new WireError('ERROR', SqlState.InvalidParameterValue, `invalid create database strategy "${strategy}"`, {
    hint: 'Valid strategies are "wal_log" and "file_copy".',
  })
}

/** The names of the server's own statement and portal for the lookup: no client's name has them (statements.ts). */
const LOOKUP_NAME = Buffer.from('pglite_dev_db.create_database')

/**
 * Whether OWNER and TABLESPACE exist in the client's database (each database here has its own roles), or the error
 * that ends the client's wait for its session. Outside an open pipeline the lookup is a pipeline of its own; inside
 * one it joins it, under names of its own, so that the client's unnamed statement and portal are left as they are.
 */
export async function lookUpNames(
  turn: Turn,
  options: CreateOptions,
): Promise<{ owner: boolean; tablespace: boolean } | WireError> {
  const { backend } = turn
  const owned = backend.isOwner
  if (!owned) {
    try {
      await turn.own()
    } catch (error) {
      if (error instanceof WireError) return error
      throw error
    }
  }
  try {
    const reply = await backend.capture(
      Buffer.concat([
        encodeExecution(LOOKUP_NAME, LOOKUP_NAME, namesQuery(options)),
        encodeClose('P', LOOKUP_NAME),
        encodeClose('S', LOOKUP_NAME),
        ...(backend.atRest ? [SYNC] : []),
      ]),
    )
    const failed = findMessage(reply, BackendCode.ErrorResponse)
    if (failed) {
      const { code, message } = errorFields(failed)
      return new WireError('ERROR', code as SqlStateCode, message)
    }
    const [owner, tablespace] = textRows(reply)[0] ?? []
    return { owner: owner === '1', tablespace: tablespace === '1' }
  } finally {
    if (!owned) await turn.releaseIfAtRest()
  }
}

/**
 * The query that finds OWNER and TABLESPACE in the client's database: a row of two counts. E'' strings, so that
 * standard_conforming_strings does not change what the names say.
 */
function namesQuery(options: CreateOptions): string {
  const quoted = (name: string | null) =>
    name === null ? 'null' : `E'${name.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
  return (
    `select (select count(*) from pg_catalog.pg_roles where rolname = ${quoted(options.owner)})::int, ` +
    `(select count(*) from pg_catalog.pg_tablespace where spcname = ${quoted(options.tablespace)})::int`
  )
}

/** Why OWNER or TABLESPACE cannot be used, given whether each was found; `which` says the one Postgres looks at. */
export function missingName(which: 'owner' | 'tablespace', options: CreateOptions, found: boolean): WireError | null {
  const name = options[which]
  if (name === null) return null
  if (which === 'tablespace' && name === 'pg_global')
    return new WireError('ERROR', SqlState.InvalidParameterValue, 'pg_global cannot be used as default tablespace')
  if (found) return null
  const what = which === 'owner' ? 'role' : 'tablespace'
  return new WireError('ERROR', SqlState.UndefinedObject, `${what} "${name}" does not exist`)
}
