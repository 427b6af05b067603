// The one PGlite session that all connections share: its scheduler, the single way batches reach PGlite,
// and what every connection is told at startup. One SharedSession per PGlite instance, however many servers use it.

import { SqlState, WireError, isPGliteFatal } from '../../errors.ts'
import { BackendCode, SYNC_MESSAGE, StartupCode, encodeAuthenticationOk, encodeParameterStatus } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { listenQuery } from '../client/listen.ts'
import { OwnerScheduler, SchedulerClosedError } from './scheduler.ts'

export type RawSink = (chunk: Uint8Array) => void

/** A connection as the session sees it: something that can be told the session is gone, or handed a notification. */
export interface SessionMember {
  /** The process id the client was told in BackendKeyData (named in errors about who holds the session). */
  readonly processId: number
  terminate(error: WireError): Promise<void>
  /** Deliver a NotificationResponse (whole message) to this client. */
  notify(message: Buffer): void
  /** Parse messages that make this client's prepared statements again. */
  preparedStatementFrames(): Buffer[]
}

/**
 * What a session needs of its database: PGlite itself, or a PGlite in a worker thread (db-thread.ts). The main
 * database a server is given is always an in-process PGlite; other databases may be either.
 */
export interface SessionDb {
  readonly waitReady: Promise<void>
  runExclusive<T>(fn: () => Promise<T>): Promise<T>
  execProtocolRaw(message: Uint8Array, options?: { syncToFs?: boolean }): Promise<Uint8Array>
  execProtocolRawStream(message: Uint8Array, options: { onRawData: (chunk: Uint8Array) => void; syncToFs?: boolean }): Promise<void>
}

const discard: RawSink = () => {}

const sessions = new WeakMap<SessionDb, SharedSession>()

export function sessionFor(db: SessionDb): SharedSession {
  let session = sessions.get(db)
  if (!session) {
    session = new SharedSession(db)
    sessions.set(db, session)
  }
  return session
}

