// Protocol calls into a database thread, from the server's thread: the request through one ring, the reply streamed
// back through another to the caller, which may hold it back (its client is not reading: the thread then waits with
// the statement paused). While a call runs, a watchdog fires Postgres's own timer at the deadline Postgres armed
// (statement_timeout), and `cancel` stops it (a CancelRequest); both reach the thread through the inspector.

import { decodeThreadError } from './thread-messages.ts'
import { noteBusy } from './collect-garbage.ts'
import { ByteRing, FrameEnd, encodeUnits, type UnitTarget } from './ring.ts'
import { Control, controlViews } from './stoppable.ts'
import { sendingClients, watchAnswers, workingDatabases, type AnsweredCalls } from '../server/connection/traffic.ts'
import { LendWord, askBack, replyTarget } from './lent-reads.ts'
import { addUnit, answeredUnitRead, closeToMore, openToMore, readEndsOnTraffic } from './more-units.ts'
import { LazyEnd, mayEndLazily } from './lazy-end.ts'
import { CallStops, evaluateInThread } from './call-stops.ts'
import { CallWatchdog, WATCH_EVERY_MS } from './watchdog.ts'
import { endSeen, newRunning, readDone, waitsForClient, type Running } from './running-call.ts'
import type { DirectReply, OutputSink, StreamCall, UnitsDirect } from '../server/session/databases.ts'

export type { OutputSink }

/**
 * While at most this many clients are sending (traffic.ts), the server's thread spins up to FEW_CLIENTS_SPIN_MS for a
 * call's reply instead of sleeping (a wake-up costs about a small query here); with more, it reads their queries
 * meanwhile, so that they share the next call. The database thread's spin: thread-worker.ts (Control.Alone).
 */
const FEW_CLIENTS = 4
const FEW_CLIENTS_SPIN_MS = 0.5
/**
 * After a call that left a transaction block open, the server's thread spins this long for the next call's reply
 * whatever the traffic: only that client can run, so there is nothing else to read into a shared call meanwhile.
 */
const IN_TRANSACTION_SPIN_MS = 0.5
/** Waiting for room in the request ring, the server's thread checks this often that the database thread is still there. */
const WAIT_SLICE_MS = 1000

export class ProtocolCalls implements AnsweredCalls {
  readonly #requests: ByteRing
  readonly #replies: ByteRing
  /** Control.Current: the call the thread runs now; minus its id once it ended. */
  readonly #words: Int32Array
  #nextId = 1
  #running: Running | null = null
  /** The payload of a request's Direct frame, written again for each call. */
  readonly #directTarget = Buffer.alloc(8)
  /** The last call left a transaction block open (its last frame said so: FrameEnd.InTransaction). */
  #inTransaction = false
  readonly #watchdog: CallWatchdog
  /** Set once the thread is gone: every call fails with it. */
  #failure: Error | null = null
  #onFailure: (() => void) | null = null
  /** How a call whose reply goes straight to its client waits for its end. */
  readonly #lazy: LazyEnd
  /** Stops answersSeen (traffic.ts) looking at these calls. */
  readonly #unwatch: () => void
  /** A canceled call did not end within STUCK_AFTER_CANCEL_MS (call-stops.ts). */
  onStuck: ((ms: number) => void) | null = null
  readonly #stops: CallStops

