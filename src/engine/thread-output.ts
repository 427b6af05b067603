// A database thread's output of one call (thread-worker.ts runs the calls): straight to the client's socket when the
// call says so, else through the reply ring to the server's thread.

import type { PGlite } from '@electric-sql/pglite'
import { encodeThreadError } from './thread-messages.ts'
import { OutputWatch, type Framing } from './output-watch.ts'
import { ReportedSettings } from '../server/protocol/repeated-reports.ts'
import { type ByteRing, FrameEnd } from './ring.ts'
import { unitAnswered, unitEndWanted } from './more-units.ts'
import { RELAY_CODES, framingAt, isAbandoned, writeToClient, type ReplyWaits } from './direct-reply.ts'
import { Control } from './stoppable.ts'
import { LentSocket, needsSyncToFs } from '../server/session/databases.ts'
import type { LendEnd } from './lent-reads.ts'

/** Wake the server's thread after this many bytes of output, and at the end of each call. */
const WAKE_EVERY_BYTES = 32 * 1024
/** The payload of a Units frame: whether the unit ran, or was skipped (stopped before it began). */
const UNIT_RAN = new Uint8Array([0])
const UNIT_SKIPPED = new Uint8Array([1])

/**
 * One call's output (one object, used again for each call): straight to the client's socket when the call says so,
 * up to the first message the server must rewrite; otherwise, and from there on, into the reply ring, every chunk
 * copied in as it comes, waiting for room when the ring is full.
 */
export class CallOutput {
  readonly watch = new OutputWatch()
  #id = 0
  /** In a call of units, the unit running (-1: a call of one). */
  #unit = -1
  readonly #mod: { _pq_buffer_remaining_data(): number }
  #unannounced = 0
  /** The client's socket while the reply goes straight there; -1 once (or if) it goes through the ring. */
  #fd = -1
  /** The call's or unit's reply is its client's: PGlite's repeated reports are left out of it. */
  #clientReply = false
  #relayCodes: ReadonlySet<number> | null = null
  /** The client's socket refused the reply, or the server gave up on it: the rest goes nowhere. */
  #gone = false
  /** Output of this call went through the ring: its end must wake the server's thread to pass it on. */
  #relayed = false
  /** The client's socket stopped taking the reply: the rest goes through the ring unread (FrameEnd.Raw). */
  #raw = false
  /** Where the stream stood in its messages before the chunk being written (for framingAt). */
  readonly #before: Framing = { remaining: 0, headerFill: 0, header: Buffer.alloc(5) }
  /** How long the reply going straight to the client has waited for its socket. */
  readonly #waits: ReplyWaits = { ms: 0 }

  /** PGlite's file system needs a sync after each call (needsSyncToFs): then after the call, not after each unit. */
  readonly sync: boolean
  /** What each unit is run with: output here, the sync left to the call. */
  readonly options: { onRawData: (chunk: Uint8Array) => void; syncToFs: false }

  readonly #replies: ByteRing
  readonly #words: Int32Array
  /** What PGlite reported last: a ParameterStatus that repeats it is left out of a client's reply. */
  readonly #reported: ReportedSettings

  constructor(pglite: PGlite, replies: ByteRing, words: Int32Array, reported: ReportedSettings) {
    this.#replies = replies
    this.#words = words
    this.#reported = reported
    this.#mod = (pglite as unknown as { mod: { _pq_buffer_remaining_data(): number } }).mod
    this.sync = needsSyncToFs(pglite)
    this.options = { onRawData: this.onRawData, syncToFs: false }
  }

  /** A call begins (`clientReply`: its reply is a client's, written straight to it or not). */
  begin(id: number, fd: number, relayFrom: number, clientReply: boolean): void {
    this.#id = id
    this.#unit = -1
    this.#unannounced = 0
    this.#relayed = false
    this.#direct(fd, relayFrom)
    this.#clientReply = clientReply
    this.watch.startCall()
    this.#reported.startCall()
  }

  /** A unit of a call of units begins (a client's, as one read from a lent socket is); its reply goes where it says. */
  beginUnit(unit: number, fd: number, relayFrom: number): void {
    this.#unit = unit
    this.#direct(fd, relayFrom)
    this.#clientReply = true
  }

  /** The reply still goes straight to the client's socket, all of it so far. */
  get writesStraight(): boolean {
    return this.#fd >= 0 && !this.#gone && !this.#raw && !this.#relayed
  }

