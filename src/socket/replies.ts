// Follows PGlite's backend output across chunks without copying it: where each message starts, and the
// transaction status of every ReadyForQuery. PGlite may flush in the middle of a message.

import { BackendCode, CODE_LENGTH, HEADER_LENGTH, LEN_LENGTH } from './protocol.ts'

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
  /** Called with the code of each message as its header completes; for decoding beyond status tracking. */
  onMessage: ((code: number) => void) | null = null

  #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #code = 0
  #bodyLength = 0
  #remaining = 0
  /** The first bytes of the CommandComplete tag being read. */
  readonly #tag = Buffer.alloc(8)
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
    // "SET\0", "RESET\0", "DISCARD ALL\0" (DISCARD TEMP/PLANS/SEQUENCES too: harmless to over-report).
    const isDiscard = tag[0] === 0x44 && tag[1] === 0x49 && tag[2] === 0x53 && tag[3] === 0x43
    if ((tag[0] === 0x53 && tag[1] === 0x45 && tag[2] === 0x54 && tag[3] === 0) || (tag[0] === 0x52 && tag[1] === 0x45 && tag[2] === 0x53 && tag[3] === 0x45 && tag[4] === 0x54) || isDiscard) {
      this.settingsChanged = true
    }
    // "LISTEN\0", "UNLISTEN" (8 bytes: the tag buffer's size).
    const listenAt = tag[0] === 0x4c ? 0 : tag[0] === 0x55 && tag[1] === 0x4e ? 2 : -1
    if (isDiscard || (listenAt >= 0 && tag.toString('latin1', listenAt, listenAt + 6) === 'LISTEN')) this.listenChanged = true
    this.#tagFill = this.#tag.length
  }
}
