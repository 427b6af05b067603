// One read's messages, run in order: each to its handler; what passes on runs in PGlite as one segment, in as few
// calls as possible (normally one); where the server takes a message over, what came before it runs first. Here too:
// the release rule, and what follows work whose wait (session-wait.ts) was refused (its answer: refused-work.ts).

import { background, type Logger } from '../../log.ts'
import { CODE_LENGTH, FrontendCode, TxStatus } from '../protocol/codes.ts'
import { encodeReadyForQuery } from '../protocol/backend-messages.ts'
import { SYNC, isSingleUnit } from '../protocol/frontend-messages.ts'
import type { Frames } from '../protocol/frames.ts'
import type { DatabaseCatalog } from '../session/databases.ts'
import type { CopyIn } from '../features/copy-in.ts'
import type { ClientState } from '../features/state.ts'
import { hexDump } from '../trace/hex-dump.ts'
import type { Backend } from '../features/backend.ts'
import { gatherCopy } from '../features/copy-in.ts'
import { resetDatabaseIfRequested } from '../features/database-commands.ts'
import { afterHeld, holdBack } from './held-back.ts'
import { executes, mayRunAgain, runWaitingForLocks, type LockWaitRunner } from '../features/lock-wait.ts'
import { PreparedPipeline } from './prepared-pipeline.ts'
import { lookNow } from './traffic.ts'
import { ServerFunctions } from '../features/server-functions.ts'
import type { MessageReader, Segment } from './messages.ts'
import { UnnamedUse, unnamedUseOf } from '../protocol/unnamed-use.ts'
import { SessionWait, type WaitingClient } from './session-wait.ts'
import { answerRefused } from './refused-work.ts'
import type { ConnectionState } from './connection-state.ts'
import { takeOver, type TakeoverEnd } from './takeover.ts'
import type { Turn } from '../features/turn.ts'
import { makeUnnamedStatementOwn, ranUnnamed } from './unnamed-statement.ts'

/** What the runner needs of its connection. */
export interface BatchClient extends WaitingClient {
  /** Frames in and out are logged as hex dumps. */
  readonly inspect: boolean
  /** Resolves once the session holds nothing of the client: after this runner's batch, so never awaited from it. */
  close(): Promise<void>
}

/** What the runner is given besides its connection. */
export interface BatchContext {
  backend: Backend
  messages: MessageReader
  databases: DatabaseCatalog | null
  database: string
  maxCopyBytes: number
  /** See ConnectionOptions.idleTransactionWaitMs. */
  idleTransactionWaitMs: number
  log: Logger
}

export class BatchRunner {
  readonly #client: BatchClient
  readonly #backend: Backend
  readonly #messages: MessageReader
  readonly #state: ClientState
  readonly #log: Logger
  /** The COPY FROM STDIN whose data is arriving: the client's messages go to it. */
  #copy: CopyIn | null = null
  /** Refused work: the client's messages are dropped until its Sync. */
  #discarding = false
  /** Running the batch's last segment: its release at rest may be the client's last (releaseSession). */
  #lastSegment = false
  /** What a takeover may do on this client's behalf. */
  readonly #turn: Turn
  /** The client's waits for the session, and what ends them early. */
  readonly wait: SessionWait
  /** Work of a pipeline still open has run since it opened (so it cannot be run again after a lock wait). */
  #pipelineExecuted = false
  /** backend.settingsChanged when the client's idle-in-transaction timeout was last read in a block. */
  #settingsRead = 0
  /** What the client's open pipeline did: only prepare statements? (see #parkable) */
  readonly #prepared = new PreparedPipeline()
  /** The session being given up while the client is idle (parkIfIdle): its next batch waits for that. */
  #parking: Promise<void> | null = null
  /** Messages of a client at rest that asked for no reply yet (no Sync or Flush): they wait here, not in the session. */
  #heldBack: Segment | null = null
  readonly #lockWaitRunner: LockWaitRunner

