// PGlite's output for one client, read once as it streams: where each message starts, the status of every
// ReadyForQuery, whether the backend is left at rest, and which commands changed session state. When asked, the
// same pass hands ErrorResponse, NoticeResponse and NotificationResponse messages whole to a rewrite (a client's
// statement names restored, a notification routed). PGlite may flush in the middle of a message or header.

import { BackendCode, CODE_LENGTH, HEADER_LENGTH, LEN_LENGTH, TxStatus } from './codes.ts'

/** What a reply says the client changed in the session, beyond its data (see `ReplyReader.takeChanges`). */
export const SessionChange = {
  /** A SET, RESET or DISCARD completed, or a ParameterStatus came: settings may differ from the client's list. */
  Settings: 1,
  /** A LISTEN, UNLISTEN or DISCARD completed: which channels the session listens on may have changed. */
  Listening: 2,
  /** A DEALLOCATE ALL or DISCARD ALL ran: every client's prepared statements are gone. */
  StatementsWiped: 4,
  /** A DISCARD ALL or DISCARD TEMP ran: the session's temporary objects are gone. */
  TempDropped: 8,
  /** An ALTER DATABASE or ALTER ROLE completed: what a new client gets at connect (its SET clauses) may have changed. */
  DatabaseSettings: 16,
} as const

/** Given a held message whole (header included), returns what to pass on instead, or null to drop it. */
export type RewriteMessage = (message: Buffer) => Buffer | null
export type Emit = (bytes: Buffer) => void

export class ReplyReader {
  #txStatus: number = TxStatus.Idle
  #pipelineOpen = false
  /** SessionChange bits gathered since the last `takeChanges`. */
  #changes = 0
  /** How many times the Settings bit was added: a SET since a given moment, even with the bit already set. */
  #settingsChanged = 0
  #trackChanges = true
  /** Code of the last message header of the current call, or 0. */
  #lastCode = 0
  /** An ErrorResponse came since the last ReadyForQuery: the backend skips messages until Sync. */
  #errorPending = false

  #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #code = 0
  #bodyLength = 0
  #remaining = 0
  /** The first bytes of the CommandComplete tag being read. */
  readonly #tag = Buffer.alloc(16)
  #tagFill = 0
  /** The message being held whole for the rewrite, or null while passing bytes through. */
  #held: Buffer | null = null
  #heldFill = 0

  /**
   * A new call into PGlite begins. With `trackChanges` false (the server's own statements), commands it runs do not
   * count as the client's changes.
   */
  startCall(trackChanges = true): void {
    this.#lastCode = 0
    this.#trackChanges = trackChanges
  }

