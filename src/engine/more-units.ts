// A call of units that grows while it runs. A client whose unit in the running call was answered sends its next one
// while the call still runs the others; the server's thread adds that unit to the call, and the database thread runs
// it before the call ends, instead of the call ending and the next one crossing the threads again (a wake-up each
// way, which costs more than a small query here). One control word (Control.MoreUnits) counts the units added, or
// says that the call takes no more: the thread closes it with a compare-and-swap once it has run every unit it
// knows of, so a unit is either added before that, and runs, or refused, and goes in a call of its own.

import {
  type ByteRing,
  type DecodedUnit,
  FrameEnd,
  blockedWait,
  decodeUnits,
  encodeUnits,
  type UnitTarget,
} from './ring.ts'
import { Control } from './stoppable.ts'
import { readSeen, type Running } from './running-call.ts'
import { readOnTraffic } from '../server/connection/traffic.ts'

/** Control.MoreUnits while no call of units takes more (between calls, and once the thread closed one). */
const CLOSED = -1
/** Between a unit's claim and its frame the server's thread runs no other code; past this, it is gone. */
const FRAME_WAIT_MS = 1000
/**
 * A call of several units that has run every unit it has waits this long for one more before it ends: with that many
 * clients sending, the next is usually on its way, and the wait (asleep) costs less than a call's end and the next
 * call's start, each a wake-up between cores. Others that wait for the session meanwhile wait this much longer.
 */
const LINGER_MS = 0.3

/** Server's thread, before any call: no call takes units yet. */
export function closeToMore(words: Int32Array): void {
  Atomics.store(words, Control.MoreUnits, CLOSED)
}

/**
 * Server's thread, before a call of units is written: none of its units is answered yet; one that `grows` takes more
 * units until the thread closes it.
 */
export function openToMore(words: Int32Array, grows: boolean): void {
  Atomics.store(words, Control.AnsweredUnit, -1)
  Atomics.store(words, Control.UnitEndWanted, 0)
  if (grows) Atomics.store(words, Control.MoreUnits, 0)
}

/**
 * Server's thread: add `unit` to call `id` of units, which the thread has in full (its request written); false if
 * the call takes no more, or the ring has no room for it now.
 */
export function addUnit(
  words: Int32Array,
  requests: ByteRing,
  id: number,
  unit: Uint8Array,
  target: UnitTarget | null,
): boolean {
  const added = Atomics.load(words, Control.MoreUnits)
  if (added < 0) return false
  const payload = encodeUnits([unit], [target])
  // Room first: only this thread writes the ring, so the room can only grow until the write after the claim.
  if (payload.length > requests.maxPayload || !requests.fits(payload.length)) return false
  if (Atomics.compareExchange(words, Control.MoreUnits, added, added + 1) !== added) return false
  // Cannot fail (the room was there); if it did, the thread would fail the call after FRAME_WAIT_MS.
  requests.tryWrite(id, FrameEnd.Units, payload)
  // A thread not lingering sees the count when it next looks (a notify would cost a lock shared with its waits).
  // Only speed rests on this: the thread's closing compare-and-swap refuses a unit it missed (a call of its own).
  if (Atomics.load(words, Control.Lingering) === 1) Atomics.notify(words, Control.MoreUnits)
  return true
}

/**
 * Server's thread, while a call of units that grows runs: whenever a client sends, read the units' ends written so far
 * (`readEnds`), so that a client answered there can add its next unit to the call. The thread writes a unit's end
 * only once PGlite is done with it, a while after the answer on which the client may have acted already: while an
 * answered unit's end is unread (`endsRead`: how many the call's reader has seen), the thread is asked to wake this
 * one at that end (unitEndWanted). Returns the stop, which also takes back an ask the call's last unit left.
 */
export function readEndsOnTraffic(words: Int32Array, readEnds: () => void, endsRead: () => number): () => void {
  const stop = readOnTraffic(() => {
    readEnds()
    if (Atomics.load(words, Control.AnsweredUnit) < endsRead()) return
    Atomics.store(words, Control.UnitEndWanted, 1)
    // The end may have come between the read and the ask (the thread saw no ask): read again.
    readEnds()
  })
  return () => {
    stop()
    // Else the next call's first unit end, in a call that does not grow, would wake this thread for nothing.
    Atomics.store(words, Control.UnitEndWanted, 0)
  }
}

