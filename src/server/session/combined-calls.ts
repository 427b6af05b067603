// Several clients' units in one engine call. A client at rest whose next unit is complete (a Query, or messages that
// end with their Sync) and needs nothing of the session but settings it shares with the others rides in a batch
// instead of taking the session for itself: the batch waits for the session like a client, then runs every rider's
// unit in one call (engine/thread-worker.ts runUnits), each unit's output going to its own client. The database
// thread stops the call after a unit that leaves the session open (BEGIN) or changed (SET, LISTEN): that unit's
// client holds the session from there, as if it had run alone, and the units after it go back to their clients to
// run as ordinary calls. So no unit ever runs inside another client's transaction or settings.

import type { WireError } from '../../errors.ts'
import { SchedulerClosedError, type OwnerScheduler } from './scheduler.ts'
import type { OutputSink, SessionDb, UnitsDirect } from './databases.ts'
import type { SessionHolder, SessionMember } from './members.ts'
import type { RideEnd, Rider } from './rider.ts'

/** What a combined call needs of the session (session.ts SharedSession). */
interface CombinedSession {
  readonly db: SessionDb
  readonly dead: WireError | null
  readonly scheduler: OwnerScheduler<SessionHolder>
  /** Departed clients' statements and LISTENs are still in the session: the next call's first rider ends them. */
  readonly hasAbandonedWork: boolean
  executeUnits(
    units: readonly Uint8Array[],
    sink: OutputSink,
    onUnitEnd: (skipped: boolean) => void,
    direct?: UnitsDirect | null,
  ): Promise<void>
  cancelRunning(unit?: number): Promise<'canceled' | 'skipped' | ''>
  addUnit(unit: Uint8Array, target: { fd: number; relayFrom: number } | null): boolean
}

/** How many units one call carries at most (a batch that is full starts the next). */
const MAX_UNITS = 64
/** How many units a call that runs may grow to (units added while it runs: `#addToRunning`). */
const MAX_GROWN_UNITS = 256

interface Seat {
  rider: Rider
  resolve(end: RideEnd): void
  reject(error: unknown): void
  /** The unit's output has begun, or it ended. */
  begun: boolean
  ended: boolean
  /** The database thread agreed not to run the unit (skip, or a cancel before it began). */
  stopped: boolean
  /** Settled as its unit ended, while the call ran on. */
  settled: boolean
}

/** A batch holds the session as a client would: errors about who holds it name its first rider. */
class Batch implements SessionHolder {
  readonly seats: Seat[] = []
  settingsKey: string
  readonly processId: number
  readonly applicationName: string
  readonly idleInTransactionSince = null
  /** Its call writes replies straight to the clients that can take them (a unit added to it may too). */
  directReplies = false

  constructor(first: Rider) {
    this.settingsKey = first.settingsKey
    this.processId = first.member.processId
    this.applicationName = first.member.applicationName
  }

  seatOf(member: SessionMember): Seat | undefined {
    return this.seats.find((seat) => seat.rider.member === member)
  }

  /** The client whose unit runs now left (idle-holder.ts): its statement is canceled once another waits long enough. */
  get left(): boolean {
    return this.#runningSeat()?.rider.member.left ?? false
  }

  cancel(): void {
    this.#runningSeat()?.rider.member.cancel?.()
  }

  /** Units run in their seats' order: the first that has not ended runs (its output may not have begun: a lock wait). */
  #runningSeat(): Seat | undefined {
    return this.seats.find((seat) => !seat.ended && !seat.stopped)
  }
}

export class CombinedCalls {
  readonly #session: CombinedSession
  /** Batches waiting for the session (or about to run), oldest first: riders join the newest of their settings. */
  readonly #pending: Batch[] = []
  /** The batch whose call runs. */
  #running: Batch | null = null

  constructor(session: CombinedSession) {
    this.#session = session
  }

  /** The database can run several units in one call. */
  get available(): boolean {
    return this.#session.db.execProtocolUnits !== undefined
  }