  constructor(
    rings: { requests: SharedArrayBuffer; replies: SharedArrayBuffer },
    control: SharedArrayBuffer,
    threadId: number,
  ) {
    this.#requests = new ByteRing(rings.requests)
    this.#replies = new ByteRing(rings.replies)
    this.#lazy = new LazyEnd(this.#replies)
    const { words, deadline } = controlViews(control)
    this.#words = words
    this.#unwatch = watchAnswers(this)
    closeToMore(words)
    this.#watchdog = new CallWatchdog({
      running: () => this.#running,
      words,
      deadline,
      look: () => this.#lazy.look(),
      fire: (id) => void evaluateInThread(threadId, `fireTimer(${id})`),
    })
    this.#stops = new CallStops(
      { running: () => this.#running, hurry: (running) => this.#hurry(running), stuck: (ms) => this.onStuck?.(ms) },
      words,
      threadId,
    )
  }

  /** A call is in the thread now (or its output is still being read). */
  get isRunning(): boolean {
    return this.#running !== null
  }

  /**
   * Run `message` (complete frontend messages) as one call; its reply goes to `onRawData`, or with `direct` straight to
   * the client's socket as far as it can. One call at a time: the session's holder calls (SharedSession.runExclusive).
   */
  run(message: Uint8Array, { onRawData, direct = null, clientReply = false }: StreamCall): Promise<void> {
    return this.#call(message, 0, onRawData, null, direct, false, clientReply)
  }

  /**
   * The client of the call running now is gone (in a call of units, unit `unit`'s): the thread stops writing its
   * reply (DirectReply) and drops the rest.
   */
  abandonDirectReply(unit = -1): void {
    const running = this.#running
    if (!running?.direct) return
    this.#hurry(running)
    Atomics.store(this.#words, Control.AbandonedUnit, unit)
    Atomics.store(this.#words, Control.Abandoned, running.id)
    Atomics.notify(this.#words, Control.Abandoned)
  }

  /**
   * Several clients' units in one call (thread-worker.ts runUnits): output to `sink` in order, `onUnitEnd` after each
   * (`skipped`: stopped before it began). Ends once every unit ran, or one left the session open or changed.
   */
  runUnits(
    units: readonly Uint8Array[],
    sink: OutputSink,
    onUnitEnd: (skipped: boolean) => void,
    direct: UnitsDirect | null = null,
  ): Promise<void> {
    // A call grows (more-units.ts) only where others may send meanwhile: with one client sending, its next unit comes
    // once its answer did, mostly after the call has closed, and asking for its unit's end costs a wake-up.
    const grows = units.length > 1 || sendingClients() > 1
    return this.#call(
      encodeUnits(units, direct?.targets),
      FrameEnd.Units,
      sink,
      onUnitEnd,
      direct?.reply ?? null,
      grows,
    )
  }

  /**
   * One unit more for the call of units running now, to run after its others (more-units.ts); false if it takes none,
   * or waits for a client to read (the unit waits for the session in the line instead, where it is seen waiting).
   */
  addUnit(unit: Uint8Array, target: UnitTarget | null): boolean {
    const running = this.#running
    return (
      running !== null &&
      running.takesMore &&
      !waitsForClient(running) &&
      this.#failure === null &&
      addUnit(this.#words, this.#requests, running.id, unit, target)
    )
  }

  /** A call will likely come soon: the thread, if it sleeps, wakes now and looks for it briefly. */
  prewake(): void {
    this.#requests.wake()
  }

  async #call(
    request: Uint8Array,
    flags: number,
    sink: OutputSink,
    onUnitEnd: ((skipped: boolean) => void) | null,
    direct: DirectReply | null = null,
    grows = false,
    clientReply = false,
  ): Promise<void> {
    if (this.#failure) throw this.#failure
    // Ids stay positive 32-bit numbers (Control.Current holds one, negated once the call ended) for a server's life.
    const id = this.#nextId
    this.#nextId = id >= 0x7fff_ffff ? 1 : id + 1
    const running = newRunning(id, performance.now() + WATCH_EVERY_MS, direct, onUnitEnd !== null)
    this.#running = running
    noteBusy()
    const alone = workingDatabases() <= 1
    Atomics.store(this.#words, Control.Alone, alone ? 1 : 0)
    // A reply written straight to its client reaches it without this thread: nothing to spin for, the call's end is
    // bookkeeping that can wait for a wake-up. Nor while other databases work: their threads want the core.
    const spinMs =
      direct || !alone
        ? 0
        : sendingClients() <= FEW_CLIENTS
          ? FEW_CLIENTS_SPIN_MS
          : this.#inTransaction
            ? IN_TRANSACTION_SPIN_MS
            : 0
    this.#inTransaction = false
    try {
      // A call of units carries each unit's target in its request (ring.ts encodeUnits).
      const units = (flags & FrameEnd.Units) !== 0
      if (units) openToMore(this.#words, grows)
      await this.#send(
        running.id,
        request,
        flags,
        units ? null : replyTarget(this.#words, this.#directTarget, direct, clientReply),
      )
      running.takesMore = grows
      this.#watchdog.start()
      await this.#receive(running, sink, onUnitEnd, spinMs > 0 ? performance.now() + spinMs : 0)
    } finally {
      if (running.direct && running.directBlocked) running.direct.blocked(false)
      clearTimeout(running.stuckCheck)
      clearTimeout(running.cancelAgain)
      this.#running = null
      running.end?.resolve()
      readDone(running)
      // Busy until the call ends: a call longer than the idle wait is not idleness.
      noteBusy()
    }
  }

  /**
   * Stop the statement running now with 57014 ('canceled'); in a call of units, unit `unit`'s, not run if it has not
   * begun ('skipped': its client must be answered). '' if nothing was running. See call-stops.ts.
   */
  cancel(unit = -1): Promise<'canceled' | 'skipped' | ''> {
    return this.#stops.cancel(unit)
  }

  /** In the call of units running now: unit `unit`, if it has not begun, is not run (its client must be answered). */
  skip(unit: number): Promise<boolean> {
    return this.#stops.skip(unit)
  }

  /** The thread is gone: the call in flight and every later one fail with `error`. */
  fail(error: Error): void {
    this.#failure ??= error
    this.#unwatch()
    this.#onFailure?.()
    this.#lazy.look()
    // A reply waited for without a timeout (#receive): its wait ends, and finds the failure.
    this.#replies.wakeAlways()
  }

  /** Tell the thread to turn its event loop now (a message for it is on its way). */
  turn(): void {
    if (this.#requests.tryWrite(0, FrameEnd.Turn, new Uint8Array(0))) this.#requests.wake()
  }

  /** The request into its ring, in frames (COPY data can be large); first, `target` in a Direct frame. */
  async #send(id: number, message: Uint8Array, flags: number, target: Buffer | null): Promise<void> {
    const ring = this.#requests
    if (target && !ring.tryWrite(id, FrameEnd.Direct, target)) await this.#writeWhenRoom(id, FrameEnd.Direct, target)
    let offset = 0
    do {
      const piece = message.subarray(offset, Math.min(message.length, offset + ring.maxPayload))
      const pieceFlags = offset + piece.length === message.length ? FrameEnd.Last | flags : 0
      if (!ring.tryWrite(id, pieceFlags, piece)) await this.#writeWhenRoom(id, pieceFlags, piece)
      offset += piece.length
    } while (offset < message.length)
    ring.wake()
  }

  /** A frame the ring has no room for: written once the thread has read enough. */
  async #writeWhenRoom(id: number, flags: number, payload: Uint8Array): Promise<void> {
    const ring = this.#requests
    do {
      const tail = ring.tail
      ring.wake()
      await this.#abortable(ring.roomAsync(tail, WAIT_SLICE_MS))
    } while (!ring.tryWrite(id, flags, payload))
  }

  /**
   * The reply: output to `sink` as it arrives, until the call's last frame (which carries its error, if any). Until
   * `spinUntil` (performance.now()), waits spin instead of sleeping.
   */
  async #receive(
    running: Running,
    sink: OutputSink,
    onUnitEnd: ((skipped: boolean) => void) | null,
    spinUntil: number,
  ): Promise<void> {
    const { id } = running
    const ring = this.#replies
    const state: { ended: boolean; error: Error | null; held: Promise<void> | null } = {
      ended: false,
      error: null,
      held: null,
    }
    const visit = (frameId: number, flags: number, payload: Buffer): boolean | void => {
      if (frameId !== id) return
      if (flags & FrameEnd.HandBack) return void running.direct?.handBack(payload[0]!, Buffer.from(payload.subarray(1)))
      if (flags & FrameEnd.Last) {
        state.ended = true
        this.#inTransaction = (flags & FrameEnd.InTransaction) !== 0
        if (flags & FrameEnd.Error) state.error = decodeThreadError(JSON.parse(payload.toString('utf8')))
        return false
      }
      if (flags & FrameEnd.Units) {
        running.unitEnds++
        onUnitEnd?.(payload[0] === 1)
        return
      }
      // A reply that was going straight to the client, whose socket stayed full: where its messages stand, then its bytes.
      const result =
        flags & FrameEnd.Raw
          ? flags & FrameEnd.Direct
            ? running.direct?.diverted(payload)
            : running.direct?.raw(payload)
          : flags & FrameEnd.Direct
            ? running.direct?.summary(payload)
            : sink(payload, true)
      if (result instanceof Promise) {
        // Nothing more is read until the client took what it was given (and no unit is added to the call meanwhile).
        state.held = result
        running.heldByClient = true
        return false
      }
    }
    // A call that takes more units reads its units' ends whenever a client sends (more-units.ts); what fails there
    // fails the call.
    let failedOnTraffic: unknown = null
    const readEnds = (): void => {
      if (state.ended || state.held || failedOnTraffic) return
      try {
        ring.read(visit)
        readDone(running)
      } catch (error) {
        failedOnTraffic = error
        ring.wakeAlways()
      }
    }
    const stopReading = running.takesMore ? readEndsOnTraffic(this.#words, readEnds, () => running.unitEnds) : null
    try {
      for (;;) {
        if (!state.held) {
          ring.read(visit)
          readDone(running)
        }
        if (failedOnTraffic) throw failedOnTraffic
        if (state.ended) {
          if (state.error) throw state.error
          return
        }
        const held = state.held
        if (held) {
          await this.#abortable(held)
          running.heldByClient = false
          state.held = null
        } else {
          // The common wait, once or more per call: no timer and no race; fail(), later on this thread, wakes it.
          if (this.#failure) throw this.#failure
          if (spinUntil > 0 && ring.spin(spinUntil)) continue
          spinUntil = 0
          if (running.direct && !running.prompt && mayEndLazily(running.direct))
            await this.#lazy.wait(() => this.#hurry(running, LendWord.BackAtRest))
          else await ring.sleepAsync()
          if (this.#failure) {
            // A call that ended before the thread failed (its last frame waits in the ring) ended well.
            ring.read(visit)
            if (state.ended && !state.error) return
            throw this.#failure
          }
        }
      }
    } finally {
      stopReading?.()
    }
  }

  /** See traffic.ts AnsweredCalls. */
  answeredEnd(): Promise<void> | null {
    const running = this.#running
    if (!running?.direct) return null
    // An answer ends a unit, not the call: its end, which the thread writes once PGlite is done with the unit.
    if (running.units)
      return answeredUnitRead(
        this.#words,
        running,
        () => this.#replies.wake(),
        () => this.#running === running,
      )
    const words = this.#words
    if (Atomics.load(words, Control.Answered) !== running.id && Atomics.load(words, Control.Current) !== -running.id)
      return null
    this.#hurry(running)
    return endSeen(running)
  }

  /** The call's end is wanted now, with no lazy wait again; a lent socket comes back now, or (BackAtRest) at rest. */
  #hurry(running: Running, lend: LendWord = LendWord.BackNow): void {
    running.prompt = true
    askBack(this.#words, lend === LendWord.BackNow ? lend : LendWord.BackAtRest)
    this.#lazy.look()
  }

  /** `wait`, or the thread's failure, whichever comes first. */
  async #abortable(wait: Promise<void>): Promise<void> {
    if (this.#failure) throw this.#failure
    // Resolves on a failure, which the check after the race throws: a rejection would go unhandled once `wait` won.
    const failed = new Promise<void>((resolve) => {
      this.#onFailure = resolve
    })
    try {
      await Promise.race([wait, failed])
    } finally {
      this.#onFailure = null
    }
    if (this.#failure) throw this.#failure
  }
}
