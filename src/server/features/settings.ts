// Per-client session settings. PGlite has one session, so what one client SETs (search_path, TimeZone, DateStyle,
// application_name...) would be what the next client sees. Each client keeps its own list of settings that differ
// from the defaults (those its startup packet asked for and those its SETs left, read back after each SET); when the
// session passes to a client whose list differs from what the session holds, the session is reset and given that
// client's list. Clients that never SET anything share the empty list and pay nothing.

import { BackendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { readParameterStatus, encodeParameterStatus, errorFields } from '../protocol/backend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { encodeQuery } from '../protocol/frontend-messages.ts'
import { statements } from '../sql/tokens.ts'
import { WireError, type SqlStateCode } from '../../errors.ts'
import { UNKNOWN_SETTINGS, type SharedSession } from '../session/session.ts'

export type Settings = ReadonlyArray<readonly [name: string, value: string]>

/** Startup packet keys that are not settings. */
const NOT_SETTINGS = new Set(['user', 'database', 'replication', 'options'])

/** One string per list of settings: equal lists, equal keys. */
export function settingsKey(settings: Settings): string {
  return settings.map(([name, value]) => `${name}=${value}`).join('\u0000')
}

/**
 * The settings a StartupMessage asks for: every parameter that is not user/database/replication, plus `-c name=value`
 * and `--name=value` in `options` (space-separated, `\` escapes the next character), as Postgres reads them.
 */
export function startupSettings(params: ReadonlyMap<string, string>): Array<[string, string]> {
  const settings = new Map<string, string>()
  for (const [name, value] of params) if (!NOT_SETTINGS.has(name)) settings.set(name, value)
  const options = params.get('options')
  if (options) {
    const words = splitOptions(options)
    for (let i = 0; i < words.length; i++) {
      let word = words[i]!
      if (word === '-c' && i + 1 < words.length) word = `--${words[++i]}`
      else if (word.startsWith('-c')) word = `--${word.slice(2)}`
      if (!word.startsWith('--')) continue
      const eq = word.indexOf('=')
      if (eq > 2) settings.set(word.slice(2, eq).replaceAll('-', '_'), word.slice(eq + 1))
    }
  }
  return [...settings]
}

function splitOptions(options: string): string[] {
  const words: string[] = []
  let word = ''
  let inWord = false
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!
    if (ch === '\\' && i + 1 < options.length) {
      word += options[++i]
      inWord = true
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word)
      word = ''
      inWord = false
    } else {
      word += ch
      inWord = true
    }
  }
  if (inWord) words.push(word)
  return words
}

const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

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
      tokens.length === 4 + scoped && texts[0] === 'set' && texts.slice(1 + scoped).join(' ') === 'session authorization default'
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
  if (settings.length > 0) statements.push(`SELECT ${settings.map(([name, value]) => `pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`).join(', ')}`)
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

/** What a client's settings need of its backend (ClientBackend). */
export interface SettingsBackend {
  readonly session: SharedSession
  readonly client: { write(bytes: Uint8Array): void }
  /** Run the server's own statements in the session and return PGlite's whole reply. */
  capture(bytes: Uint8Array): Promise<Buffer>
  /** Keeping the session as the client left it failed: the log and the client (as a WARNING) are told `what`. */
  warn(what: string, error: Buffer): void
}

/** Postgres's time units, in ms. */
const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }

export class ClientSettings {
  readonly #backend: SettingsBackend
  /** This client's settings that differ from the defaults (its startup parameters and its SETs), and their key. */
  #settings: Settings = []
  #key = ''
  /** The startup packet asked for settings not yet applied: they are, the first time this client takes the session. */
  #startupPending = false
  /** Not yet given the session: its database's own settings (ALTER DATABASE ... SET) are still to be added. */
  #fresh = true
  /** How many of the settings first applied come from the database, before the startup packet's. */
  #fromDatabase = 0
  /** Every setting the startup packet named (lower-case), those equal to the defaults too: the database's yield to them. */
  #startupNames: ReadonlySet<string> = new Set()