  /**
   * Run `rider`'s unit in the next combined call of its settings. 'not-run' (when a unit before it in its call ended
   * the call) means the client runs it as an ordinary call. Rejects when the wait is refused (see `refuse`), the client
   * goes, or the database fails.
   */
  ride(rider: Rider): Promise<RideEnd> {
    const session = this.#session
    if (session.dead) return Promise.reject(session.dead)
    const added = this.#addToRunning(rider)
    if (added) return added
    let batch: Batch | null = null
    for (const pending of this.#pending) if (pending.settingsKey === rider.settingsKey) batch = pending
    if (batch === null || batch.seats.length >= MAX_UNITS) batch = this.#openBatch(rider)
    const seats = batch.seats
    return new Promise<RideEnd>((resolve, reject) =>
      seats.push({ rider, resolve, reject, begun: false, ended: false, stopped: false, settled: false }),
    )
  }

  /**
   * The unit goes in the call that runs now, after its others, if that call takes more: same settings, nobody else
   * waiting for the session (the call must not keep it from them), nothing left in it by a client that has left since
   * the call began (its LISTEN would still be heard: the next call's first rider ends it), room left. Null if not.
   */
  #addToRunning(rider: Rider): Promise<RideEnd> | null {
    const running = this.#running
    const session = this.#session
    if (running === null || running.settingsKey !== rider.settingsKey || running.seats.length >= MAX_GROWN_UNITS)
      return null
    if (session.scheduler.waiting > 0 || session.hasAbandonedWork) return null
    const target = running.directReplies ? rider.direct() : null
    if (!session.addUnit(rider.unit, target)) {
      rider.endDirect()
      return null
    }
    const { seats } = running
    const ride = new Promise<RideEnd>((resolve, reject) =>
      seats.push({ rider, resolve, reject, begun: false, ended: false, stopped: false, settled: false }),
    )
    // A call of one unit that grows to two counts from here.
    if (seats.length === 2) this.stats.calls++
    this.stats.units += seats.length === 2 ? 2 : 1
    return ride
  }

  /** Calls that carried more than one unit, and the units they carried (for getStats). */
  readonly stats = { calls: 0, units: 0 }

  /** Clients whose units wait for a combined call. */
  get waiting(): number {
    let count = 0
    for (const batch of this.#pending) count += batch.seats.length
    return count
  }

  /** Batches waiting in the session's queue (each counts there as one waiter). */
  get queued(): number {
    const { scheduler } = this.#session
    let count = 0
    for (const batch of this.#pending) if (!scheduler.isOwner(batch)) count++
    return count
  }

  /** `member` waits in a batch whose call has not begun, or runs in one and its unit has not ended. */
  isRiding(member: SessionMember): boolean {
    return this.#waitingSeat(member) !== null || this.#runningSeat(member) !== null
  }

  /**
   * `member`'s unit is the one the running call runs now (units run in order): the session is its client's meanwhile,
   * and a client that stops reading there holds it as an owner would.
   */
  runsNow(member: SessionMember): boolean {
    return this.#running?.seats.find((seat) => !seat.ended)?.rider.member === member
  }

  /** Stop `member`'s unit from running while it waits in a batch: its ride rejects with `error`. False if it is in none. */
  refuse(member: SessionMember, error: Error): boolean {
    const waiting = this.#waitingSeat(member)
    if (!waiting) return false
    const { seats } = waiting.batch
    seats.splice(seats.indexOf(waiting.seat), 1)
    waiting.seat.reject(error)
    return true
  }

  #waitingSeat(member: SessionMember): { batch: Batch; seat: Seat } | null {
    for (const batch of this.#pending) {
      const seat = batch.seatOf(member)
      if (seat) return { batch, seat }
    }
    return null
  }

  /**
   * In the call running now: if `member`'s unit has not begun, it is not run (true), and its client must be answered.
   * False if it has begun, or is in no call.
   */
  async skip(member: SessionMember): Promise<boolean> {
    const running = this.#runningSeat(member)
    const db = this.#session.db
    if (running === null || running.seat.begun || db.skipUnit === undefined || !(await db.skipUnit(running.index)))
      return false
    this.#stopped(running.seat)
    return true
  }

  /** The unit will not run: nothing will be written to its client, whose answer goes now. */
  #stopped(seat: Seat): void {
    seat.stopped = true
    seat.rider.endDirect()
  }

  /**
   * The CancelRequest of a client whose unit is in the running call: its statement ('canceled'), or, if it has not
   * begun, the unit itself ('skipped': its client must be answered).
   */
  async cancel(member: SessionMember): Promise<'canceled' | 'skipped' | ''> {
    const running = this.#runningSeat(member)
    if (running === null) return ''
    const result = await this.#session.cancelRunning(running.index)
    if (result === 'skipped') this.#stopped(running.seat)
    return result
  }

  /** `member` is gone: a ride still waiting ends. */
  forget(member: SessionMember): void {
    this.refuse(member, new SchedulerClosedError('the connection was closed'))
  }