  #direct(fd: number, relayFrom: number): void {
    this.#fd = fd
    this.#relayCodes = RELAY_CODES[relayFrom & 7] ?? null
    this.#gone = false
    this.#raw = false
    this.#waits.ms = 0
  }

  readonly onRawData = (output: Uint8Array): void => {
    let chunk = this.#reported.pass(output, this.#clientReply)
    if (chunk.length === 0) return
    if (this.#fd >= 0) {
      if (!this.#raw) this.watch.framingInto(this.#before)
      const stop = this.watch.feed(chunk, this.#relayCodes)
      const direct = stop < 0 ? chunk : chunk.subarray(0, stop)
      // Postgres reports a backend idle before it sends ReadyForQuery: what the server shows of the client may wait.
      if (stop < 0 && this.watch.atReadyForQuery && this.#mod._pq_buffer_remaining_data() === 0) {
        Atomics.store(this.#words, Control.Answered, this.#id)
        unitAnswered(this.#words, this.#unit)
      }
      if (!this.#gone && direct.length > 0) this.#toClient(direct)
      if (stop < 0 || this.#gone) {
        if (stop >= 0) this.watch.feed(chunk.subarray(stop))
        return
      }
      // A message the server rewrites: it and the rest go through the ring, after what the part written said.
      this.#fd = -1
      this.#write(FrameEnd.Direct, this.watch.summary())
      chunk = chunk.subarray(stop)
    }
    this.watch.feed(chunk)
    this.#relayed = true
    this.#write(0, chunk)
    this.#unannounced += chunk.length
    // A unit answered while Postgres holds more of the call's messages (a pipeline of several): its client gets the
    // answer now, as Postgres sends it at ReadyForQuery (postgres.js may cancel the next query it piped).
    if (
      this.#unannounced >= WAKE_EVERY_BYTES ||
      (this.watch.atReadyForQuery && this.#mod._pq_buffer_remaining_data() > 0)
    ) {
      this.#unannounced = 0
      this.#replies.wakeForOutput()
    }
  }

  /** Bytes of a reply that goes straight to the client: to its socket, or, once that stopped taking them, the ring. */
  #toClient(bytes: Uint8Array): void {
    if (this.#raw) {
      if (isAbandoned(this.#words, this.#id, this.#unit)) this.#gone = true
      else this.#writeRaw(bytes)
      return
    }
    const written = writeToClient(this.#words, this.#id, this.#unit, this.#fd, bytes, this.#waits)
    if (written < 0) this.#gone = true
    else if (written < bytes.length) {
      // The client stopped reading: the server's thread takes the rest, and keeps it for the client meanwhile. What the
      // reply said so far goes first (a ReadyForQuery saying a block is open makes the server wait for the client).
      this.#raw = true
      this.#write(FrameEnd.Direct, this.watch.summary())
      this.#write(FrameEnd.Raw | FrameEnd.Direct, framingAt(this.#before, bytes, written))
      this.#writeRaw(bytes.subarray(written))
    }
  }

  #writeRaw(bytes: Uint8Array): void {
    // Every frame says Raw (#write marks only a payload's last).
    const max = this.#replies.maxPayload
    this.#relayed = true
    for (let at = 0; at < bytes.length; at += max) this.#write(FrameEnd.Raw, bytes.subarray(at, at + max))
    this.#unannounced += bytes.length
    if (this.#unannounced >= WAKE_EVERY_BYTES) {
      this.#unannounced = 0
      this.#replies.wakeForOutput()
    }
  }

  /**
   * One unit of a call of units ended (runUnits). Unless the client has its reply already (written straight to it),
   * the server's thread is woken if it sleeps, to send the reply while the next unit runs.
   */
  unitEnd(ran: boolean): void {
    const direct = this.#fd >= 0
    if (direct) this.#write(FrameEnd.Direct, this.watch.summary())
    this.#write(FrameEnd.Units, ran ? UNIT_RAN : UNIT_SKIPPED)
    this.#fd = -1
    // The server's thread asked for this end (a client it answered may have sent its next unit already).
    const wanted = unitEndWanted(this.#words)
    if (direct && !wanted) return
    this.#unannounced = 0
    this.#replies.wakeForOutput()
  }

  /**
   * The last frame: empty, or the error the call failed with; it says whether a transaction block is left open. A
   * reply written straight to the client is summed up before it (what the server would have read there). After a
   * call that lent the client's socket to this thread (`lent`), the socket goes back: `handBack` is what the thread
   * read of it and did not run (HandBack frames), and the end wakes the server's thread, which reads the socket again.
   */
  end(failure: unknown, inTransaction: boolean, lent = false, handBack: LendEnd | null = null): void {
    if (this.#fd >= 0) this.#write(FrameEnd.Direct, this.watch.summary())
    if (handBack?.lastUnit) {
      const count = Buffer.allocUnsafe(4)
      count.writeUInt32LE(handBack.units)
      this.#handBack(LentSocket.Ran, Buffer.concat([count, handBack.lastUnit]))
    }
    const unnamed = handBack?.unnamed
    if (unnamed)
      this.#handBack(
        unnamed === 'dropped' ? LentSocket.UnnamedDropped : LentSocket.UnnamedParsed,
        unnamed === 'dropped' ? Buffer.alloc(0) : unnamed,
      )
    if (handBack?.unread) this.#handBack(LentSocket.Unread, handBack.unread)
    const payload = failure === null ? new Uint8Array(0) : Buffer.from(JSON.stringify(encodeThreadError(failure)))
    this.#write(
      FrameEnd.Last | (failure === null ? 0 : FrameEnd.Error) | (inTransaction ? FrameEnd.InTransaction : 0),
      payload,
    )
    // The end of a reply written straight to its client need not wake a server's thread that waits lazily for it,
    // unless the call failed (its client is owed the error).
    if (this.#relayed || failure !== null || lent) this.#replies.wakeForOutput()
    else this.#replies.wake()
  }

  /**
   * A frame marked HandBack of what the thread that read a lent socket tells the server, led by its kind (LentSocket).
   * One frame each: what it read fits (lent-reads.ts READ_BYTES, well below maxPayload).
   */
  #handBack(kind: number, bytes: Buffer): void {
    const frame = Buffer.allocUnsafe(bytes.length + 1)
    frame[0] = kind
    bytes.copy(frame, 1)
    this.#write(FrameEnd.HandBack, frame)
  }

  #write(flags: number, bytes: Uint8Array): void {
    const max = this.#replies.maxPayload
    let offset = 0
    do {
      const piece = bytes.subarray(offset, Math.min(bytes.length, offset + max))
      const isLast = offset + piece.length === bytes.length
      while (!this.#replies.tryWrite(this.#id, isLast ? flags : 0, piece)) {
        // Full: the server's thread has not read yet (its client is not reading, or it is busy). Wait for room.
        const tail = this.#replies.tail
        this.#replies.wakeForOutput()
        this.#replies.waitForRoom(tail, 1000)
      }
      offset += piece.length
    } while (offset < bytes.length)
  }
}
