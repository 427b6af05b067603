// Follows PGlite's backend output across chunks without copying it: where each message starts, and the
// transaction status of every ReadyForQuery. PGlite may flush in the middle of a message.

import { BackendCode, CODE_LENGTH, HEADER_LENGTH, LEN_LENGTH } from './codes.ts'

export class ReplyScanner {
  /** ReadyForQuery messages seen since the last `reset`. */
  readyCount = 0
  /** Status byte of the last ReadyForQuery ('I', 'T' or 'E'), or 0 if none since `reset`. */
  lastStatus = 0
  /** The backend asked for COPY data (CopyInResponse/CopyBothResponse) and has not finished. */
  copyIn = false
  /**
   * A command may have changed session settings (CommandComplete SET, RESET or DISCARD, or a ParameterStatus).
   * Stays set until the owner clears it.
   */
  settingsChanged = false
  /** A LISTEN, UNLISTEN or DISCARD completed: which channels the session listens on may have changed. */
  listenChanged = false
  /** A DEALLOCATE ALL or DISCARD ALL ran: every prepared statement in the session is gone, every client's. */
  statementsWiped = false
  /** Called with the code of each message as its header completes; for decoding beyond status tracking. */
  onMessage: ((code: number) => void) | null = null

  #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #code = 0
  #bodyLength = 0
  #remaining = 0
  /** The first bytes of the CommandComplete tag being read. */
  readonly #tag = Buffer.alloc(16)
  #tagFill = 0

  reset(): void {
    this.readyCount = 0
    this.lastStatus = 0
  }

  feed(chunk: Uint8Array): void {
    const n = chunk.length
    let i = 0
    while (i < n) {
      if (this.#remaining > 0) {
        if (this.#code === BackendCode.ReadyForQuery && this.#remaining === this.#bodyLength) this.lastStatus = chunk[i]!
        const take = Math.min(this.#remaining, n - i)
        if (this.#code === BackendCode.CommandComplete && this.#tagFill < this.#tag.length) this.#readTag(chunk, i, take)
        i += take
        this.#remaining -= take
        continue
      }
      let length: number
      if (this.#headerFill === 0 && n - i >= HEADER_LENGTH) {
        this.#code = chunk[i]!
        length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) >>> 0
        i += HEADER_LENGTH
      } else {
        this.#header[this.#headerFill++] = chunk[i++]!
        if (this.#headerFill < HEADER_LENGTH) continue
        this.#headerFill = 0
        this.#code = this.#header[0]!
        length = this.#header.readUInt32BE(CODE_LENGTH)
      }
      this.#bodyLength = this.#remaining = Math.max(0, length - LEN_LENGTH)
      this.#onHeader(this.#code)
    }
  }

  #onHeader(code: number): void {
    switch (code) {
      case BackendCode.ReadyForQuery:
        this.readyCount++
        this.copyIn = false
        break
      case BackendCode.CommandComplete:
        this.#tagFill = 0
        break
      case BackendCode.ParameterStatus:
        this.settingsChanged = true
        break
      case BackendCode.CopyInResponse:
      case BackendCode.CopyBothResponse:
        this.copyIn = true
        break
    }
    this.onMessage?.(code)
  }

  #readTag(chunk: Uint8Array, at: number, take: number): void {
    const count = Math.min(take, this.#tag.length - this.#tagFill)
    this.#tag.set(chunk.subarray(at, at + count), this.#tagFill)
    this.#tagFill += count
    if (this.#tagFill < this.#tag.length && count < this.#remaining) return
    const tag = this.#tag
    const fill = this.#tagFill
    switch (tag[0]) {
      case 0x53: // S
        if (startsWith(tag, fill, TAG_SET)) this.settingsChanged = true
        break
      case 0x52: // R
        if (startsWith(tag, fill, TAG_RESET)) this.settingsChanged = true
        break
      case 0x44: // D
        if (startsWith(tag, fill, TAG_DISCARD)) this.settingsChanged = this.listenChanged = true
        if (startsWith(tag, fill, TAG_DISCARD_ALL) || startsWith(tag, fill, TAG_DEALLOCATE_ALL)) this.statementsWiped = true
        break
      case 0x4c: // L
      case 0x55: // U
        if (startsWith(tag, fill, TAG_LISTEN) || startsWith(tag, fill, TAG_UNLISTEN)) this.listenChanged = true
        break
    }
    this.#tagFill = this.#tag.length
  }
}

// CommandComplete tags that change session state (DISCARD covers ALL, TEMP, PLANS, SEQUENCES: over-reporting is harmless).
const TAG_SET = Buffer.from('SET\0')
const TAG_RESET = Buffer.from('RESET\0')
const TAG_DISCARD = Buffer.from('DISCARD')
const TAG_DISCARD_ALL = Buffer.from('DISCARD ALL\0')
const TAG_DEALLOCATE_ALL = Buffer.from('DEALLOCATE ALL\0')
const TAG_LISTEN = Buffer.from('LISTEN\0')
const TAG_UNLISTEN = Buffer.from('UNLISTEN\0')

function startsWith(tag: Buffer, fill: number, prefix: Buffer): boolean {
  return fill >= prefix.length && tag.compare(prefix, 0, prefix.length, 0, prefix.length) === 0
}
