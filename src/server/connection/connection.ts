// One client socket: its messages read into batches and run in order, what it is sent, and its end, which leaves
// nothing of it in the session (its place there is membership.ts). In: #onData -> FrameReader -> BatchRunner (batch.ts)
// -> MessageReader (a handler per message) -> ClientBackend -> PGlite. Out: PGlite -> ReplyReader -> write.

import type { Socket } from 'node:net'
import type { SecureContext } from 'node:tls'
import { randomInt } from 'node:crypto'
import { WireError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { FrontendCode, TxStatus, maxMessageLength } from '../protocol/codes.ts'
import { FrameReader, type Frames } from '../protocol/frames.ts'
import { onlyTerminate } from '../protocol/frontend-messages.ts'
import { SchedulerClosedError } from '../session/scheduler.ts'
import type { ClientActivity } from '../features/server-functions-session.ts'
import type { SharedSession } from '../session/session.ts'
import { ClientState } from '../features/state.ts'
import { hexDump } from '../trace/hex-dump.ts'
import type { ConnectionTrace } from '../trace/trace.ts'
import { LastStatement } from './activity.ts'
import { follow, requireAlpn, tlsOver } from './client-socket.ts'
import {
  BACKLOG_FULL,
  BACKLOG_GRACE_MS,
  CLOSE_GRACE_MS,
  failureFatal,
  goodbyeAfter,
  notificationsPiledUp,
  sayGoodbye,
} from './goodbye.ts'
import type { ConnectionHost, ServedConnection } from './host.ts'
import { Membership, type MemberConnection } from './membership.ts'
import { activityRow, signalPeer } from './peers.ts'
import { Startup, startupReply, type StartingConnection } from './startup.ts'
import { ClientOutput } from './output.ts'
import type { SpillBudget } from './spill.ts'
import { ConnectionStates, timeoutFatal, type ConnectionState, type Timeout } from './connection-state.ts'
import { noteClientBytes, type TrafficSource } from './traffic.ts'
import { TerminateAnswers } from './signals.ts'
import { InputQueue } from './input-queue.ts'

export type { ConnectionState } from './connection-state.ts'

let nextProcessId = 1000 + (process.pid % 1000) * 1000

/** A connection is what each of its parts needs of it: session member, backend and batch client, starting connection. */
export class Connection implements ServedConnection, StartingConnection, MemberConnection, TrafficSource {
  readonly processId = nextProcessId++
  readonly secretKey = randomInt(0, 2 ** 31)
  /** traffic.ts: the window in which this client last sent bytes. */
  trafficWindow = -1
  /** The client's socket: the TCP or Unix one it connected on, then the TLS one over it once it asked for TLS. */
  socket: Socket
  readonly startupParams = new Map<string, string>()
  /** The database the client connected to, as its startup packet named it. */
  database = ''
  readonly states: ConnectionStates
  readonly inspect: boolean
  readonly #host: ConnectionHost
  readonly #log: Logger
  readonly #startup: Startup
  /** Password messages are valid only while authenticating; every other type as Postgres's main loop allows. */
  readonly #reader: FrameReader = new FrameReader({
    maxLength: (code) => (code === FrontendCode.Password ? this.#startup.maxPasswordLength : maxMessageLength(code)),
  })
  readonly #client: ClientState
  /** The client's place in its database's session: its backend and the runner of its batches there. */
  readonly #membership: Membership
  readonly #queue = new InputQueue(() => this.socket)
  #draining = false
  /** Everything the client is sent, and the wait for it to read. */
  readonly #output: ClientOutput
  /** The same, as its backend uses it. */
  get output(): ClientOutput {
    return this.#output
  }
  get unreadBytes(): number {
    return this.#reader.buffered
  }
  /** Its database thread ran `unit` from its lent socket (engine/lent-reads.ts): its last statement. */
  lentUnitRan(unit: Buffer): void {
    this.#statement.note(unit, () => true)
  }
  /** A malformed message arrived behind queued work: it fails the connection once that work is answered. */
  #failAfterQueue: WireError | null = null
  #cleanup: Promise<void> | null = null
  #resolveCleanup: () => void = () => {}
  readonly #cleanupDone = new Promise<void>((resolve) => (this.#resolveCleanup = resolve))
  /** The protocol trace of this client's frames, or null when the server traces nothing. */
  readonly #trace: ConnectionTrace | null
  readonly #startedAt = new Date().toISOString()
  /** Going away, told nothing more until its goodbye (see #close). */
  #muted = false
  /** Clients this one ended by pg_terminate_backend, waiting for its answer to go out before they are told. */
  readonly #answers = new TerminateAnswers()
  /** The client's last statement, as pg_stat_activity shows it. */
  readonly #statement: LastStatement

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket
    this.#host = host
    this.#log = host.log.child({ conn: this.processId })
    this.#startup = new Startup(this, host, this.#reader)
    this.#client = new ClientState(this.processId)
    this.#statement = new LastStatement(this.#client.statements)
    this.inspect = host.options.inspect && this.#log.enabled('trace')
    this.#trace = host.trace?.connection(this.processId, socket) ?? null
    this.#output = new ClientOutput(this, this.#log, this.#trace, this.inspect)
    this.states = new ConnectionStates(
      host.options,
      (timeout, ms) => this.#timedOut(timeout, ms),
      (setting) => this.#membership.timeoutMs(setting),
    )
    // Cleanup is wired before anything async can happen, so no path leaks a slot or the session.
    follow(socket, this.#onDataEvent, this.#leftEvent, this.#failedEvent, this.#log)
    socket.setNoDelay(true)
    this.#membership = new Membership(this, host, this.#client, this.#log)
  }

  readonly #onDataEvent = (chunk: Buffer): void => this.#onData(chunk)
  readonly #leftEvent = (): void => this.#left()
  readonly #failedEvent = (): void => {
    // As on Postgres, whose next write to a reset socket fails and ends the backend: nothing more of it begins.
    this.#queue.clear()
    this.#left()
  }
  /** The client left while its work was queued or running: the drain closes the connection once that work is done. */
  #leaving = false

  /**
   * The server answered SSLRequest with 'S', or the client began a TLS handshake at once (`direct`, its first bytes):
   * from here on the socket is a TLSSocket over it. Errors and close of either socket end the connection.
   */
  startTls(context: SecureContext, direct?: Buffer): void {
    this.socket.off('data', this.#onDataEvent)
    const secure = tlsOver(this.socket, context, direct)
    this.socket = secure
    follow(secure, this.#onDataEvent, this.#leftEvent, this.#failedEvent, this.#log)
    if (direct) requireAlpn(secure, (error) => this.fail(error))
  }

  get state(): ConnectionState {
    return this.states.current
  }

  /** See BackendClient.left. */
  get left(): boolean {
    return this.#leaving && this.#queue.length === 0
  }

  get queuedBatches(): number {
    return this.#queue.length
  }

  /** What the client named itself in its startup packet. */
  get applicationName(): string {
    return this.startupParams.get('application_name') ?? ''
  }

  get idleInTransactionSince(): number | null {
    return this.states.current === 'holding' && this.#membership.batches?.idleInTransaction ? this.states.since : null
  }

  /** The client is not reading its replies, so its next batch waits. */
  get blockedOnOutput(): boolean {
    return this.#output.blocked
  }

  /** Send `error` (FATAL) and close, now or (`after`) once `after` resolves (#close): resolves once all is let go. */
  terminate(error: WireError, after?: Promise<void>): Promise<void> {
    return this.#close(error, CLOSE_GRACE_MS, after)
  }

  /** Close without a message (the client asked, or the socket is gone). */
  close(): Promise<void> {
    return this.#close(null)
  }

  /** A CancelRequest with this client's key: see Membership.cancel. */
  cancel(): void {
    this.#membership.cancel()
  }

  readonly reclaimSocket = (): boolean => this.#membership.reclaimSocket(this.#output)

  /** What pg_stat_activity shows of this client: its pid alone unless `full` (the functions that signal a client need no more). */
  activity(full: boolean): ClientActivity {
    return full ? activityRow(this, this.#membership, this.#statement, this.#startedAt) : { pid: this.processId }
  }

  serverClients(full: boolean): ClientActivity[] {
    return this.#host.clients().map((client) => client.activity(full))
  }

  /** pg_cancel_backend or pg_terminate_backend of another client: see signals.ts. */
  signalClient(processId: number, op: 'cancel' | 'terminate'): boolean {
    return signalPeer(this.#host.clients(), processId, op, this.#answers, this.#log)
  }

  answered(processId: number): void {
    this.#answers.answered(processId)
  }

  notify(message: Buffer): void {
    if (!this.states.isServing) return
    if (notificationsPiledUp(this.socket, this.#log)) void this.#close(BACKLOG_FULL, BACKLOG_GRACE_MS)
    else this.#output.write(message)
  }

  parkIfIdle(): void {
    this.#membership.batches?.parkIfIdle()
  }

  preparedStatementFrames(): Buffer[] {
    return this.#client.statements.parseFrames()
  }

  remakeFailed(frames: readonly Buffer[]): void {
    this.#client.statements.remakeFailed(frames)
  }

  #timedOut(timeout: Timeout, ms: number): void {
    if (timeout === 'queue' || timeout === 'statement') {
      this.#membership.batches?.wait.timeOut(ms, timeout === 'statement')
      return
    }
    const { error, what } = timeoutFatal(timeout, this.#output.blocked)
    this.#log.info(what, { ms, sqlstate: error.sqlstate })
    void this.#close(error)
  }

  /** Nothing to run now: the state at rest says what the client holds. */
  settle(): void {
    const batches = this.#membership.batches
    if (batches) this.states.enter(batches.restingState)
  }

  // --- Input ---

  #onData(chunk: Buffer): void {
    noteClientBytes(this)
    this.#trace?.in(chunk)
    const { states } = this
    if (states.isClosing || this.#failAfterQueue) return
    if (this.inspect) this.#log.trace('frontend bytes', { dump: hexDump(chunk) })
    try {
      this.#reader.push(chunk)
      if (states.current === 'startup') this.#startup.read()
      if (states.isServing) {
        let frames = this.#reader.readFrames()
        if (frames !== null) this.#membership.prewake()
        for (; frames !== null; frames = this.#reader.readFrames()) this.#enqueue(frames)
      }
      // Nothing to run (a startup packet, or part of a message): the client is quiet again until more arrives, so a
      // holder that stalls mid-message is still reaped, and a client that only connected still times out.
      if (states.current === 'startup') states.enter('startup')
      else if (states.isServing && (!this.#draining || this.#output.blocked)) this.settle()
    } catch (error) {
      // Postgres answers the messages before a malformed one, then fails: let the queued work finish first.
      if (error instanceof WireError && this.#draining) {
        this.#failAfterQueue = error
        this.socket.pause()
        return
      }
      this.fail(error)
    }
  }

  /** The client is in: its startup replies now; its startup settings once it first takes the session (no wait here). */
  admitted(session: SharedSession, database: string, early: Frames | null, open?: () => Promise<SharedSession>): void {
    if (this.states.current !== 'startup') return
    const reply = startupReply(session, this)
    this.database = database
    this.#membership.admit(session, open)
    this.states.enter('idle')
    this.#output.write(reply)
    if (early) this.#enqueue(early)
    // Messages the client sent while its database opened (few clients send any) run now.
    let frames: Frames | null
    while (this.states.isServing && (frames = this.#reader.readFrames()) !== null) this.#enqueue(frames)
  }

  #enqueue(frames: Frames): void {
    this.#queue.push(frames)
    if (!this.#draining) {
      this.#draining = true
      this.#drain().then(undefined, (error: unknown) => this.fail(error))
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && this.states.isServing) {
        const frames = this.#queue.shift()!
        const reading = this.#output.waitForReader(true)
        if (reading) {
          await reading
          if (!this.states.isServing) break
        }
        const membership = this.#membership
        if (membership.databasePending) {
          // Terminate needs no database: a client that connects and leaves opens (or creates) none.
          if (onlyTerminate(frames.bytes)) {
            void this.#close(null)
            break
          }
          this.states.enter('active')
          await membership.openDatabase()
          if (!this.states.isServing) break
        }
        this.#statement.note(frames.bytes, this.#heldNothing)
        await membership.batches!.run(frames)
      }
    } finally {
      this.#draining = false
      if (this.#failAfterQueue && this.states.isServing) this.fail(this.#failAfterQueue)
      if (this.#leaving && this.states.isServing) void this.#close(null)
      if (this.states.current === 'closing') this.#startCleanup()
      else if (this.states.isServing) this.settle()
    }
  }

  /** The client held nothing in the session: a statement it sends now begins a transaction. */
  readonly #heldNothing = (): boolean => !this.#membership.holdsSession

  // --- Output (output.ts) ---

  write(bytes: Uint8Array): void {
    if (!this.#muted) this.#output.write(bytes)
  }

  raw(bytes: Uint8Array): void | Promise<void> {
    return this.#muted ? undefined : this.#output.raw(bytes)
  }

  // --- What ClientOutput asks of its connection, for replies kept on disk (spill.ts) ---

  get spillBudget(): SpillBudget | null {
    return this.#host.options.spill
  }

  /** A statement outside a transaction block ends anyway: its replies may wait on disk while others run. */
  get mayKeepReplies(): boolean {
    return this.states.isServing && this.#membership.txStatus === TxStatus.Idle
  }

  /** Past the cap: its FATAL is queued after its last whole message; it gets as long to read them as a slow listener. */
  cutOff(error: WireError): void {
    void this.#close(new WireError(error.severity, error.sqlstate, error.message, { logOnly: true }), BACKLOG_GRACE_MS)
  }

  // --- Failure and close ---

  /**
   * The client closed its socket (or it was reset: then its queue was dropped first). What runs finishes and what the
   * client sent before it closed runs too, as a Postgres backend reads its socket to the end: an autocommit statement
   * in flight commits, a pipeline's COMMIT too. Then the connection closes, rolling back what is still open. Meanwhile
   * the clients behind it wait for the session, where on Postgres they would not.
   */
  #left(): void {
    if (this.states.isClosing) return
    if (this.#draining && this.states.isServing) this.#leaving = true
    else void this.#close(null)
  }

  /** Something went wrong: a WireError reaches the client as it is; anything else is logged and becomes XX000. */
  fail(error: unknown): void {
    if (!(error instanceof SchedulerClosedError)) void this.#close(failureFatal(error, this.#log, this.#membership))
  }

  /**
   * Close with `error` (FATAL) or none. Given `after`, the client is told nothing more (its canceled statement's
   * error neither) until `after` resolves or a few seconds pass (goodbye.ts), then gets `error`; its work stops now.
   */
  #close(error: WireError | null, graceMs = CLOSE_GRACE_MS, after?: Promise<void>): Promise<void> {
    if (this.states.isClosing) return this.#cleanup ?? this.#cleanupDone
    this.states.enter('closing')
    this.#queue.clear()
    // Clients it ended wait for an answer it will never send.
    this.#answers.releaseAll()
    const goodbye = (): void => sayGoodbye(this, this.#output, this.#trace, error, graceMs)
    if (after) {
      this.#muted = true
      goodbyeAfter(after, goodbye)
    } else goodbye()
    // What the client waits for stops now; a running statement is canceled, its batch ends, then #drain starts the
    // cleanup.
    this.#membership.stop(this.#draining)
    if (!this.#draining) this.#startCleanup()
    return this.#cleanupDone
  }

  #startCleanup(): void {
    if (this.#cleanup) return
    this.#cleanup = this.#membership.leave().finally(() => {
      this.states.enter('closed')
      this.#host.closed(this)
      this.#resolveCleanup()
    })
  }
}