  #runningSeat(member: SessionMember): { seat: Seat; index: number } | null {
    const seats = this.#running?.seats
    const index = seats ? seats.findIndex((seat) => seat.rider.member === member && !seat.ended) : -1
    return index < 0 ? null : { seat: seats![index]!, index }
  }

  #openBatch(first: Rider): Batch {
    const batch = new Batch(first)
    this.#pending.push(batch)
    const { scheduler } = this.#session
    const wait = scheduler.acquire(batch)
    if (wait === null) {
      // The session is free: units read in this same turn of the event loop join before the call goes.
      setImmediate(() => void this.#run(batch))
    } else {
      scheduler.owner?.parkIfIdle?.()
      wait.then(
        () => this.#run(batch),
        (error: unknown) => {
          this.#unpend(batch)
          for (const seat of batch.seats) seat.reject(error)
        },
      )
    }
    return batch
  }

  /** The batch holds the session: run its units in one call, settle each rider in order, and let the session go. */
  async #run(batch: Batch): Promise<void> {
    try {
      if (batch.seats.length > 0 && (await this.#call(batch))) await this.#settle(batch)
    } finally {
      this.#unpend(batch)
      this.#session.scheduler.release(batch)
    }
  }

  #unpend(batch: Batch): void {
    const index = this.#pending.indexOf(batch)
    if (index >= 0) this.#pending.splice(index, 1)
  }

  /** The one call; false (every ride rejected) if it failed. */
  async #call(batch: Batch): Promise<boolean> {
    const { seats } = batch
    try {
      const first = seats[0]!.rider
      await first.prepare()
      // Until here the batch was pending: a rider could still join it, or be refused (a CancelRequest, the queue
      // timeout) and answered at once. From here its units are the call's.
      this.#unpend(batch)
      this.#sendBackOthers(batch, first.settingsKey)
      if (seats.length === 0) return true
      if (seats.length > 1) {
        this.stats.calls++
        this.stats.units += seats.length
      }
      this.#running = batch
      let current = 0
      const begin = (): Seat => {
        const seat = seats[current]!
        if (!seat.begun) {
          seat.begun = true
          seat.rider.begin()
        }
        return seat
      }
      const targets = this.#session.db.directReplies === true ? seats.map((seat) => seat.rider.direct()) : []
      const direct: UnitsDirect | null = targets.some((target) => target !== null)
        ? {
            targets,
            reply: {
              fd: -1,
              relayFrom: 0,
              summary: (summary) => begin().rider.summary(summary),
              blocked: (isBlocked) => seats[current]?.rider.blocked(isBlocked),
              diverted: (framing) => begin().rider.diverted(framing),
              raw: (bytes) => begin().rider.raw(bytes),
              mayEndLazily: () => false,
              lend: null,
              handBack: () => {},
            },
          }
        : null
      batch.directReplies = direct !== null
      await this.#session.executeUnits(
        seats.map((seat) => seat.rider.unit),
        (chunk) => begin().rider.sink(chunk),
        (skipped) => {
          const seat = begin()
          seat.ended = true
          seat.rider.end(!skipped)
          current++
          // Its client may go on (and send its next unit into this call) while the call runs the others.
          if (!skipped && seat.rider.atRest && seat.rider.quiet) this.#settleNow(seat)
        },
        direct,
      )
      return true
    } catch (error) {
      for (const seat of seats) seat.reject(error)
      return false
    } finally {
      this.#running = null
      for (const seat of seats) seat.rider.endDirect()
    }
  }

  /**
   * The session has the settings of key `key` now. Preparing the first rider can change its key (a new client reads its
   * database's settings after an ALTER DATABASE ... SET), and other riders' with it: those of another key run alone.
   */
  #sendBackOthers(batch: Batch, key: string): void {
    batch.settingsKey = key
    const { seats } = batch
    for (let index = seats.length - 1; index >= 0; index--) {
      if (seats[index]!.rider.settingsKey !== key) seats.splice(index, 1)[0]!.resolve('not-run')
    }
  }

  /** `member`'s unit runs in the call now and its client is gone: the rest of its reply goes nowhere. False if not. */
  abandon(member: SessionMember): boolean {
    const running = this.#runningSeat(member)
    if (running === null) return false
    this.#session.db.abandonDirectReply?.(running.index)
    return true
  }

  #settleNow(seat: Seat): void {
    seat.settled = true
    seat.rider.settle().then(() => seat.resolve('ran'), seat.reject)
  }

  /** After the call, in order: each unit that ran is its client's release; one left open is its client's hold. */
  async #settle(batch: Batch): Promise<void> {
    for (const seat of batch.seats) {
      if (seat.settled) continue
      if (!seat.ended) seat.resolve(seat.stopped ? 'stopped' : 'not-run')
      else if (!seat.rider.atRest) {
        // Only the last unit that ran can have left the session open: its client holds the session now.
        this.#session.scheduler.transfer(batch, seat.rider.member)
        seat.resolve('holds')
      } else {
        await seat.rider.settle().then(() => seat.resolve('ran'), seat.reject)
      }
    }
  }
}