  constructor(backend: SettingsBackend) {
    this.#backend = backend
  }

  /**
   * Settings from the startup packet that differ from what every client is told: applied on first taking the session.
   * `named`: every setting the packet named, lower-case.
   */
  startWith(settings: Settings, named: ReadonlySet<string> = new Set()): void {
    this.#startupNames = named
    this.#settings = settings
    this.#startupPending = settings.length > 0
    if (this.#startupPending) this.#key = UNKNOWN_SETTINGS
  }

  /** The key of this client's settings: what the session must have for its statements. */
  get key(): string {
    return this.#key
  }

  /**
   * What the client gets at connect is not yet applied (its startup packet's settings, or its database's, which are
   * unknown until a client reads them): the client has not taken the session since it connected.
   */
  get startupPending(): boolean {
    return this.#startupPending || (this.#fresh && this.#backend.session.databaseSettings?.length !== 0)
  }

  /**
   * The key a unit of this client's may ride under (a combined call holds units of one key): none that matches
   * another's while what the client gets at connect is still to be applied.
   */
  get rideKey(): string {
    return this.startupPending ? UNKNOWN_SETTINGS : this.#key
  }

  /** A unit of the client's ran in a combined call (allowed only while its database had no settings to add): no longer new. */
  rode(): void {
    this.#fresh = false
  }

  /** The client's lock_timeout (ms; 0: none). */
  get lockTimeoutMs(): number {
    return this.#milliseconds('lock_timeout')
  }

  /** The client's statement_timeout (ms; 0: none). */
  get statementTimeoutMs(): number {
    return this.#milliseconds('statement_timeout')
  }

  /**
   * A time setting in ms: as read back from the session, a number of ms; as a startup packet gave it (not applied
   * yet), perhaps with a unit (`-c statement_timeout=2s`).
   */
  #milliseconds(setting: string): number {
    // Setting names are case-insensitive; units are not (Postgres refuses `1S`).
    const value = this.#settings.find(([name]) => name.toLowerCase() === setting)?.[1]
    const match = value === undefined ? null : /^\s*\+?(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*$/.exec(value)
    if (!match) return 0
    // Postgres rounds to whole ms: 500us is 0, no timeout.
    const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!)
    return Number.isFinite(ms) && ms > 0 ? ms : 0
  }

  /** The client's search_path begins with pg_temp (Postgres then creates objects named without a schema there). */
  get tempSchemaFirst(): boolean {
    const path = this.#settings.find(([name]) => name === 'search_path')?.[1]
    return path !== undefined && path.split(',')[0]!.trim().replaceAll('"', '').toLowerCase() === 'pg_temp'
  }