export class SharedSession {
  db: SessionDb
  readonly scheduler = new OwnerScheduler<SessionMember>()
  readonly members = new Set<SessionMember>()
  /** Set once PGlite threw something that leaves it unusable; every later call fails fast. */
  dead: Error | null = null
  readonly #deadListeners = new Set<(error: Error) => void>()
  #sink: RawSink | null = null
  /** PGlite keeps the last onRawData callback after a call returns, so route through one that checks who is current. */
  readonly #onRawData = (chunk: Uint8Array): void => {
    this.#sink?.(chunk)
  }
  /** Settings Postgres reports with ParameterStatus (lower-case names), with the values every client is told at startup. */
  readonly reportedDefaults = new Map<string, string>()
  /** The client whose Parse made the session's unnamed prepared statement (null: nobody's, or PGlite's own). */
  unnamedStatementOwner: SessionMember | null = null
  /** The settings key (see settings.ts) of what the session holds now: '' is the defaults. */
  appliedSettings = ''
  /** Close messages for statements whose clients left while another client held the session. */
  #abandoned: Buffer[] = []
  /** Who listens on each channel. PGlite's session listens on exactly these channels whenever it is at rest. */
  readonly listeners = new Map<string, Set<SessionMember>>()
  /** Channels a departed client listened on: unlistened at the next rest unless someone listens there again. */
  #unneededChannels = new Set<string>()
  #startupPrefix: Promise<Buffer> | null = null
  /** The resolved startup prefix, once `startupPrefix()` has finished (servers await it before listening). */
  startupPrefixNow: Buffer | null = null

  constructor(db: SessionDb) {
    this.db = db
  }

  /** Run complete frontend messages in PGlite as one call, streaming its output to `sink`. Caller must own the scheduler. */
  async execute(bytes: Uint8Array, sink: RawSink): Promise<void> {
    if (this.dead) throw this.dead
    await this.db.runExclusive(async () => {
      this.#sink = sink
      try {
        await this.db.execProtocolRawStream(bytes, { onRawData: this.#onRawData })
      } catch (error) {
        if (isPGliteFatal(error)) this.markDead(error)
        throw error
      } finally {
        this.#sink = null
      }
    })
  }

  get hasAbandonedWork(): boolean {
    return this.#abandoned.length > 0 || this.#unneededChannels.size > 0
  }

  /** `member` listens on `channel` from now on. */
  listen(member: SessionMember, channel: string): void {
    let members = this.listeners.get(channel)
    if (!members) this.listeners.set(channel, (members = new Set()))
    members.add(member)
  }

  /**
   * `member` no longer listens on `channel` (null: on any). Returns the channels nobody listens on any more; the
   * caller unlistens them now if it holds the session, or `abandonChannels` leaves that to the next owner.
   */
  unlisten(member: SessionMember, channel: string | null): string[] {
    const unneeded: string[] = []
    for (const name of channel === null ? [...this.listeners.keys()] : [channel]) {
      const members = this.listeners.get(name)
      if (!members?.delete(member) || members.size > 0) continue
      this.listeners.delete(name)
      unneeded.push(name)
    }
    return unneeded
  }

  abandonChannels(channels: string[]): void {
    for (const channel of channels) this.#unneededChannels.add(channel)
  }

  abandonStatements(closes: Buffer[]): void {
    for (const close of closes) this.#abandoned.push(close)
  }

  /** Deallocate departed clients' statements and unlisten their channels. Only for an owner whose session is at rest. */
  async closeAbandonedWork(): Promise<void> {
    if (!this.hasAbandonedWork || this.dead) return
    const frames = this.#abandoned
    this.#abandoned = []
    frames.push(Buffer.from(SYNC_MESSAGE))
    // Someone may have started listening on a departed client's channel since: keep those.
    const unneeded = [...this.#unneededChannels].filter((channel) => !this.listeners.has(channel))
    this.#unneededChannels.clear()
    if (unneeded.length > 0) frames.push(listenQuery(unneeded, 'UNLISTEN'))
    await this.execute(Buffer.concat(frames), discard)
  }

  /**
   * The database was reset: from now on the session is `db`, a fresh instance at rest with default settings.
   * Everyone's prepared statements are made again there and the channels somebody listens on are listened on
   * again, so clients carry on as if nothing happened but the data. Only for the owner of a session at rest.
   */
  async replaceDb(db: SessionDb): Promise<void> {
    sessions.delete(this.db)
    this.db = db
    sessions.set(db, this)
    this.unnamedStatementOwner = null
    this.appliedSettings = ''
    this.#abandoned = []
    this.#unneededChannels.clear()
    const frames: Buffer[] = []
    // A Sync after each: one that fails (its table is not in the migrated schema) must not skip the rest.
    for (const member of this.members) for (const parse of member.preparedStatementFrames()) frames.push(parse, Buffer.from(SYNC_MESSAGE))
    if (this.listeners.size > 0) frames.push(listenQuery(this.listeners.keys(), 'LISTEN'))
    if (frames.length > 0) await this.execute(Buffer.concat(frames), discard)
  }

  markDead(cause: unknown): void {
    if (this.dead) return
    this.dead = new WireError('FATAL', SqlState.InternalError, 'the database stopped unexpectedly (PGlite failed); reconnect after a restart', { cause })
    this.scheduler.close(new SchedulerClosedError('the database stopped'))
    for (const listener of this.#deadListeners) listener(this.dead)
  }

  onDead(listener: (error: Error) => void): () => void {
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
    const reply = await this.db.runExclusive(() => this.db.execProtocolRaw(startupMessage({ user: 'postgres', database: 'postgres' })))
    const parts: Buffer[] = [encodeAuthenticationOk()]
    const view = Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength)
    forEachFrame(view, (code, offset, length) => {
      if (code !== BackendCode.ParameterStatus) return
      const body = view.subarray(offset + 5, offset + length)
      const nameEnd = body.indexOf(0)
      const valueEnd = body.indexOf(0, nameEnd + 1)
      const name = body.toString('utf8', 0, nameEnd)
      const value = body.toString('utf8', nameEnd + 1, valueEnd)
      this.reportedDefaults.set(name.toLowerCase(), value)
      parts.push(encodeParameterStatus(name, value))
    })
    return Buffer.concat(parts)
  }
}

export function startupMessage(params: Record<string, string>): Buffer {
  const pairs = Object.entries(params).flatMap(([k, v]) => [k, v])
  const body = Buffer.from(pairs.join('\0') + '\0\0')
  const buf = Buffer.allocUnsafe(8 + body.length)
  buf.writeInt32BE(8 + body.length, 0)
  buf.writeInt32BE(StartupCode.Protocol3, 4)
  body.copy(buf, 8)
  return buf
}