  constructor(client: BatchClient, context: BatchContext) {
    this.#client = client
    this.#backend = context.backend
    this.#messages = context.messages
    this.#state = context.messages.client
    this.#log = context.log
    this.wait = new SessionWait(client, context.backend, {
      idleTransactionWaitMs: context.idleTransactionWaitMs,
      log: context.log,
      refuse: (error, bytes) => void this.#refuse(error, bytes),
    })
    const pipelineExecuted = (): boolean => this.#pipelineExecuted
    this.#turn = {
      get pipelineExecuted() {
        return pipelineExecuted()
      },
      backend: context.backend,
      client: this.#state,
      databases: context.databases,
      database: context.database,
      maxCopyBytes: context.maxCopyBytes,
      log: context.log,
      own: () => this.wait.own(),
      run: (bytes) => this.#runSegment({ bytes, unnamedUse: unnamedUseOf(bytes), functions: 0 }),
      refuse: (error, frame) => void this.#refuse(error, frame),
      releaseIfAtRest: () => this.#releaseIfAtRest(),
      waitOutside: (wait) => this.wait.outside(wait),
      write: (bytes) => this.#client.write(bytes),
    }
    this.#lockWaitRunner = {
      backend: this.#backend,
      write: (bytes) => this.#client.write(bytes),
      waitOutside: (wait) => this.wait.outside(wait),
    }
  }

  /** The client's messages are COPY data now: they make no call until CopyDone. */
  get copying(): boolean {
    return this.#copy !== null
  }

  /** The state at rest, when nothing is running: what the client holds says which. */
  get restingState(): ConnectionState {
    const backend = this.#backend
    // A unit of its running in a combined call holds the session as its own call would: stalled there, it is reaped.
    return backend.isOwner || backend.session.combined.runsNow(this.#client) ? 'holding' : 'idle'
  }

  /**
   * The client holds the session idle in a transaction: its last reply was ReadyForQuery saying T or E, and no COPY
   * or refused pipeline of its is under way.
   */
  get idleInTransaction(): boolean {
    const backend = this.#backend
    return (
      backend.isOwner &&
      !backend.pipelineOpen &&
      backend.txStatus !== TxStatus.Idle &&
      this.#copy === null &&
      !this.#discarding
    )
  }

  /** The client is gone: a COPY it was sending is dropped with it. */
  dropCopy(): void {
    this.#copy = null
  }

  async run(frames: Frames): Promise<void> {
    if (this.#parking) await this.#parking
    const { states } = this.#client
    states.enter('active')
    const { bytes } = frames
    const messages = this.#messages
    messages.begin(bytes)
    let offset = 0
    while (offset < bytes.length && states.isServing) {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (this.#copy) {
        // A Terminate here too gets Postgres's ERROR and FATAL 08P01 (copyfromparse.c knows no Terminate in COPY).
        this.#copy = await gatherCopy(this.#turn, this.#copy, code, bytes.subarray(offset, end))
        messages.take(end)
      } else if (this.#discarding && code !== FrontendCode.Terminate) {
        if (code === FrontendCode.Sync) this.#endDiscarding()
        messages.take(end)
      } else {
        const takeover = messages.handle(offset, end)
        if (takeover) {
          await this.#runSegment(messages.take(offset))
          messages.take(end)
          if (takeover.kind === 'terminate') {
            background(this.#client.close(), 'close on Terminate', this.#log)
            return
          }
          if (!this.#discarding && states.isServing) this.#after(await takeOver(this.#turn, takeover))
        }
      }
      offset = end
    }
    if (!states.isServing) return
    const rest = messages.take(bytes.length)
    if (this.#holdBack(rest)) return
    this.#lastSegment = true
    try {
      await this.#runSegment(rest)
    } finally {
      this.#lastSegment = false
    }
  }

  /**
   * A client owes itself no reply until its Sync or Flush (or a Query): until then nothing of what it sent needs to run,
   * so a client at rest keeps the session free meanwhile, as on Postgres, where it would hold only its own backend. Its
   * messages wait here (held-back.ts) and run before the next ones. Held or not: true if held.
   */
  #holdBack(segment: Segment): boolean {
    if (this.#backend.isOwner || this.#copy !== null || this.#discarding) return false
    const held = holdBack(this.#heldBack, segment)
    if (held === null) return false
    this.#heldBack = held
    return true
  }

  /** Messages held back (see #holdBack) go first. */
  #withHeldBack(segment: Segment): Segment {
    const held = this.#heldBack
    if (held === null) return segment
    this.#heldBack = null
    return afterHeld(held, segment)
  }

  #after(end: TakeoverEnd): void {
    if (end === 'discard-until-sync') this.#discarding = true
    else if (end !== null) this.#copy = end
  }

  /** Run messages as the owner and apply the release rule. Refused work is answered as a failed statement. */
  async #runSegment(segment: Segment): Promise<void> {
    const { bytes, unnamedUse, functions } = this.#withHeldBack(segment)
    if (bytes.length === 0) return
    if (this.#state.signals.length > 0) this.#signalEarly()
    // Another client holds the session: if its socket is lent to the database thread, the thread gives it back once
    // no transaction block is open (engine/lent-reads.ts LendWord).
    if (this.#backend.session.scheduler.owner !== null && !this.#backend.isOwner) lookNow()
    try {
      if (this.#mayRide(bytes, unnamedUse, functions)) {
        const end = await this.wait.ride(
          bytes,
          () => ranUnnamed(this.#backend.session, this.#client, unnamedUse),
          this.#lastSegment,
        )
        if (end === 'ran') this.#prepared.ran(bytes, this.#backend.atRest)
        if (end === 'ran' || end === 'stopped') return
        if (end === 'holds') return await this.#afterRun(bytes)
      }
      await this.wait.own()
    } catch (error) {
      const rest = this.#refuse(error, bytes)
      if (rest < bytes.length)
        await this.#runSegment({
          bytes: bytes.subarray(rest),
          unnamedUse: unnamedUseOf(bytes.subarray(rest)),
          functions,
        })
      return
    }
    if (this.#state.extensionsWanted.length > 0) await this.#loadExtensions()
    if (unnamedUse & UnnamedUse.ReferencedFirst)
      await makeUnnamedStatementOwn(this.#backend, this.#client, this.#state.statements)
    if (this.#client.inspect) this.#log.trace('to pglite', { dump: hexDump(bytes) })
    const backend = this.#backend
    if (
      functions & ServerFunctions.MayWait &&
      backend.txStatus === TxStatus.Idle &&
      !this.#pipelineExecuted &&
      mayRunAgain(bytes)
    ) {
      // A unit that binds the unnamed statement a Parse made before it: made again before each run after a wait.
      const unnamedParse = unnamedUse & UnnamedUse.ReferencedFirst ? this.#state.statements.unnamedParse : null
      await runWaitingForLocks(this.#lockWaitRunner, bytes, functions, unnamedParse)
      ranUnnamed(this.#backend.session, this.#client, unnamedUse)
    } else {
      // Before the call: the units its database thread may read after it (a lent socket) say what they did with it.
      ranUnnamed(this.#backend.session, this.#client, unnamedUse)
      await backend.run(bytes, functions, this.#lastSegment)
    }
    await this.#afterRun(bytes)
  }

  /** The client's messages ran as the owner: the release rule, or, holding on, whether it may give the session up. */
  async #afterRun(bytes: Buffer): Promise<void> {
    const backend = this.#backend
    // A pipeline still open has done work since it opened: a lock wait can no longer run it again from its start.
    this.#pipelineExecuted = !backend.atRest && (this.#pipelineExecuted || executes(bytes))
    this.#prepared.ran(bytes, backend.atRest)
    await this.#releaseIfAtRest()
    if (this.#parkable && backend.session.scheduler.waiting > 0) await this.#park()
    // A SET in its open block: the rest that follows counts to the timeout it set, as on Postgres.
    if (
      backend.settingsChanged !== this.#settingsRead &&
      this.idleInTransaction &&
      backend.txStatus === TxStatus.InTransaction
    ) {
      this.#settingsRead = backend.settingsChanged
      await backend.readTimeoutInBlock()
    }
  }

  /**
   * The client's next unit can ride in a call combined with other clients' units (session/combined-calls.ts): the
   * session is busy (free, the client takes it at once: nobody could join its call), the database can combine, the
   * client holds nothing and the session needs nothing done for it first, the unit is complete
   * (protocol/frontend-messages.ts isSingleUnit) and uses no statement it did not make itself.
   */
  #mayRide(bytes: Buffer, unnamedUse: number, functions: number): boolean {
    const backend = this.#backend
    const { scheduler } = backend.session
    return (
      functions === 0 &&
      (unnamedUse & UnnamedUse.ReferencedFirst) === 0 &&
      scheduler.owner !== null &&
      !backend.isOwner &&
      backend.session.combined.available &&
      this.#copy === null &&
      !this.#client.inspect &&
      backend.canRide &&
      isSingleUnit(bytes)
    )
  }

  /**
   * The client holds the session with nothing but prepared statements in an open pipeline (postgres.js and asyncpg
   * send Parse, Describe and Flush, then wait for the answer): nothing of it has run, so others may run meanwhile,
   * as on Postgres.
   */
  get #parkable(): boolean {
    const backend = this.#backend
    return (
      backend.isOwner &&
      backend.pipelineOpen &&
      backend.txStatus === TxStatus.Idle &&
      !backend.errorPending &&
      this.#prepared.only &&
      this.#copy === null &&
      !this.#discarding
    )
  }

  /**
   * Give the session up while the client's pipeline only prepared statements: a Sync of the server's own ends the
   * implicit transaction (its answer goes nowhere); the statements it named stay, and the unnamed one is made again
   * if another client's took its place before the client binds it (unnamed-statement.ts).
   */
  async #park(): Promise<void> {
    await this.#backend.capture(SYNC)
    await this.#releaseIfAtRest()
  }

  /** Another client waits: park now if this one sits idle holding only prepared statements (see #parkable). */
  parkIfIdle(): void {
    if (this.#parking || this.#client.states.current !== 'holding' || !this.#parkable) return
    this.#parking = this.#park()
      .catch((error: unknown) => this.#log.warn('could not give the session up', { error }))
      .finally(() => {
        this.#parking = null
        if (this.#client.states.isServing && this.#client.states.current === 'holding')
          this.#client.states.enter(this.restingState)
      })
  }

  /**
   * The client is about to CREATE EXTENSION: if its database's engine lacks the extension's files, it is opened again
   * with them (everyone's statements and LISTENs carry over, as after a reset). Only with the session at rest: inside a
   * transaction the statement runs as it is, and fails as Postgres fails for an extension it does not have.
   */
  async #loadExtensions(): Promise<void> {
    const wanted = this.#state.extensionsWanted.splice(0)
    const { databases, database, backend } = this.#turn
    if (!databases || !backend.atRest) return
    for (const name of wanted) {
      const db = await databases.loadExtension(database, name)
      if (db) await backend.session.replaceDb(db)
    }
  }

  /**
   * pg_cancel_backend(12345) / pg_terminate_backend(12345) in the client's SQL: sent now, before the wait for the
   * session, as Postgres signals at once; not in a failed block or after an error in a pipeline (Postgres refuses it).
   */
  #signalEarly(): void {
    const signals = this.#state.signals.splice(0)
    if (this.#backend.txStatus === TxStatus.Failed || this.#backend.errorPending) return
    for (const { op, pid } of signals) {
      // A pid no client has is left to the session's function, which answers false with Postgres's WARNING.
      if (pid !== this.#client.processId && this.#client.signalClient(pid, op)) this.#state.signaledEarly.add(pid)
    }
  }

  /** The release rule: the session goes to the next client once this one is at rest. */
  async #releaseIfAtRest(): Promise<void> {
    const backend = this.#backend
    if (!backend.isOwner || !backend.atRest) return
    if (this.#state.resetRequested) await resetDatabaseIfRequested(this.#turn)
    await backend.release(this.#lastSegment)
  }

  /** Waiting work in `bytes` never ran (refused-work.ts); the client was waiting, so it held nothing open in PGlite. */
  #refuse(error: unknown, bytes: Buffer): number {
    const { end, discarding } = answerRefused(error, bytes, this.#backend.txStatus, (reply) =>
      this.#client.write(reply),
    )
    this.#discarding = discarding
    return end
  }

  /** The Sync that ends refused work: it gets its ReadyForQuery (Postgres drops a Query sent meanwhile too). */
  #endDiscarding(): void {
    this.#discarding = this.#pipelineExecuted = false
    this.#client.write(encodeReadyForQuery(this.#backend.txStatus))
  }
}