  /** The client took the session, which is at rest: the session gets this client's settings, unless it has them. */
  async give(): Promise<void> {
    if (this.#fresh) await this.#addDatabaseSettings()
    if (this.#startupPending) await this.#applyStartup()
    else if (this.#backend.session.appliedSettings !== this.#key) await this.#apply()
  }

  /** This client SET something: remember its settings, which are now the session's. */
  async snapshot(): Promise<void> {
    const { session } = this.#backend
    const reply = readSettingsReply(await this.#backend.capture(SNAPSHOT_QUERY))
    if (reply.error) {
      session.appliedSettings = UNKNOWN_SETTINGS
      this.#backend.warn('could not record your session settings; a SET may not last beyond this command', reply.error)
      return
    }
    this.#settings = reply.settings
    session.appliedSettings = this.#key = settingsKey(reply.settings)
  }

  /** The client's DISCARD ALL put its settings, session authorization and role back to the defaults. */
  discarded(): void {
    this.#settings = []
    this.#backend.session.appliedSettings = this.#key = ''
  }

  /**
   * Its database's settings go before the startup packet's, which win (Postgres applies both at connect). Read once
   * for every client of the database, and again after an ALTER DATABASE or ALTER ROLE.
   */
  async #addDatabaseSettings(): Promise<void> {
    this.#fresh = false
    const { session } = this.#backend
    if (session.databaseSettings === null) {
      const reply = readSettingsReply(await this.#backend.capture(DATABASE_SETTINGS_QUERY))
      if (reply.error) {
        // Not kept: the next new client reads them again.
        this.#backend.warn("could not read this database's settings (ALTER DATABASE ... SET); connected without them", reply.error)
        return
      }
      session.databaseSettings = reply.settings
    }
    const added = session.databaseSettings.filter(([name]) => !this.#startupNames.has(name.toLowerCase()))
    if (added.length === 0) return
    this.#settings = [...added, ...this.#settings]
    this.#fromDatabase = added.length
    this.#startupPending = true
    this.#key = UNKNOWN_SETTINGS
  }

  /** Give the session this client's settings (the session is at rest: no pipeline, no transaction). */
  async #apply(): Promise<void> {
    const { session } = this.#backend
    const reply = readSettingsReply(await this.#backend.capture(applySettingsQuery(this.#settings, false)))
    session.appliedSettings = reply.error ? UNKNOWN_SETTINGS : this.#key
    if (reply.error) this.#backend.warn('could not restore your session settings; SET them again', reply.error)
  }

  /**
   * The settings of the startup packet, applied the first time this client gets the session (connecting never
   * waits for another client's transaction). The client was told the defaults at startup; now it gets a
   * ParameterStatus for each reported setting it changed, as Postgres would have sent at startup. A startup value
   * Postgres refuses closes the connection with its error as FATAL, as Postgres does at startup; a database's value it
   * refuses is a WARNING, and the others apply.
   */
  async #applyStartup(): Promise<void> {
    this.#startupPending = false
    const { session } = this.#backend
    const reply = readSettingsReply(await this.#backend.capture(applySettingsQuery(this.#settings, true)))
    if (reply.error && this.#fromDatabase > 0) {
      // Each of the database's tried alone: one Postgres refuses is left out with a WARNING, as Postgres does.
      const kept: Array<readonly [string, string]> = []
      for (const setting of this.#settings.slice(0, this.#fromDatabase)) {
        const check = readSettingsReply(await this.#backend.capture(checkSettingQuery(setting)))
        if (check.error) this.#backend.warn(`could not apply this database's setting ${setting[0]} (ALTER DATABASE ... SET)`, check.error)
        else kept.push(setting)
      }
      this.#settings = [...kept, ...this.#settings.slice(this.#fromDatabase)]
      this.#fromDatabase = 0
      this.#startupPending = true
      return this.#applyStartup()
    }
    if (reply.error) {
      session.appliedSettings = UNKNOWN_SETTINGS
      const { code, message } = errorFields(reply.error)
      throw new WireError('FATAL', code as SqlStateCode, message)
    }
    this.#settings = reply.settings
    session.appliedSettings = this.#key = settingsKey(reply.settings)
    const reported = reply.settings.filter(([name]) => session.reportedDefaults.has(name.toLowerCase()))
    if (reported.length > 0) this.#backend.client.write(Buffer.concat(reported.map(([name, value]) => encodeParameterStatus(name, value))))
  }
}

/**
 * What a database's first client would wait for and no client decides, done ahead on a database nobody uses yet (a
 * spare): the startup messages learned, the database's own settings read, and a session reset with its read-back
 * run once, so that the catalogs those read are cached when the client comes.
 */
export async function prepareSession(session: SharedSession): Promise<void> {
  await session.startupPrefix()
  const { db } = session
  const reply = await db.runExclusive(async () => {
    const databaseSettings = Buffer.from(await db.execProtocolRaw(DATABASE_SETTINGS_QUERY))
    await db.execProtocolRaw(applySettingsQuery([], true))
    return databaseSettings
  })
  const read = readSettingsReply(reply)
  if (!read.error) session.databaseSettings = read.settings
}
