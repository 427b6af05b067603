// What the database thread reads of PGlite's output as it passes, headers only (and the first bytes of the few
// messages it reads): a FATAL or PANIC (after which the instance cannot run another call); whether a unit left the
// session as it found it (a call of several clients' units goes on only then); and, for output written straight to
// the client, what the server's thread would have learnt from reading it (summary()), and where the first message
// the server must rewrite begins.

import { BackendCode, CODE_LENGTH, HEADER_LENGTH, TxStatus } from '../server/protocol/codes.ts'
import { SessionChange, tagChanges } from '../server/protocol/replies.ts'

/** How much of an ErrorResponse is read for its severity and message. */
const ERROR_BYTES = 512
/** How much of a CommandComplete tag tells whether it changed the session (replies.ts tagChanges). */
const TAG_BYTES = 16

/** What the output written straight to a client said (ReplyReader.absorb reads it): four bytes. */
export const SUMMARY_BYTES = 4
/** summary()[2]: no ErrorResponse or ReadyForQuery came, one came last, or a ReadyForQuery came after the last error. */
export const ErrorState = { Unchanged: 0, Pending: 1, Cleared: 2 } as const

/** Where the output stands in its messages: body bytes left of the one in progress, or the header bytes read so far. */
export interface Framing {
  remaining: number
  headerFill: number
  readonly header: Buffer
}

export class OutputWatch {
  /** What PGlite said, once it said FATAL or PANIC. */
  fatal: string | null = null
  /** Code of the last message header of the unit, or 0. */
  #lastCode = 0
  /** Status of the last ReadyForQuery of the call (kept across units: leftInTransaction). */
  #status: number = TxStatus.Idle
  /** Status of the last ReadyForQuery since the last summary, or 0. */
  #readyStatus = 0
  #errorState: number = ErrorState.Unchanged
  /** SessionChange bits since the last summary. */
  #changes = 0
  #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #code = 0
  #remaining = 0
  /** The first bytes of the message being read, when it is one of those read (#bodySize of them; 0: not read). */
  readonly #body = Buffer.alloc(ERROR_BYTES)
  #bodySize = 0
  #bodyFill = 0

