// A byte ring over a SharedArrayBuffer between two threads, one writing and one reading: frames of
// [call id u32][length u32, with flags in the top bits][bytes], passed without a message per call. The positions are
// only ever moved by their own side (Atomics keep them visible). A reader with nothing to read says it sleeps, looks
// once more, and waits on a wake-up count (Atomics.wait in the database thread, Atomics.waitAsync in the server's);
// a writer bumps the count and notifies only then (or ahead of a write, when a call is on its way). Waking a thread
// on another core costs more than the small calls it carries (a futex and an interrupt between cores, dear on a VM),
// so neither side pays it while the other is busy. Bytes are copied in and out.

const HEAD = 0 // bytes written, modulo 2^32
const TAIL = 1 // bytes read
const WAKE = 2 // bumped on every wake-up
const SLEEPING = 3 // AWAKE, ASLEEP while the reader waits on WAKE (or is about to), or LAZY
const ATTENTION = 4 // bumped when a lazy reader must look now (wakeForOutput)
const AWAKE = 0
const ASLEEP = 1
/** The reader looks when it has a reason of its own; only output must wake it (the end of a call need not). */
const LAZY = 2
const CONTROL_WORDS = 8
export const FRAME_HEADER = 8

/** Flags in a frame's length word. */
export const FrameEnd = {
  /** The last frame of a call's request, or of its reply. */
  Last: 0x8000_0000,
  /** The reply failed: the payload is the error, encoded. */
  Error: 0x4000_0000,
  /** On a request: not a call, the database thread should turn its event loop (a message waits for it). */
  Turn: 0x2000_0000,
  /** On a reply (the bit of Turn): what the thread that read a lent socket tells the server, before the call's last frame. */
  HandBack: 0x2000_0000,
  /**
   * On a request's last frame: the request is several clients' units (see thread-worker.ts `runUnits`); alone on a
   * request's frame, one unit more for the call of units running now (more-units.ts). On a reply: one unit's output
   * ended, the next one's follows (an empty frame).
   */
  Units: 0x1000_0000,
  /**
   * On a reply's last frame: the call's last ReadyForQuery said a transaction block is open, so its client holds the
   * session and its next call is the next to come (both threads look for it a while before they sleep).
   */
  InTransaction: 0x0800_0000,
  /**
   * On a request's first frame: the reply goes straight to the client's socket (the payload: its fd and which
   * messages the server must see; session/databases.ts DirectReply). On a reply: what the thread wrote there said (the
   * payload: output-watch.ts summary), before any output that follows through the ring.
   */
  Direct: 0x0400_0000,
  /**
   * On a reply: bytes of a reply that was going straight to the client, whose socket stayed full (direct-reply.ts
   * GIVE_UP_MS): the server sends them on unread. With Direct: where in a message they begin (direct-reply.ts framingAt).
   */
  Raw: 0x0200_0000,
} as const
const LENGTH_MASK = 0x01ff_ffff

/**
 * Every blocking wait of a database thread (Atomics.wait) goes through here, so that a CPU profile, which counts the
 * time blocked as the caller's own, shows it under this one name (npm run bench -- --profile sets it apart).
 */
export function blockedWait(words: Int32Array, index: number, value: number, ms: number): WaitResult {
  return Atomics.wait(words, index, value, ms) as WaitResult
}

/** What Atomics.wait returns. */
export type WaitResult = 'ok' | 'not-equal' | 'timed-out'

/** Atomics.waitAsync (Node 16+), which this project's lib (ES2023) does not declare. */
export const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      array: Int32Array,
      index: number,
      value: number,
      ms: number,
    ): { async: boolean; value: Promise<string> | string }
  }
).waitAsync

