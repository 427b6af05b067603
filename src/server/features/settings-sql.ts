// The statements the server runs on a client's behalf to keep its settings (settings.ts): the read-back of a
// session's settings, a reset that applies a client's list, its database's own settings, and their replies read.

import { BackendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { readParameterStatus } from '../protocol/backend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { encodeQuery } from '../protocol/frontend-messages.ts'
import { statements } from '../sql/tokens.ts'
import { sessionFor } from '../session/session.ts'
import type { SessionDb } from '../session/databases.ts'
import { literal } from '../sql/literal.ts'

/** A client's settings, as (name, value) in the order they apply. */
export type Settings = ReadonlyArray<readonly [name: string, value: string]>

/** The user every client's statements run as in PGlite: the one session.ts starts its one backend as. */
export const SESSION_USER = 'postgres'

/**
 * Session settings that differ from what RESET ALL gives: a client's list, in a form that compares equal when equal.
 * `SET SESSION AUTHORIZATION` and `SET ROLE` are settings too, which pg_settings does not show and RESET ALL does not
 * reset (as on Postgres): read from session_user and current_setting('role'), first, in the order they must be
 * applied (a session authorization resets the role).
 */
const SNAPSHOT_SQL =
  'SELECT name, setting FROM (' +
  `SELECT 0 AS o, 'session_authorization' AS name, session_user::text AS setting WHERE session_user <> ${literal(SESSION_USER)} ` +
  "UNION ALL SELECT 1, 'role', pg_catalog.current_setting('role') WHERE pg_catalog.current_setting('role') <> 'none' " +
  "UNION ALL SELECT 2, name, setting FROM pg_catalog.pg_settings WHERE source = 'session' AND setting IS DISTINCT FROM reset_val AND name NOT LIKE 'pglite\\_dev\\_db.%'" +
  ') AS s ORDER BY o, name'

export const SNAPSHOT_QUERY = encodeQuery(SNAPSHOT_SQL)

export const SHOW_IDLE_IN_TRANSACTION_TIMEOUT = encodeQuery('SHOW idle_in_transaction_session_timeout')

/**
 * What Postgres applies to a new session of SESSION_USER in this database (pg_db_role_setting), as (name, value) rows
 * in the order that makes the right one win: for every database, for this database, for the role, for both.
 */
export const DATABASE_SETTINGS_QUERY = encodeQuery(
  "SELECT pg_catalog.split_part(c.setting, '=', 1), pg_catalog.substr(c.setting, pg_catalog.strpos(c.setting, '=') + 1) " +
    'FROM pg_catalog.pg_db_role_setting s, LATERAL pg_catalog.unnest(s.setconfig) WITH ORDINALITY AS c(setting, n) ' +
    'WHERE s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())) ' +
    `AND s.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = ${literal(SESSION_USER)})) ` +
    'ORDER BY s.setrole <> 0, s.setdatabase <> 0, c.n',
)

/**
 * What RESET ALL leaves: the session authorization and role, put back first (as Postgres's DISCARD ALL does; DEFAULT
 * would not do: PGlite's single-user backend has no default to go back to).
 */
export const RESET_IDENTITY = `SET SESSION AUTHORIZATION ${SESSION_USER}; RESET ROLE`

/**
 * `sql` with each statement that puts the session authorization back to its default (`RESET SESSION AUTHORIZATION`,
 * `SET [SESSION | LOCAL] SESSION AUTHORIZATION DEFAULT`) naming that default instead, or null if there is none:
 * PGlite would keep the current one (see RESET_IDENTITY). The RESET form is answered with the tag SET, not RESET.
 */
export function rewriteAuthorizationDefaults(sql: string): string | null {
  let out = ''
  let from = 0
  for (const tokens of statements(sql)) {
    const texts = tokens.map((token) => (token.kind === 'word' ? token.text : ''))
    const last = tokens.length - 1
    const isReset = tokens.length === 3 && texts.join(' ') === 'reset session authorization'
    const scoped = (texts[1] === 'session' || texts[1] === 'local') && texts[2] === 'session' ? 1 : 0
    const isSetDefault =
      tokens.length === 4 + scoped &&
      texts[0] === 'set' &&
      texts.slice(1 + scoped).join(' ') === 'session authorization default'
    if (!isReset && !isSetDefault) continue
    const start = isReset ? tokens[0]!.start : tokens[last]!.start
    out += sql.slice(from, start) + (isReset ? `SET SESSION AUTHORIZATION ${SESSION_USER}` : SESSION_USER)
    from = tokens[last]!.end
  }
  return from === 0 ? null : out + sql.slice(from)
}

/** A call of set_config(), written anywhere in the text: in a function's body or a string too. */
const SET_CONFIG_CALL = /(?<![\w$])set_config"?(?:\s|\/\*[\s\S]*?\*\/|--[^\n]*\n)*\(/i

/**
 * Whether `sql` may call set_config(), which changes a setting as SET does but answers like any SELECT: the client's
 * settings must then be read back (SessionChange.Settings). A call in a string, or one with `is_local` true, costs one
 * reading too many; a call the text does not show (in a function made earlier) is not seen.
 */
export function callsSetConfig(sql: string): boolean {
  return SET_CONFIG_CALL.test(sql)
}

/**
 * One simple Query that resets the session and applies `settings`; with `snapshot`, it also reads back the result
 * (for settings a client asked for at startup, whose spelling may differ from what Postgres stores).
 */
export function applySettingsQuery(settings: Settings, snapshot: boolean): Buffer {
  const statements = [RESET_IDENTITY, 'RESET ALL']
  if (settings.length > 0)
    statements.push(
      `SELECT ${settings.map(([name, value]) => `pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`).join(', ')}`,
    )
  if (snapshot) statements.push(SNAPSHOT_SQL)
  return encodeQuery(statements.join('; '))
}

/** A Query that fails as applying `setting` would, and changes nothing (is_local: it lasts for its own statement). */
export function checkSettingQuery([name, value]: readonly [string, string]): Buffer {
  return encodeQuery(`SELECT pg_catalog.set_config(${literal(name)}, ${literal(value)}, true)`)
}

export interface SettingsReply {
  /** The snapshot's rows, if the reply had a two-column result after the last RowDescription. */
  settings: Array<[string, string]>
  /** ParameterStatus messages, as (name, value). */
  reported: Array<[string, string]>
  /** The first ErrorResponse, whole. */
  error: Buffer | null
}

/** Read what PGlite answered to `applySettingsQuery` or `SNAPSHOT_QUERY`. */
export function readSettingsReply(reply: Buffer): SettingsReply {
  const result: SettingsReply = { settings: [], reported: [], error: null }
  forEachFrame(reply, (code, offset, length) => {
    const body = reply.subarray(offset + HEADER_LENGTH, offset + length)
    if (code === BackendCode.RowDescription) result.settings = []
    else if (code === BackendCode.DataRow && body.readInt16BE(0) === 2) {
      const [name, at] = column(body, 2)
      const [value] = column(body, at)
      result.settings.push([name ?? '', value ?? ''])
    } else if (code === BackendCode.ParameterStatus) {
      result.reported.push(readParameterStatus(body))
    } else if (code === BackendCode.ErrorResponse && !result.error) {
      result.error = Buffer.from(reply.subarray(offset, offset + length))
    }
  })
  return result
}

function column(body: Buffer, at: number): [string | null, number] {
  const length = body.readInt32BE(at)
  if (length < 0) return [null, at + 4]
  return [body.toString('utf8', at + 4, at + 4 + length), at + 4 + length]
}

/**
 * What a database's first client would wait for and no client decides, done ahead on a database nobody uses yet (a
 * spare): the startup messages learned, the database's own settings read, and a session reset with its read-back
 * run once, so that the catalogs those read are cached when the client comes.
 */
export async function prepareSession(db: SessionDb): Promise<void> {
  const session = sessionFor(db)
  await session.startupPrefix()
  const reply = await db.runExclusive(async () => {
    const databaseSettings = Buffer.from(await db.execProtocolRaw(DATABASE_SETTINGS_QUERY))
    await db.execProtocolRaw(applySettingsQuery([], true))
    return databaseSettings
  })
  const read = readSettingsReply(reply)
  if (!read.error) session.databaseSettings = read.settings
}