  /** Copy where the output read so far stands in its messages into `to`. */
  framingInto(to: Framing): void {
    to.remaining = this.#remaining
    to.headerFill = this.#headerFill
    if (this.#headerFill > 0) this.#header.copy(to.header, 0, 0, this.#headerFill)
  }

  /** A call begins: the watch is used again for it. */
  startCall(): void {
    this.fatal = null
    this.#status = TxStatus.Idle
    this.#headerFill = 0
    this.#remaining = 0
    this.#bodySize = 0
    this.startUnit()
    this.summary()
  }

  /** A unit begins: what it leaves is judged afresh. */
  startUnit(): void {
    this.#lastCode = 0
    this.#changes = 0
  }

  /**
   * The unit left the session as it found it, so the next client's unit may run in the same call: its output ended
   * with ReadyForQuery saying idle (nothing open: no transaction, pipeline or COPY) and changed nothing.
   */
  get leftAtRest(): boolean {
    return (
      this.#lastCode === BackendCode.ReadyForQuery &&
      this.#status === TxStatus.Idle &&
      this.#changes === 0 &&
      this.fatal === null
    )
  }

  /**
   * The unit ended with ReadyForQuery and changed nothing the server keeps, though a transaction block may be open
   * (its client's alone until it ends): a lent socket's next unit may run (lent-reads.ts).
   */
  get leftQuiet(): boolean {
    return this.#lastCode === BackendCode.ReadyForQuery && this.#changes === 0 && this.fatal === null
  }

  /** The call's last ReadyForQuery said a transaction block is open: its client holds the session for its next call. */
  get leftInTransaction(): boolean {
    return this.#status !== TxStatus.Idle
  }

  /**
   * What the output read since the last summary said, as the server's ReplyReader would have read it: the last
   * message code, the last ReadyForQuery's status (0: none), ErrorState, SessionChange bits. Starts the next one.
   */
  summary(): Uint8Array {
    const out = new Uint8Array([this.#lastCode, this.#readyStatus, this.#errorState, this.#changes])
    this.#readyStatus = 0
    this.#errorState = ErrorState.Unchanged
    return out
  }

  /** The output read so far ends with a whole ReadyForQuery: a Sync or Query is answered in full. */
  get atReadyForQuery(): boolean {
    return this.#lastCode === BackendCode.ReadyForQuery && this.#remaining === 0 && this.#headerFill === 0
  }

  /**
   * Read `chunk`; returns the offset in it where the first message whose code is in `stopAt` (codes the server must
   * rewrite) begins, or -1. Reading stops before that message: the caller feeds the rest again, without `stopAt`.
   */
  feed(chunk: Uint8Array, stopAt: ReadonlySet<number> | null = null): number {
    let i = 0
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - i)
        if (this.#bodyFill < this.#bodySize) {
          const count = Math.min(take, this.#bodySize - this.#bodyFill)
          this.#body.set(chunk.subarray(i, i + count), this.#bodyFill)
          this.#bodyFill += count
        }
        i += take
        this.#remaining -= take
        if (this.#remaining === 0 && this.#bodySize > 0) this.#read()
        continue
      }
      // A message begins here: its code, the first byte, is known even when its header is split across chunks.
      if (this.#headerFill === 0 && stopAt !== null && stopAt.has(chunk[i]!)) return i
      if (this.#headerFill === 0 && chunk.length - i >= HEADER_LENGTH) {
        this.#code = chunk[i]!
        this.#remaining = Math.max(
          0,
          ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) - 4,
        )
        i += HEADER_LENGTH
      } else {
        this.#header[this.#headerFill++] = chunk[i++]!
        if (this.#headerFill < HEADER_LENGTH) continue
        this.#headerFill = 0
        this.#code = this.#header[0]!
        this.#remaining = Math.max(0, this.#header.readInt32BE(CODE_LENGTH) - 4)
      }
      this.#onHeader()
    }
    return -1
  }

  #onHeader(): void {
    const code = this.#code
    this.#lastCode = code
    if (code === BackendCode.ParameterStatus) this.#changes |= SessionChange.Settings
    else if (code === BackendCode.ErrorResponse) this.#errorState = ErrorState.Pending
    const size =
      code === BackendCode.ErrorResponse
        ? ERROR_BYTES
        : code === BackendCode.CommandComplete
          ? TAG_BYTES
          : code === BackendCode.ReadyForQuery
            ? 1
            : 0
    this.#bodySize = Math.min(this.#remaining, size)
    this.#bodyFill = 0
    if (this.#remaining === 0 && size > 0) this.#read()
  }

  #read(): void {
    const body = this.#body.subarray(0, this.#bodyFill)
    this.#bodySize = 0
    if (this.#code === BackendCode.ReadyForQuery) {
      this.#status = this.#readyStatus = body[0] ?? TxStatus.Idle
      this.#errorState = ErrorState.Cleared
    } else if (this.#code === BackendCode.CommandComplete) this.#changes |= tagChanges(body, body.length)
    else this.#judge(body)
  }

  /** Fields: a type byte, then a NUL-terminated value. V is the severity, never localized. */
  #judge(error: Buffer): void {
    let severity = ''
    let message = ''
    for (let at = 0; at < error.length && error[at] !== 0;) {
      const end = error.indexOf(0, at + 1)
      if (end < 0) break
      const value = error.toString('utf8', at + 1, end)
      if (error[at] === 0x56)
        severity = value // V
      else if (error[at] === 0x4d) message = value // M
      at = end + 1
    }
    if (severity === 'FATAL' || severity === 'PANIC') this.fatal = `${severity}: ${message}`
  }
}