export function ringBuffer(capacity: number): SharedArrayBuffer {
  // Positions are 32-bit counters that wrap: only a power of two divides 2^32, so that `position % capacity` stays
  // continuous across the wrap.
  if (capacity <= 0 || (capacity & (capacity - 1)) !== 0)
    throw new RangeError(`a ring's capacity must be a power of two, not ${capacity}`)
  return new SharedArrayBuffer(CONTROL_WORDS * 4 + capacity)
}

export class ByteRing {
  readonly #control: Int32Array
  readonly #data: Uint8Array
  readonly #view: DataView
  readonly capacity: number

  constructor(buffer: SharedArrayBuffer) {
    this.#control = new Int32Array(buffer, 0, CONTROL_WORDS)
    this.#data = new Uint8Array(buffer, CONTROL_WORDS * 4)
    this.#view = new DataView(buffer, CONTROL_WORDS * 4)
    this.capacity = this.#data.length
  }

  /** The largest payload one frame can carry: half the ring, so a full frame never waits for itself. */
  get maxPayload(): number {
    return Math.min(LENGTH_MASK, (this.capacity >> 1) - FRAME_HEADER)
  }

  /** Bytes written and not yet read. */
  get used(): number {
    return (Atomics.load(this.#control, HEAD) - Atomics.load(this.#control, TAIL)) | 0
  }

  // --- The writing side ---

  /** Write one frame if it fits (payload at most maxPayload); false if the ring is too full now. Wakes nobody. */
  tryWrite(id: number, flags: number, payload: Uint8Array): boolean {
    const need = FRAME_HEADER + payload.length
    if (need > this.capacity - this.used) return false
    const head = Atomics.load(this.#control, HEAD)
    this.#putWord(head, id)
    this.#putWord(head + 4, payload.length | flags)
    this.#put(head + FRAME_HEADER, payload)
    Atomics.store(this.#control, HEAD, (head + need) | 0)
    return true
  }

  /** A frame of `payloadLength` bytes fits in the room there is now. */
  fits(payloadLength: number): boolean {
    return FRAME_HEADER + payloadLength <= this.capacity - this.used
  }

  /** Tell the reading side there is something to read: a wake-up only if it sleeps, not if it waits lazily. */
  wake(): void {
    if (Atomics.load(this.#control, SLEEPING) !== ASLEEP) return
    Atomics.add(this.#control, WAKE, 1)
    Atomics.notify(this.#control, WAKE)
  }

  /** Output the reader must pass on: a wake-up if it sleeps or waits lazily. */
  wakeForOutput(): void {
    const state = Atomics.load(this.#control, SLEEPING)
    if (state === AWAKE) return
    const word = state === LAZY ? ATTENTION : WAKE
    Atomics.add(this.#control, word, 1)
    Atomics.notify(this.#control, word)
  }

  /** Wake the reading side whether or not it sleeps: its wait must end (the writing side is gone). */
  wakeAlways(): void {
    Atomics.add(this.#control, WAKE, 1)
    Atomics.notify(this.#control, WAKE)
    Atomics.add(this.#control, ATTENTION, 1)
    Atomics.notify(this.#control, ATTENTION)
  }

  /** The tail position now: a writer waiting for room waits for it to move (waitForRoom). */
  get tail(): number {
    return Atomics.load(this.#control, TAIL)
  }

  /** Block until the reading side moved past `tail` or `ms` passed (database thread only). */
  waitForRoom(tail: number, ms: number): void {
    blockedWait(this.#control, TAIL, tail, ms)
  }

  /** Resolves once the reading side moved past `tail`, or after `ms` (server thread). */
  async roomAsync(tail: number, ms: number): Promise<void> {
    const wait = waitAsync(this.#control, TAIL, tail, ms)
    if (wait.async) await wait.value
  }

  // --- The reading side ---

  /** Whether frames wait to be read. */
  get hasFrames(): boolean {
    return Atomics.load(this.#control, HEAD) !== Atomics.load(this.#control, TAIL)
  }

  /**
   * Hand every frame written so far to `visit`, a copy of its payload (frames of one call in a row without flags are
   * joined into one copy; a frame with flags comes on its own), then free their room and wake a writer waiting for
   * it. `visit` may return false to stop there (the rest stay for the next read). Returns how many frames were read.
   */
  read(visit: (id: number, flags: number, payload: Buffer) => boolean | void): number {
    const head = Atomics.load(this.#control, HEAD)
    let tail = Atomics.load(this.#control, TAIL)
    let count = 0
    while (((head - tail) | 0) > 0) {
      const id = this.#getWord(tail)
      let runEnd = tail
      let length = 0
      let flags = 0
      while (((head - runEnd) | 0) > 0 && this.#getWord(runEnd) === id) {
        const word = this.#getWord(runEnd + 4)
        if ((word & ~LENGTH_MASK) !== 0) {
          // A frame with flags is visited alone: after the run of plain frames before it, if any.
          if (runEnd !== tail) break
          flags = word & ~LENGTH_MASK
        }
        length += word & LENGTH_MASK
        runEnd = (runEnd + FRAME_HEADER + (word & LENGTH_MASK)) | 0
        count++
        if (flags !== 0) break
      }
      const payload = Buffer.allocUnsafe(length)
      let at = 0
      for (let frame = tail; frame !== runEnd;) {
        const frameLength = this.#getWord(frame + 4) & LENGTH_MASK
        this.#get(frame + FRAME_HEADER, payload.subarray(at, at + frameLength))
        at += frameLength
        frame = (frame + FRAME_HEADER + frameLength) | 0
      }
      tail = runEnd
      if (visit(id, flags, payload) === false) break
    }
    if (count > 0) {
      Atomics.store(this.#control, TAIL, tail)
      Atomics.notify(this.#control, TAIL)
    }
    return count
  }

  /**
   * Block until woken or `ms` passed (database thread only): 'frames' if frames wait, 'woken' if woken without one (a
   * wake ahead of a write), 'idle' if the time passed. The reader says it sleeps before it looks a last time, and the
   * writer writes before it looks whether to wake it: one of them sees the other (Atomics are sequentially
   * consistent), so no frame is left unannounced.
   */
  sleep(ms: number): 'frames' | 'woken' | 'idle' {
    const seen = Atomics.load(this.#control, WAKE)
    Atomics.store(this.#control, SLEEPING, ASLEEP)
    const waited = this.hasFrames ? 'ok' : blockedWait(this.#control, WAKE, seen, ms)
    Atomics.store(this.#control, SLEEPING, AWAKE)
    return this.hasFrames ? 'frames' : waited === 'timed-out' ? 'idle' : 'woken'
  }

  /** Look for a frame until `until` (performance.now()) without sleeping; true if frames wait. */
  spin(until: number): boolean {
    while (!this.hasFrames) if (performance.now() >= until) return false
    return true
  }

  /**
   * Wait lazily (server thread): the writer wakes this side for output (wakeForOutput) but not for plain wake(), so
   * the end of a call waits until the reader looks for a reason of its own. False if frames wait already. Until
   * `endLazy`, a wake for output resolves `attention()`.
   */
  beginLazy(): boolean {
    Atomics.store(this.#control, SLEEPING, LAZY)
    if (!this.hasFrames) return true
    Atomics.store(this.#control, SLEEPING, AWAKE)
    return false
  }

  endLazy(): void {
    Atomics.store(this.#control, SLEEPING, AWAKE)
  }

  /**
   * Resolves after the next wakeForOutput while lazy (or wakeAlways). One wait at a time: the caller keeps the promise
   * until it settles, so waits do not pile up in V8 when no wake comes (a pending wait keeps no event loop alive).
   */
  attention(): Promise<unknown> {
    const wait = waitAsync(this.#control, ATTENTION, Atomics.load(this.#control, ATTENTION), Infinity)
    return wait.async ? (wait.value as Promise<string>) : Promise.resolve()
  }

  /**
   * Resolves once a frame is written, or after `ms` (server thread); see sleep(). Without `ms` it waits for the
   * wake-up alone: a wait with a timeout costs V8 a timer task each time, and the event loop a wake-up more.
   */
  async sleepAsync(ms = Infinity): Promise<void> {
    const seen = Atomics.load(this.#control, WAKE)
    Atomics.store(this.#control, SLEEPING, ASLEEP)
    try {
      if (this.hasFrames) return
      const wait = waitAsync(this.#control, WAKE, seen, ms)
      if (wait.async) await wait.value
    } finally {
      Atomics.store(this.#control, SLEEPING, AWAKE)
    }
  }

  // --- Bytes, wrapping at the end ---

  #put(position: number, bytes: Uint8Array): void {
    const at = (position >>> 0) % this.capacity
    const first = Math.min(bytes.length, this.capacity - at)
    this.#data.set(first === bytes.length ? bytes : bytes.subarray(0, first), at)
    if (first < bytes.length) this.#data.set(bytes.subarray(first), 0)
  }

  #get(position: number, out: Uint8Array): void {
    const at = (position >>> 0) % this.capacity
    const first = Math.min(out.length, this.capacity - at)
    out.set(this.#data.subarray(at, at + first))
    if (first < out.length) out.set(this.#data.subarray(0, out.length - first), first)
  }

  #putWord(position: number, value: number): void {
    const at = (position >>> 0) % this.capacity
    if (at + 4 <= this.capacity) this.#view.setUint32(at, value >>> 0, true)
    else {
      const word = new Uint8Array(4)
      new DataView(word.buffer).setUint32(0, value >>> 0, true)
      this.#put(position, word)
    }
  }

  #getWord(position: number): number {
    const at = (position >>> 0) % this.capacity
    if (at + 4 <= this.capacity) return this.#view.getUint32(at, true)
    const word = new Uint8Array(4)
    this.#get(position, word)
    return new DataView(word.buffer).getUint32(0, true)
  }
}

/** Where one unit's reply goes: straight to the client's socket `fd` (with RelayFrom bits), or through the ring (null). */
export interface UnitTarget {
  fd: number
  relayFrom: number
}

/**
 * Several units as one request: [count u32][per unit: length u32, fd i32 (-1: through the ring), relayFrom u32][the
 * units' bytes], little-endian.
 */
export function encodeUnits(units: readonly Uint8Array[], targets: ReadonlyArray<UnitTarget | null> = []): Buffer {
  let size = 4 + 12 * units.length
  for (const unit of units) size += unit.length
  const out = Buffer.allocUnsafe(size)
  out.writeUInt32LE(units.length, 0)
  let at = 4 + 12 * units.length
  units.forEach((unit, i) => {
    const target = targets[i] ?? null
    out.writeUInt32LE(unit.length, 4 + 12 * i)
    out.writeInt32LE(target ? target.fd : -1, 8 + 12 * i)
    out.writeUInt32LE(target ? target.relayFrom : 0, 12 + 12 * i)
    out.set(unit, at)
    at += unit.length
  })
  return out
}

export interface DecodedUnit {
  unit: Buffer
  fd: number
  relayFrom: number
}

/** The units of a request encodeUnits made (views of it), and where each one's reply goes (fd -1: the ring). */
export function decodeUnits(bytes: Buffer): DecodedUnit[] {
  const count = bytes.readUInt32LE(0)
  const units: DecodedUnit[] = []
  let at = 4 + 12 * count
  for (let i = 0; i < count; i++) {
    const length = bytes.readUInt32LE(4 + 12 * i)
    units.push({
      unit: bytes.subarray(at, at + length),
      fd: bytes.readInt32LE(8 + 12 * i),
      relayFrom: bytes.readUInt32LE(12 + 12 * i),
    })
    at += length
  }
  return units
}