/**
 * Server's thread, in a call of units: until the end of the last unit whose answer went straight to its client has
 * been read, each read of the reply ring is waited for, the thread asked to wake this one at that end (a reader of
 * every client's state would see that client still running). `wake` makes this thread read the ring now; `runs`: the
 * call still runs. The caller bounds the wait.
 */
export async function answeredUnitRead(
  words: Int32Array,
  running: Running,
  wake: () => void,
  runs: () => boolean,
): Promise<void> {
  // The units' ends written so far (their writing wakes nobody).
  wake()
  await readSeen(running)
  if (Atomics.load(words, Control.AnsweredUnit) < running.unitEnds) return
  // The end may come between the read and the ask (the thread saw no ask): read again. Asked again after each read,
  // since the thread takes the ask at the first unit's end, and a later unit may have been answered meanwhile.
  Atomics.store(words, Control.UnitEndWanted, 1)
  wake()
  while (runs() && Atomics.load(words, Control.AnsweredUnit) >= running.unitEnds) {
    await readSeen(running)
    Atomics.store(words, Control.UnitEndWanted, 1)
  }
}

/** Database thread: the answer of unit `unit` (-1: a call of one) went straight to its client (AnsweredUnit). */
export function unitAnswered(words: Int32Array, unit: number): void {
  if (unit >= 0) Atomics.store(words, Control.AnsweredUnit, unit)
}

/** Database thread, at a unit's end: whether the server's thread asked to be woken for it. */
export function unitEndWanted(words: Int32Array): boolean {
  return Atomics.exchange(words, Control.UnitEndWanted, 0) === 1
}

/** Database thread: the units added to the running call, read as it runs out of units. */
export class MoreUnits {
  readonly #requests: ByteRing
  readonly #words: Int32Array
  /** Units of the running call read so far. */
  #taken = 0
  /** A Turn frame came among them: the thread turns its event loop once the call is over (takeTurn). */
  #turn = false

  constructor(requests: ByteRing, words: Int32Array) {
    this.#requests = requests
    this.#words = words
  }

  /** Whether a Turn frame came among the units added to a call (once). */
  takeTurn(): boolean {
    const turn = this.#turn
    this.#turn = false
    return turn
  }

  /** A call of units begins. */
  begin(): void {
    this.#taken = 0
  }

  /** Every unit known has run: true with the units added meanwhile pushed onto `units`, false once closed to more. */
  next(id: number, units: DecodedUnit[]): boolean {
    const words = this.#words
    let lingered = units.length < 2
    for (;;) {
      const added = Atomics.load(words, Control.MoreUnits)
      if (added > this.#taken) {
        this.#take(id, added, units)
        return true
      }
      if (added >= 0 && !lingered) {
        lingered = true
        // Said before the wait compares the count: an adder either sees it and wakes the thread, or added before that.
        Atomics.store(words, Control.Lingering, 1)
        blockedWait(words, Control.MoreUnits, added, LINGER_MS)
        Atomics.store(words, Control.Lingering, 0)
        continue
      }
      if (added < 0 || Atomics.compareExchange(words, Control.MoreUnits, added, CLOSED) === added) return false
    }
  }

  /**
   * The call ends (early or not): it takes no more, and units added already are read and dropped: they do not run.
   * Never throws: what went wrong is returned, for the call's end to carry.
   */
  close(id: number): Error | null {
    const added = Atomics.exchange(this.#words, Control.MoreUnits, CLOSED)
    try {
      if (added > this.#taken) this.#take(id, added, [])
      return null
    } catch (error) {
      return error as Error
    }
  }

  #take(id: number, added: number, units: DecodedUnit[]): void {
    const until = performance.now() + FRAME_WAIT_MS
    let stray = false
    while (this.#taken < added) {
      this.#requests.read((frameId, flags, payload) => {
        if (flags & FrameEnd.Turn) this.#turn = true
        else if (frameId !== id || flags !== FrameEnd.Units) stray = true
        else {
          for (const unit of decodeUnits(payload)) units.push(unit)
          this.#taken++
        }
      })
      if (stray) throw new Error(`a frame of no call of units came while call ${id} took more`)
      if (this.#taken < added && performance.now() > until) throw new Error(`a unit added to call ${id} never came`)
    }
  }
}
