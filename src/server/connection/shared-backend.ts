// One client's backend over the shared session, as far as the client can tell: its messages run in the session while
// it holds it, and every reply is read once on its way to the client (names restored, notifications routed). Taking
// and leaving the session is handover.ts; the client's settings are features/settings.ts; LISTEN/NOTIFY is
// features/listen.ts.

import type { Logger } from '../../log.ts'
import { SqlState, WireError } from '../../errors.ts'
import { BackendCode } from '../protocol/codes.ts'
import { encodeNotice, errorFields } from '../protocol/backend-messages.ts'
import { ReplyReader, SessionChange, type Emit, type RewriteMessage } from '../protocol/replies.ts'
import { UNKNOWN_SETTINGS, type SharedSession } from '../session/session.ts'
import type { RideEnd } from '../session/rider.ts'
import { RelayFrom, type DirectReply } from '../session/databases.ts'
import type { ClientTimeout, Settings } from '../features/settings.ts'
import type { ClientState } from '../features/state.ts'
import { routeNotification } from '../features/listen.ts'
import {
  FunctionReplies,
  NEEDS_FUNCTION_REPLIES,
  ServerFunctions,
  contextFor,
  tellContext,
  type LockWait,
} from '../features/server-functions.ts'
import { UnnamedUse, unnamedUseOf } from '../protocol/unnamed-use.ts'
import { ClientSettings } from '../features/settings.ts'
import { releaseSession, releasesQuietly, takeSession, type Handover } from './handover.ts'
import { answersSeen, countWorking } from './traffic.ts'
import type { Backend, BackendClient, RideHooks } from '../features/backend.ts'
import { UnitRide, needsNothingOfSession, type RideContext } from './unit-ride.ts'
import { lentSocketTold, tryLend, type LendingClient } from './lent-socket.ts'

type Output = 'client' | 'nowhere' | Buffer[]

export class ClientBackend implements Backend {
  readonly session: SharedSession
  readonly #client: BackendClient
  readonly #state: ClientState
  readonly #log: Logger
  readonly #reader = new ReplyReader()
  /** Where PGlite's output goes now: to the client, into a list (captured), or nowhere (the client left). */
  #output: Output = 'client'
  /** For this call, the messages the reader holds for #rewrite (decided once per call). */
  #rewriteNow: RewriteMessage | null = null
  /** The same for a call whose output is captured. */
  #captureRewrite: RewriteMessage | null = null
  /** This client's settings (its startup parameters and its SETs), given to the session when it takes it. */
  readonly #settings = new ClientSettings(this)
  /** For a call whose statements use the functions that answer per backend: what they tell the server. */
  #functions: FunctionReplies | null = null
  /** A reply written straight to the client's socket by the database's thread (used again for each such call). */
  readonly #direct: DirectReply = {
    fd: -1,
    relayFrom: 0,
    summary: (summary) => this.#reader.absorb(summary),
    blocked: (isBlocked) => this.#client.output.directBlocked(isBlocked),
    diverted: (framing) => this.#client.output.diverted(framing),
    raw: (bytes) => this.#client.raw(bytes),
    mayEndLazily: () => this.#client.queuedBatches === 0 && this.session.scheduler.waiting === 0,
    lend: null,
    handBack: (kind, bytes) => lentSocketTold(this.#lending, kind, bytes),
  }
  /** What a lend of the client's socket is decided on (lent-socket.ts). */
  readonly #lending: LendingClient
  /** The call running now writes its reply straight to the client. */
  #directNow = false
  #lockWait: LockWait | null = null

  /** What taking and releasing the session uses (handover.ts). */
  readonly #handover: Handover