  /** The call is over (or failed): `pipelineOpen` follows from how its output ended. */
  endCall(): void {
    if (this.#lastCode !== 0) this.#pipelineOpen = this.#lastCode !== BackendCode.ReadyForQuery
    this.#trackChanges = true
  }

  /** Transaction status of the last ReadyForQuery seen (in any call): 'I', 'T' or 'E'. */
  get txStatus(): number {
    return this.#txStatus
  }

  /**
   * Messages the backend has not finished with are outstanding: a pipeline (or a COPY) is open. False once the last
   * message of the last call that answered anything was ReadyForQuery: each Sync, Query or FunctionCall is answered
   * by one ReadyForQuery once the backend is done with it, and every other message but Flush (and CopyData/CopyDone/
   * CopyFail outside a COPY, which Postgres ignores) is answered by a message of its own or, after an error, skipped
   * until the next Sync. So nothing is outstanding once a ReadyForQuery is the last thing a whole call produced. A
   * call that answers nothing (a Flush) changes nothing.
   */
  get pipelineOpen(): boolean {
    return this.#pipelineOpen
  }

  /** The output read so far ends with a whole ReadyForQuery: a Sync or Query of the call is answered in full. */
  get atReadyForQuery(): boolean {
    return this.#lastCode === BackendCode.ReadyForQuery && this.#remaining === 0 && this.#headerFill === 0
  }

  /** An error came in the open pipeline: the backend skips the client's messages until its Sync. */
  get errorPending(): boolean {
    return this.#errorPending
  }

  /** Nothing is open in the session: no pipeline, COPY or transaction. The release rule. */
  get atRest(): boolean {
    return !this.#pipelineOpen && this.#txStatus === TxStatus.Idle
  }

  /** The session is this client's afresh: at rest, outside any transaction. */
  acquired(): void {
    this.#pipelineOpen = false
    this.#errorPending = false
    this.#txStatus = TxStatus.Idle
  }

  /** SessionChange bits since the last takeChanges, kept. */
  get changes(): number {
    return this.#changes
  }

  /** SessionChange bits since the last call of this, cleared. */
  takeChanges(): number {
    const changes = this.#changes
    this.#changes = 0
    return changes
  }

  /** Drop SessionChange bits the server dealt with itself. */
  forgetChanges(mask: number): void {
    this.#changes &= ~mask
  }

  /**
   * What a part of the call's output that went straight to the client said, as if it had been read here (the
   * database thread's summary: last message code, last ReadyForQuery status or 0, ErrorState, SessionChange bits).
   * The output that follows, if any, begins with a whole message.
   */
  absorb(summary: Uint8Array): void {
    const lastCode = summary[0]!
    const ready = summary[1]!
    const errorState = summary[2]!
    if (lastCode !== 0) this.#lastCode = lastCode
    if (ready !== 0) this.#txStatus = ready
    if (errorState === 1) this.#errorPending = true
    else if (errorState === 2) this.#errorPending = false
    if (this.#trackChanges) this.#add(summary[3]!)
  }

  /** Add SessionChange bits the reply cannot show (a setting changed by set_config()). */
  noteChanges(mask: number): void {
    this.#add(mask)
  }

  #add(mask: number): void {
    if (mask & SessionChange.Settings) this.#settingsChanged++
    this.#changes |= mask
  }

  /** Counts each reply that changed a setting (see `changes`), taken or not: unchanged, no SET came in between. */
  get settingsChanged(): number {
    return this.#settingsChanged
  }

  /**
   * Read `chunk` (a view PGlite may reuse: everything passed on is a copy, unless `owned` says the chunk is the
   * caller's to give away, as a reply read from a database thread's ring is). With `rewrite`, the output goes to `emit`
   * with ErrorResponse, NoticeResponse and NotificationResponse messages held whole and rewritten; without, the
   * chunk goes to `emit` whole. With neither, the chunk is only read.
   */
  feed(chunk: Uint8Array, emit: Emit | null, rewrite: RewriteMessage | null, owned = false): void {
    const holding = emit !== null && rewrite !== null
    const n = chunk.length
    let i = 0
    /** Start of the bytes not yet passed on (holding only). */
    let passFrom = 0
    while (i < n) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, n - i)
        if (this.#code === BackendCode.ReadyForQuery && this.#remaining === this.#bodyLength) this.#txStatus = chunk[i]!
        if (this.#code === BackendCode.CommandComplete && this.#tagFill < this.#tag.length)
          this.#readTag(chunk, i, take)
        if (this.#held) {
          this.#held.set(chunk.subarray(i, i + take), this.#heldFill)
          this.#heldFill += take
        }
        i += take
        this.#remaining -= take
        if (this.#remaining === 0 && this.#held) {
          this.#release(emit!, rewrite!)
          passFrom = i
        }
        continue
      }
      let length: number
      let split = false
      if (this.#headerFill === 0 && n - i >= HEADER_LENGTH) {
        this.#code = chunk[i]!
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0
        i += HEADER_LENGTH
      } else {
        // A header split across chunks: keep its bytes aside until its type is known.
        if (holding && this.#headerFill === 0 && i > passFrom) emit(piece(chunk, passFrom, i, owned))
        this.#header[this.#headerFill++] = chunk[i++]!
        passFrom = i
        if (this.#headerFill < HEADER_LENGTH) continue
        this.#headerFill = 0
        this.#code = this.#header[0]!
        length = this.#header.readUInt32BE(CODE_LENGTH)
        split = true
      }
      this.#bodyLength = this.#remaining = Math.max(0, length - LEN_LENGTH)
      this.#onHeader(this.#code)
      if (!holding) continue
      if (isHeld(this.#code)) {
        const headerStart = split ? i : i - HEADER_LENGTH
        if (headerStart > passFrom) emit(piece(chunk, passFrom, headerStart, owned))
        this.#held = Buffer.allocUnsafe(HEADER_LENGTH + this.#remaining)
        if (split) this.#header.copy(this.#held)
        else this.#held.set(chunk.subarray(headerStart, i))
        this.#heldFill = HEADER_LENGTH
        passFrom = i
        if (this.#remaining === 0) this.#release(emit, rewrite)
      } else if (split) {
        emit(Buffer.from(this.#header))
        passFrom = i
      }
    }
    if (!emit) return
    if (!holding) emit(piece(chunk, 0, n, owned))
    else if (!this.#held && this.#headerFill === 0 && n > passFrom) emit(piece(chunk, passFrom, n, owned))
  }

  #onHeader(code: number): void {
    this.#lastCode = code
    switch (code) {
      case BackendCode.ErrorResponse:
        this.#errorPending = true
        break
      case BackendCode.ReadyForQuery:
        this.#errorPending = false
        break
      case BackendCode.CommandComplete:
        this.#tagFill = 0
        break
      case BackendCode.ParameterStatus:
        if (this.#trackChanges) this.#add(SessionChange.Settings)
        break
    }
  }

  #release(emit: Emit, rewrite: RewriteMessage): void {
    const message = rewrite(this.#held!)
    this.#held = null
    if (message) emit(message)
  }

  #readTag(chunk: Uint8Array, at: number, take: number): void {
    const count = Math.min(take, this.#tag.length - this.#tagFill)
    this.#tag.set(chunk.subarray(at, at + count), this.#tagFill)
    this.#tagFill += count
    if (this.#tagFill < this.#tag.length && count < this.#remaining) return
    const fill = this.#tagFill
    this.#tagFill = this.#tag.length
    if (this.#trackChanges) this.#add(tagChanges(this.#tag, fill))
  }
}

/** Bytes [from, to) of `chunk` to pass on: a view when the chunk is owned, else a copy. */
function piece(chunk: Uint8Array, from: number, to: number, owned: boolean): Buffer {
  if (owned) return Buffer.from(chunk.buffer, chunk.byteOffset + from, to - from)
  return Buffer.from(chunk.subarray(from, to))
}

function isHeld(code: number): boolean {
  return (
    code === BackendCode.ErrorResponse ||
    code === BackendCode.NoticeResponse ||
    code === BackendCode.NotificationResponse
  )
}

// CommandComplete tags that change session state (DISCARD covers ALL, TEMP, PLANS, SEQUENCES: over-reporting is harmless).
const TAG_SET = Buffer.from('SET\0')
const TAG_RESET = Buffer.from('RESET\0')
const TAG_DISCARD = Buffer.from('DISCARD')
const TAG_DISCARD_ALL = Buffer.from('DISCARD ALL\0')
const TAG_DEALLOCATE_ALL = Buffer.from('DEALLOCATE ALL\0')
const TAG_DISCARD_TEMP = Buffer.from('DISCARD TEMP\0')
const TAG_LISTEN = Buffer.from('LISTEN\0')
const TAG_UNLISTEN = Buffer.from('UNLISTEN\0')
const TAG_ALTER_DATABASE = Buffer.from('ALTER DATABASE\0')
const TAG_ALTER_ROLE = Buffer.from('ALTER ROLE\0')

/** The SessionChange bits of a CommandComplete tag, from its first `fill` bytes. */
export function tagChanges(tag: Buffer, fill: number): number {
  switch (tag[0]) {
    case 0x53: // S
      return startsWith(tag, fill, TAG_SET) ? SessionChange.Settings : 0
    case 0x52: // R
      return startsWith(tag, fill, TAG_RESET) ? SessionChange.Settings : 0
    case 0x44: // D
      if (startsWith(tag, fill, TAG_DISCARD_ALL))
        return (
          SessionChange.Settings | SessionChange.Listening | SessionChange.StatementsWiped | SessionChange.TempDropped
        )
      if (startsWith(tag, fill, TAG_DEALLOCATE_ALL)) return SessionChange.StatementsWiped
      if (startsWith(tag, fill, TAG_DISCARD_TEMP))
        return SessionChange.Settings | SessionChange.Listening | SessionChange.TempDropped
      return startsWith(tag, fill, TAG_DISCARD) ? SessionChange.Settings | SessionChange.Listening : 0
    case 0x4c: // L
      return startsWith(tag, fill, TAG_LISTEN) ? SessionChange.Listening : 0
    case 0x55: // U
      return startsWith(tag, fill, TAG_UNLISTEN) ? SessionChange.Listening : 0
    case 0x41: // A (ALTER USER's tag is ALTER ROLE)
      return startsWith(tag, fill, TAG_ALTER_DATABASE) || startsWith(tag, fill, TAG_ALTER_ROLE)
        ? SessionChange.DatabaseSettings
        : 0
    default:
      return 0
  }
}

function startsWith(tag: Buffer, fill: number, prefix: Buffer): boolean {
  return fill >= prefix.length && tag.compare(prefix, 0, prefix.length, 0, prefix.length) === 0
}
