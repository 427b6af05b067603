// The one PGlite session that all connections of a database share: its scheduler, the single way messages reach
// PGlite, what the session holds on behalf of clients (settings applied, channels listened on, statements left
// behind) and what every connection is told at startup. One SharedSession per database instance.

import { SqlState, WireError, isPGliteFatal } from '../../errors.ts'
import { BackendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { encodeAuthenticationOk, encodeParameterStatus, readParameterStatus } from '../protocol/backend-messages.ts'
import { SYNC, encodeQuery, encodeStartupMessage } from '../protocol/frontend-messages.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { dropUnloadableConversions } from './conversions.ts'
import { guardPGlite } from './pglite-guards.ts'
import { reportedSettingsOf, type ReportedSettings } from '../protocol/repeated-reports.ts'
import { needsSyncToFs, type DirectReply, type OutputSink, type SessionDb, type UnitsDirect } from './databases.ts'
import { AdvisoryLocks } from './advisory-locks.ts'
import { Listeners, listenSql } from './listeners.ts'
import { CombinedCalls } from './combined-calls.ts'
import type { SessionHolder, SessionMember } from './members.ts'
import { OwnerScheduler, SchedulerClosedError } from './scheduler.ts'

export type { SessionHolder, SessionMember } from './members.ts'

const discard: OutputSink = () => {}

const sessions = new WeakMap<SessionDb, SharedSession>()

/** The session of `db`: one per database instance, however many servers use it. */
export function sessionFor(db: SessionDb): SharedSession {
  let session = sessions.get(db)
  if (!session) session = new SharedSession(db)
  return session
}

/** The settings key (see features/settings.ts) of a session whose settings nobody knows: the next owner resets them. */
export const UNKNOWN_SETTINGS = '\u0000unknown'

export class SharedSession {
  db: SessionDb
  readonly scheduler = new OwnerScheduler<SessionHolder>()
  /** Several clients' units in one call, when the database can (combined-calls.ts). */
  readonly combined: CombinedCalls = new CombinedCalls(this)
  /** Units the database's thread read from a client's lent socket and ran itself (engine/lent-reads.ts). */
  lentUnits = 0
  /** The window in which the database last ran a call (connection/traffic.ts countWorking). */
  trafficWindow = -1
  readonly members = new Set<SessionMember>()
  /** Set once PGlite threw something that leaves it unusable; every later call fails fast. */
  dead: WireError | null = null
  readonly #deadListeners = new Set<(error: WireError) => void>()
  #sink: OutputSink | null = null
  /**
   * What PGlite in this thread reported last, to leave its repeats out of a client's reply (a database's thread does
   * that itself: null).
   */
  #reported: ReportedSettings | null = null
  /** The call running now writes a client's reply: a repeated ParameterStatus is left out of it. */
  #clientReply = false
  /** PGlite keeps the last onRawData callback after a call returns, so route through one that checks who is current. */
  readonly #onRawData = (chunk: Uint8Array, owned?: boolean): void | Promise<void> => {
    const kept = this.#reported === null ? chunk : this.#reported.pass(chunk, this.#clientReply)
    if (kept === chunk) return this.#sink?.(chunk, owned)
    if (kept.length > 0) return this.#sink?.(kept, true)
  }
  /** Settings Postgres reports with ParameterStatus (lower-case names), with the values every client is told at startup. */
  readonly reportedDefaults = new Map<string, string>()
  /**
   * The client whose own unnamed prepared statement the session's is: the one its Parse made, or none once closed for
   * it (null: nobody's, or PGlite's own). A Query, the server's too, leaves it nobody's.
   */
  unnamedStatementOwner: SessionMember | null = null
  /** The settings key of what the session holds now: '' is the defaults. */
  appliedSettings = ''
  /**
   * What ALTER DATABASE ... SET and ALTER ROLE ... SET give a new client of this database, as Postgres applies them
   * at connect (every client runs as the same role here), when it first takes the session; null: to be read by the
   * next new client that does.
   */
  databaseSettings: ReadonlyArray<readonly [name: string, value: string]> | null = null
  /** Close messages for statements whose clients left while another client held the session. */
  #abandonedStatements: Buffer[] = []
  readonly listeners = new Listeners<SessionMember>()
  /** Every client's advisory locks in this database (PGlite's backend would hold them all as one). */
  readonly advisoryLocks = new AdvisoryLocks()
  /** The functions that answer per client are made in the session's pg_temp (features/server-functions-session.ts). */
  serverFunctionsInstalled = false
  /**
   * Why the encoding conversions PGlite cannot load are still in the engine's catalog (conversions.ts), or null: none
   * is (or not known yet).
   */
  conversionsKept: string | null = null
  #startupPrefix: Promise<Buffer> | null = null
  /** The resolved startup prefix, once `startupPrefix()` has finished (servers await it before listening). */
  startupPrefixNow: Buffer | null = null

  constructor(db: SessionDb) {
    this.db = db
    this.#adopt(db)
  }

  /** `db` is the session's engine from now on: guarded, and its repeated reports left out unless its thread does it. */
  #adopt(db: SessionDb): void {
    sessions.delete(this.db)
    this.db = db
    guardPGlite(db)
    this.#reported = db.directReplies === true ? null : reportedSettingsOf(db)
    sessions.set(db, this)
  }

  /**
   * Run complete frontend messages in PGlite as one call, streaming its output to `sink` (with `direct`, only what the
   * database's thread does not write straight to the client; `clientReply`: the output is a client's reply, passed
   * on as it is). Caller must own the scheduler.
   */
  execute(bytes: Uint8Array, sink: OutputSink, direct: DirectReply | null = null, clientReply = false): Promise<void> {
    return this.#call(sink, clientReply, (db) => {
      const syncToFs = needsSyncToFs(db)
      return db.execProtocolRawStream(bytes, { onRawData: this.#onRawData, syncToFs, direct, clientReply })
    })
  }

  /** Units of several clients in one call (SessionDb.execProtocolUnits, which the database has). Caller must own the scheduler. */
  executeUnits(
    units: readonly Uint8Array[],
    sink: OutputSink,
    onUnitEnd: (skipped: boolean) => void,
    direct: UnitsDirect | null = null,
  ): Promise<void> {
    return this.#call(sink, false, (db) =>
      db.execProtocolUnits!(units, { onRawData: this.#onRawData, onUnitEnd, direct }),
    )
  }

  /** One unit more for the call of units running now (SessionDb.addUnit); false if it takes none. */
  addUnit(unit: Uint8Array, target: { fd: number; relayFrom: number } | null): boolean {
    return this.dead === null && (this.db.addUnit?.(unit, target) ?? false)
  }

  async #call(sink: OutputSink, clientReply: boolean, call: (db: SessionDb) => Promise<void>): Promise<void> {
    if (this.dead) throw this.dead
    const db = this.db
    await db.runExclusive(async () => {
      this.#sink = sink
      this.#clientReply = clientReply
      this.#reported?.startCall()
      try {
        await call(db)
      } catch (error) {
        if (isPGliteFatal(error)) this.markDead(error)
        throw error
      } finally {
        this.#sink = null
      }
    })
  }

  /**
   * Stop the call running now (the owner's statement), as a CancelRequest does: 'canceled', or '' if none ran or none
   * can be. In a call of units, unit `unit`'s statement; one that has not begun is not run ('skipped': answer it).
   */
  async cancelRunning(unit?: number): Promise<'canceled' | 'skipped' | ''> {
    if (this.#sink === null || this.db.cancel === undefined) return ''
    const result = await this.db.cancel(unit)
    return result === true ? 'canceled' : result === false ? '' : result
  }

  /** Clients waiting for the session: on their own, or with their units in a batch for a combined call. */
  get waitingClients(): number {
    const { combined } = this
    return this.scheduler.waiting - combined.queued + combined.waiting
  }

  get hasAbandonedWork(): boolean {
    return this.#abandonedStatements.length > 0 || this.listeners.hasAbandoned
  }

  abandonStatements(closes: Buffer[]): void {
    for (const close of closes) this.#abandonedStatements.push(close)
  }

  /** Deallocate departed clients' statements and unlisten their channels. Only for an owner whose session is at rest. */
  async closeAbandonedWork(): Promise<void> {
    if (!this.hasAbandonedWork || this.dead) return
    const frames = this.#abandonedStatements
    this.#abandonedStatements = []
    frames.push(SYNC)
    // Someone may have started listening on a departed client's channel since: keep those.
    const unneeded = this.listeners.takeAbandoned()
    if (unneeded.length > 0) {
      frames.push(encodeQuery(listenSql(unneeded, 'UNLISTEN')))
      this.unnamedStatementOwner = null
    }
    await this.execute(Buffer.concat(frames), discard)
  }

  /**
   * The database was reset: from now on the session is `db`, a fresh instance at rest with default settings.
   * Everyone's prepared statements are made again there and the channels somebody listens on are listened on
   * again, so clients carry on as if nothing happened but the data. Only for the owner of a session at rest.
   */
  async replaceDb(db: SessionDb): Promise<void> {
    this.#adopt(db)
    this.#forgetEngineState()
    this.conversionsKept = await dropUnloadableConversions((bytes) => this.#capture(bytes))
    // A Sync after each: one that fails (its table is not in the migrated schema) must not skip the rest; it is
    // tried again when its client next takes the session.
    await remakeStatements([...this.members], (bytes) => this.#capture(bytes))
    if (this.listeners.size > 0)
      await this.execute(encodeQuery(listenSql(this.listeners.channels(), 'LISTEN')), discard)
  }

  async #capture(bytes: Buffer): Promise<Buffer> {
    const chunks: Buffer[] = []
    await this.execute(bytes, (chunk) => void chunks.push(Buffer.from(chunk)))
    return Buffer.concat(chunks)
  }

  /** A new engine under the session: nothing the old one held for its clients is there. */
  #forgetEngineState(): void {
    this.unnamedStatementOwner = null
    this.appliedSettings = ''
    this.databaseSettings = null
    this.serverFunctionsInstalled = false
    this.#abandonedStatements = []
    this.listeners.forgetAbandoned()
  }

  markDead(cause: unknown): void {
    if (this.dead) return
    const why = cause instanceof Error ? `: ${cause.message}` : ''
    this.dead = new WireError(
      'FATAL',
      SqlState.InternalError,
      `the database stopped unexpectedly (PGlite failed${why}); reconnect to try again`,
      { cause },
    )
    this.scheduler.close(new SchedulerClosedError('the database stopped'))
    for (const listener of this.#deadListeners) listener(this.dead)
  }

  /**
   * The database died and its owner reopened it as `db` (its data dir, or what could be saved of it): the session
   * serves again, empty (every client it had was ended when it died).
   */
  recover(db: SessionDb): void {
    this.#adopt(db)
    this.dead = null
    this.#forgetEngineState()
    // Ahead of any client's call (PGlite's lock orders them): the database may have been reopened from a copy that has them.
    db.runExclusive(async () => (this.conversionsKept = await dropUnloadableConversions(rawQuery(db)))).catch(
      (error: unknown) => (this.conversionsKept = error instanceof Error ? error.message : String(error)),
    )
    this.scheduler.reopen()
  }

  onDead(listener: (error: WireError) => void): () => void {
    this.#deadListeners.add(listener)
    return () => this.#deadListeners.delete(listener)
  }

  /**
   * AuthenticationOk plus the ParameterStatus messages PGlite itself sends at startup (server_version,
   * client_encoding, DateStyle, ...), learned once by running a StartupMessage through PGlite.
   */
  startupPrefix(): Promise<Buffer> {
    this.#startupPrefix ??= this.#learnStartupPrefix().then((prefix) => (this.startupPrefixNow = prefix))
    return this.#startupPrefix
  }

  async #learnStartupPrefix(): Promise<Buffer> {
    await this.db.waitReady
    const reply = await this.db.runExclusive(async () => {
      // Copied: PGlite's next call reuses the buffer its reply is in.
      const startup = Buffer.from(
        await this.db.execProtocolRaw(encodeStartupMessage({ user: 'postgres', database: 'postgres' })),
      )
      // After a StartupMessage Postgres reports its GUC_REPORT settings again at the next ReadyForQuery: that is this
      // Sync's, not the first client's (whose ParameterStatus would read as a SET of its own, and cost a read-back).
      await this.db.execProtocolRaw(SYNC)
      this.conversionsKept = await dropUnloadableConversions(rawQuery(this.db))
      return startup
    })
    const parts: Buffer[] = [encodeAuthenticationOk()]
    const view = Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength)
    forEachFrame(view, (code, offset, length) => {
      if (code !== BackendCode.ParameterStatus) return
      const [name, value] = readParameterStatus(view.subarray(offset + HEADER_LENGTH, offset + length))
      this.reportedDefaults.set(name.toLowerCase(), value)
      parts.push(encodeParameterStatus(name, value))
    })
    return Buffer.concat(parts)
  }
}