  constructor(client: BackendClient, session: SharedSession, state: ClientState, log: Logger) {
    this.#client = client
    this.session = session
    this.#state = state
    this.#log = log
    this.#handover = { backend: this, client, session, state, reader: this.#reader, settings: this.#settings, log }
    this.#lending = {
      session,
      client,
      state,
      canRide: () => this.canRide,
      changes: () => this.#reader.changes,
      callsFunctions: () => this.#functions !== null,
      holdsSession: () => !this.#reader.atRest,
    }
  }

  /** The connection this backend answers to, as the session knows it. */
  get client(): BackendClient {
    return this.#client
  }

  get isOwner(): boolean {
    return this.session.scheduler.isOwner(this.#client)
  }

  /** The transaction status the client was last told ('I' while it holds nothing). */
  get txStatus(): number {
    return this.#reader.txStatus
  }

  /** Nothing of this client is open in the session: no transaction, pipeline or COPY (see ReplyReader.atRest). */
  get atRest(): boolean {
    return this.#reader.atRest
  }

  /** A pipeline (or COPY) of this client is open in PGlite (see ReplyReader.pipelineOpen). */
  get pipelineOpen(): boolean {
    return this.#reader.pipelineOpen
  }

  get errorPending(): boolean {
    return this.#reader.errorPending
  }

  /** Settings from the startup packet that differ from what every client is told (`named`: all it named, lower-case). */
  startWith(settings: Settings, named?: ReadonlySet<string>): void {
    this.#settings.startWith(settings, named)
    this.#state.temp.firstInSearchPath = this.#settings.tempSchemaFirst
  }

  /** The client just became the owner: at rest between owners, the session drops what others left, takes its settings. */
  tookSession(): Promise<void> {
    return takeSession(this.#handover)
  }

  /** Run complete messages as the owner; PGlite's replies stream to the client. */
  run(bytes: Uint8Array, functions = 0, last = false): Promise<void> {
    return this.#execute(bytes, 'client', true, functions, last)
  }

  /**
   * Run messages as the owner and return PGlite's whole reply instead of sending it: the server's own statements,
   * whose effects on the session are not the client's doing, or (`asClient`) a client's whose reply the server edits
   * before sending (a COPY), whose effects are.
   */
  async capture(bytes: Uint8Array, asClient = false, functions = 0): Promise<Buffer> {
    const chunks: Buffer[] = []
    await this.#execute(bytes, chunks, asClient, functions)
    return Buffer.concat(chunks)
  }

  get lockTimeoutMs(): number {
    return this.#settings.lockTimeoutMs
  }

  timeoutMs(setting: ClientTimeout): number {
    return this.#settings.timeoutMs(setting)
  }

  takeLockWait(): LockWait | null {
    const wait = this.#lockWait
    this.#lockWait = null
    return wait
  }

  /** Run messages whose replies nobody reads (the client is gone). */
  runUnread(bytes: Uint8Array): Promise<void> {
    return this.#execute(bytes, 'nowhere')
  }

  /** One call into PGlite, its output going to `output`: the client, a list of chunks, or nowhere. */
  async #execute(
    bytes: Uint8Array,
    output: Output,
    asClient = output === 'client',
    functions = 0,
    last = false,
  ): Promise<void> {
    if (functions & ServerFunctions.Context) await this.#tellContext(functions)
    this.#beginCall(output, asClient, functions)
    // Before #directReply, which lends a socket beside waiters only while one database works (lent-socket.ts).
    countWorking(this.session)
    const direct = output === 'client' ? this.#directReply(bytes, last) : null
    if (direct) this.#client.output.beginDirect()
    else this.#client.output.cork()
    try {
      await this.session.execute(bytes, this.#sink, direct, output === 'client')
    } finally {
      if (direct) {
        this.#directNow = false
        this.#client.output.endDirect()
        if (direct.lend) this.#client.output.endLend()
      }
      this.#endCall(direct === null)
    }
    // A set_config() may have changed a setting, which no reply shows: read the client's settings back at rest.
    if (functions & ServerFunctions.Settings && asClient) this.#reader.noteChanges(SessionChange.Settings)
    this.#state.statements.ran(bytes)
    // What a capture did with the session's unnamed statement: a Query drops it; a Parse of the server's own leaves it
    // nobody's, one of the client's messages taken over (a stand-in Query, a COPY) makes it the client's. A unit sent
    // on to the client says what it did itself (BatchRunner).
    if (output !== 'client') {
      const use = unnamedUseOf(bytes)
      if (use & UnnamedUse.Dropped) this.session.unnamedStatementOwner = null
      else if (use & UnnamedUse.Parsed) this.session.unnamedStatementOwner = asClient ? this.#client : null
    }
    const told = this.#functions
    if (told) {
      this.#functions = null
      this.#lockWait = told.lockWait
      for (const pid of told.terminated) this.#client.answered(pid)
      // pg_terminate_backend(pg_backend_pid()): as Postgres ends the backend in the middle of the statement.
      if (told.terminatingSelf)
        throw new WireError('FATAL', SqlState.AdminShutdown, 'terminating connection due to administrator command')
    }
  }

  #beginCall(output: Output, asClient: boolean, functions: number): void {
    this.#output = output
    this.#functions =
      (functions & NEEDS_FUNCTION_REPLIES) === 0
        ? null
        : new FunctionReplies(this.#client, this.session, this.#state.signaledEarly)
    // Names to restore, notifications to route, what the functions tell: hold those messages for the whole call.
    this.#rewriteNow =
      this.#functions || this.#state.statements.used || this.session.listeners.size > 0 ? this.#rewrite : null
    // A capture of the client's own messages is the client's reply, edited before it is sent: read as if sent.
    this.#captureRewrite = asClient ? this.#rewriteNow : this.#functions ? this.#rewrite : null
    this.#reader.startCall(asClient)
  }

  /** `corked`: the call's replies were held for one send (cork), not written straight to the client. */
  #endCall(corked: boolean): void {
    if (corked) this.#client.output.uncork()
    this.#reader.endCall()
    this.#output = 'client'
  }

  /**
   * Whether the database's thread may write this call's reply straight to the client's socket: a database that can,
   * and a socket it can write to now (see BackendClient.directFd). From the first message the server rewrites (names
   * restored, notifications routed, what the functions tell), the reply comes through the server after all.
   */
  #directReply(bytes: Uint8Array, last: boolean): DirectReply | null {
    if (this.session.db.directReplies !== true) return null
    const fd = this.#client.output.directFd()
    if (fd < 0) return null
    const direct = this.#direct
    direct.fd = fd
    direct.relayFrom = this.#relayFrom()
    direct.lend = last ? tryLend(this.#lending, bytes) : null
    this.#directNow = true
    return direct
  }

  /** As #rewrite: names restored in errors and notices, what the functions tell, notifications routed. */
  #relayFrom(): number {
    return (
      (this.#functions || this.#state.statements.used ? RelayFrom.ErrorResponse | RelayFrom.NoticeResponse : 0) |
      (this.session.listeners.size > 0 ? RelayFrom.NotificationResponse : 0)
    )
  }

  /** The client is gone while its call runs: a reply written straight to it stops (the rest goes nowhere). */
  abandonReply(): void {
    if (this.#directNow && !this.session.combined.abandon(this.#client)) this.session.db.abandonDirectReply?.()
  }

  // --- A unit in a combined call (session/combined-calls.ts) ---

  /** Whether this client's next unit can ride in a combined call (unit-ride.ts needsNothingOfSession). */
  get canRide(): boolean {
    return needsNothingOfSession(this.#state, this.#settings.startupPending)
  }

  ride(bytes: Buffer, hooks: RideHooks, last: boolean): Promise<RideEnd> {
    return this.session.combined.ride(new UnitRide((this.#rides ??= this.#rideContext()), bytes, hooks, last))
  }

  /** What this client's rides do with it (unit-ride.ts), made once. */
  #rides: RideContext | null = null

  #rideContext(): RideContext {
    const client = this.#client
    const reader = this.#reader
    const direct = this.#direct
    return {
      member: client,
      sink: this.#sink,
      settingsKey: () => this.#settings.rideKey,
      prepare: () => this.tookSession(),
      openDirect: () => {
        if (this.session.db.directReplies !== true) return null
        const fd = client.output.directFd()
        if (fd < 0) return null
        this.#directNow = true
        client.output.beginDirect()
        return { fd, relayFrom: this.#relayFrom() }
      },
      closeDirect: () => {
        this.#directNow = false
        client.output.endDirect()
      },
      summary: direct.summary,
      blocked: direct.blocked,
      diverted: direct.diverted,
      raw: direct.raw,
      begin: (corked) => {
        // The session is this client's, at rest, until its unit ends.
        reader.acquired()
        countWorking(this.session)
        this.#beginCall('client', true, 0)
        if (corked) client.output.cork()
      },
      end: (corked, ran, unit) => {
        this.#endCall(corked)
        if (!ran) return
        this.#state.statements.ran(unit)
        this.#settings.rode()
      },
      get atRest() {
        return reader.atRest
      },
      quiet: (last) => releasesQuietly(this.#handover, last),
      release: (last) => this.release(last),
    }
  }

  /** Tell the session who runs now, the server's clients and this database's locks (and make its functions once). */
  async #tellContext(functions: number): Promise<void> {
    if (functions & ServerFunctions.Activity) await answersSeen()
    const context = contextFor(this.#client, this.session, this.#state.signaledEarly, functions)
    await tellContext((bytes) => this.capture(bytes), this.session, context, this.#reader.pipelineOpen)
  }

  /** PGlite's output, a view of its memory (the reader copies what it passes on). */
  readonly #sink = (chunk: Uint8Array, owned = false): void | Promise<void> => {
    const output = this.#output
    if (output === 'client') {
      // Output of a direct reply reaches here from the first message the server rewrites: the socket is ours again.
      if (this.#directNow) this.#client.output.relayed()
      this.#reader.feed(chunk, this.#send, this.#rewriteNow, owned)
      // A unit answered in full goes now, though the call runs on (pipelined units): Postgres flushes at
      // ReadyForQuery, and a client may act on that answer (postgres.js cancels the next query it piped).
      if (this.#reader.atReadyForQuery) this.#client.output.uncork()
      return this.#client.output.waitForReader() ?? undefined
    }
    if (output === 'nowhere') this.#reader.feed(chunk, null, null)
    else this.#reader.feed(chunk, (bytes) => output.push(bytes), this.#captureRewrite, owned)
  }

  async cancelRunning(): Promise<boolean> {
    return this.isOwner && this.#output === 'client' && (await this.session.cancelRunning()) === 'canceled'
  }

  readonly #send: Emit = (bytes) => {
    // After a pg_terminate_backend of itself the client gets nothing more of the call, only the FATAL.
    if (!this.#functions?.terminatingSelf) this.#client.write(bytes)
  }
  readonly #rewrite: RewriteMessage = (message) => {
    if (message[0] === BackendCode.NotificationResponse)
      return routeNotification(this, this.#state.listenCommands, message)
    const functions = this.#functions
    const read = functions ? functions.read(message, this.#output === 'client') : message
    return read && this.#state.statements.restore(read)
  }

  /** The client is at rest: record what it changed in the session, then let the next client have it (handover.ts). */
  release(last = false): Promise<void> {
    return releaseSession(this.#handover, last)
  }

  /** Replies of the client's that changed a setting so far: a new count means a new SET. */
  get settingsChanged(): number {
    return this.#reader.settingsChanged
  }

  /** A SET in the client's open block may have changed its idle-in-transaction timeout (ClientSettings.readInBlock). */
  readTimeoutInBlock(): Promise<void> {
    return this.#settings.readInBlock()
  }

  /** Changes (SessionChange bits) that the server itself dealt with (DISCARD ALL, a fresh database) need no recording. */
  forgetChanges(mask: number): void {
    this.#reader.forgetChanges(mask)
  }

  /** The client's DISCARD ALL put its settings back to the defaults. */
  settingsDiscarded(): void {
    this.#settings.discarded()
    this.#state.temp.firstInSearchPath = false
  }

  /** The client left while a SET of its may still be in the session: the next owner resets it. */
  leftSettingsBehind(): void {
    const changes = this.#reader.takeChanges()
    if (changes & SessionChange.Settings) this.session.appliedSettings = UNKNOWN_SETTINGS
    if (changes & SessionChange.DatabaseSettings) this.session.databaseSettings = null
  }

  /** Keeping the session as the client left it failed: the log gets `what`, and so does the client, as a WARNING it can read. */
  warn(what: string, error: Buffer): void {
    const { code, message } = errorFields(error)
    this.#log.warn(what, { error: message })
    this.#client.write(encodeNotice(code, `${what}: ${message}`, 'WARNING'))
  }
}
