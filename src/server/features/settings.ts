// Per-client session settings. PGlite has one session, so what one client SETs (search_path, TimeZone, DateStyle,
// application_name...) would be what the next client sees. Each client keeps its own list of settings that differ
// from the defaults (those its startup packet asked for and those its SETs left, read back after each SET); when the
// session passes to a client whose list differs from what the session holds, the session is reset and given that
// client's list. Clients that never SET anything share the empty list and pay nothing.

import { encodeParameterStatus, errorFields, textRows } from '../protocol/backend-messages.ts'
import { WireError, type SqlStateCode } from '../../errors.ts'
import { UNKNOWN_SETTINGS, type SharedSession } from '../session/session.ts'
import {
  DATABASE_SETTINGS_QUERY,
  SHOW_IDLE_IN_TRANSACTION_TIMEOUT,
  SNAPSHOT_QUERY,
  applySettingsQuery,
  checkSettingQuery,
  readSettingsReply,
  type Settings,
} from './settings-sql.ts'

export type { Settings } from './settings-sql.ts'

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

/** What a client's settings need of its backend (ClientBackend). */
export interface SettingsBackend {
  readonly session: SharedSession
  readonly client: { write(bytes: Uint8Array): void }
  /** Run the server's own statements in the session and return PGlite's whole reply. */
  capture(bytes: Uint8Array): Promise<Buffer>
  /** Keeping the session as the client left it failed: the log and the client (as a WARNING) are told `what`. */
  warn(what: string, error: Buffer): void
}

/**
 * The time settings the server enforces for the client itself, as its own backend would: a wait for the session
 * longer than statement_timeout is canceled (57014); idle longer than idle_session_timeout, or in a transaction longer
 * than idle_in_transaction_session_timeout, ends the connection (57P05, 25P03). PGlite acts on none of them.
 */
export type ClientTimeout = 'statement_timeout' | 'idle_session_timeout' | 'idle_in_transaction_session_timeout'

/** Postgres's time units, in ms. */
const UNIT_MS: Readonly<Record<string, number>> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
}

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
  /** timeoutMs() read from #settings as they were (each change makes a new list): asked on every change of state. */
  #timeouts: { of: Settings; ms: Map<ClientTimeout, number> } | null = null
  /** Its idle_in_transaction_session_timeout as a SET in the open block left it (ms), until the block ends; else null. */
  #inBlock: number | null = null

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

  /** The client's `setting` (ms; 0: none). */
  timeoutMs(setting: ClientTimeout): number {
    if (this.#inBlock !== null && setting === 'idle_in_transaction_session_timeout') return this.#inBlock
    if (this.#timeouts?.of !== this.#settings) this.#timeouts = { of: this.#settings, ms: new Map() }
    let ms = this.#timeouts.ms.get(setting)
    if (ms === undefined) {
      ms = this.#milliseconds(setting)
      this.#timeouts.ms.set(setting, ms)
    }
    return ms
  }

  #milliseconds(setting: string): number {
    // Setting names are case-insensitive.
    return millisecondsOf(this.#settings.find(([name]) => name.toLowerCase() === setting)?.[1])
  }

  /**
   * A SET in the client's open block: its idle_in_transaction_session_timeout is read again, for the block's next rest
   * (Postgres arms the timer with the value it has then; a SET LOCAL counts too). SHOW takes no snapshot: a REPEATABLE
   * READ block's is still its first statement's. Refused (a failed block), the value stays as it was.
   */
  async readInBlock(): Promise<void> {
    const shown = textRows(await this.#backend.capture(SHOW_IDLE_IN_TRANSACTION_TIMEOUT))[0]?.[0]
    if (typeof shown === 'string') this.#inBlock = millisecondsOf(shown)
  }

  /** The block ended: the client's settings say its timeout again. */
  blockEnded(): void {
    this.#inBlock = null
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
        this.#backend.warn(
          "could not read this database's settings (ALTER DATABASE ... SET); connected without them",
          reply.error,
        )
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
        if (check.error)
          this.#backend.warn(
            `could not apply this database's setting ${setting[0]} (ALTER DATABASE ... SET)`,
            check.error,
          )
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
    if (reported.length > 0)
      this.#backend.client.write(Buffer.concat(reported.map(([name, value]) => encodeParameterStatus(name, value))))
  }
}

/**
 * A time setting in ms (0: none): as read back from the session, a number of ms; as a startup packet or SHOW gives
 * it, perhaps with a unit (`-c statement_timeout=2s`, `5min`).
 */
function millisecondsOf(value: string | undefined): number {
  // Units are case-sensitive: Postgres refuses `1S`.
  const match = value === undefined ? null : /^\s*\+?(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*$/.exec(value)
  if (!match) return 0
  // Postgres rounds to whole ms: 500us is 0, no timeout.
  const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!)
  return Number.isFinite(ms) && ms > 0 ? ms : 0
}