/** A Query's whole reply from `db`, outside any client's call (copied: PGlite's next call reuses the buffer). */
function rawQuery(db: SessionDb): (query: Buffer) => Promise<Buffer> {
  return async (query) => Buffer.from(await db.execProtocolRaw(query))
}

/**
 * Make `members`' prepared statements again (each Parse with a Sync of its own; `only`: just these, of the one member)
 * through `capture`; each member is told which failed.
 */
export async function remakeStatements(
  members: readonly SessionMember[],
  capture: (bytes: Buffer) => Promise<Buffer>,
  only?: readonly Buffer[],
): Promise<number> {
  const made: Array<[SessionMember, Buffer]> = []
  for (const member of members) for (const parse of only ?? member.preparedStatementFrames()) made.push([member, parse])
  if (made.length === 0) return 0
  const failed = failedUnits(await capture(Buffer.concat(made.flatMap(([, parse]) => [parse, SYNC]))), made.length)
  const byMember = new Map<SessionMember, Buffer[]>()
  made.forEach(([member, parse], i) => {
    if (failed[i]) byMember.set(member, [...(byMember.get(member) ?? []), parse])
  })
  for (const [member, frames] of byMember) member.remakeFailed(frames)
  return made.length
}

/** For each of `count` Sync-ended units answered in `reply`, whether it failed. */
export function failedUnits(reply: Buffer, count: number): boolean[] {
  const failed = new Array<boolean>(count).fill(false)
  let unit = 0
  forEachFrame(reply, (code) => {
    if (code === BackendCode.ErrorResponse && unit < count) failed[unit] = true
    else if (code === BackendCode.ReadyForQuery) unit++
  })
  return failed
}
