// Reassembly for the protocol trace: socket chunks in, whole messages out, whatever the chunking. Apart from
// frames.ts (the server's reader): it reads both directions, keeps a message's first bytes only, reports garbage.

import { HEADER_LENGTH, LEN_LENGTH, MAX_LARGE_MESSAGE_LENGTH } from '../protocol/codes.ts'

/**
 * Bytes in, whole messages out, across any chunking: typed messages (code, int32 length) or, before the
 * StartupMessage, startup-phase packets (int32 length first). Keeps at most `keep` bytes of each message; a
 * message whole within one chunk is passed as a view of it, without a copy.
 */
export class FrameAssembler {
  typed: boolean
  /** One-byte messages due before the next frame: the answers to SSLRequest and GSSENCRequest. */
  singleBytes = 0
  readonly #keep: number
  readonly #onFrame: (frame: Buffer, length: number) => void
  readonly #onGarbage: (bytes: number) => void
  readonly #onByte: (byte: number) => void
  readonly #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #frame: Buffer | null = null
  #frameFill = 0
  #total = 0
  #seen = 0
  #broken = false

  constructor(
    keep: number,
    typed: boolean,
    onFrame: (frame: Buffer, length: number) => void,
    onGarbage: (bytes: number) => void,
    onByte: (byte: number) => void = () => {},
  ) {
    this.#keep = keep
    this.typed = typed
    this.#onFrame = onFrame
    this.#onGarbage = onGarbage
    this.#onByte = onByte
  }

  /** Bytes of a message begun but not finished. */
  get pending(): number {
    return this.#frame ? this.#seen : this.#headerFill
  }

  push(chunk: Uint8Array): void {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    const n = bytes.length
    let i = 0
    while (i < n && !this.#broken) {
      if (this.#frame) {
        const take = Math.min(this.#total - this.#seen, n - i)
        const copy = Math.min(take, this.#frame.length - this.#frameFill)
        if (copy > 0) bytes.copy(this.#frame, this.#frameFill, i, i + copy)
        this.#frameFill += copy
        this.#seen += take
        i += take
        if (this.#seen === this.#total) this.#finish()
        continue
      }
      const headerLength = this.typed ? HEADER_LENGTH : LEN_LENGTH
      if (this.#headerFill === 0) {
        if (this.singleBytes > 0) {
          this.singleBytes--
          this.#onByte(bytes[i++]!)
          continue
        }
        if (n - i >= headerLength) {
          const total = this.#length(bytes, i)
          if (total < 0) return this.#garbage(n - i)
          if (n - i >= total) {
            this.#onFrame(bytes.subarray(i, i + Math.min(total, this.#keep)), total)
            i += total
            continue
          }
        }
      }
      while (this.#headerFill < headerLength && i < n) this.#header[this.#headerFill++] = bytes[i++]!
      if (this.#headerFill < headerLength) return
      this.#headerFill = 0
      const total = this.#length(this.#header, 0)
      if (total < 0) return this.#garbage(headerLength + n - i)
      this.#frame = Buffer.allocUnsafe(Math.min(total, this.#keep))
      this.#header.copy(this.#frame, 0, 0, headerLength)
      this.#frameFill = this.#seen = headerLength
      this.#total = total
      if (this.#seen === this.#total) this.#finish()
    }
  }

  #finish(): void {
    const frame = this.#frame!.subarray(0, this.#frameFill)
    this.#frame = null
    this.#onFrame(frame, this.#total)
  }

  /** The message's whole length in bytes, or -1 when its header cannot be one (the peer is not speaking protocol). */
  #length(bytes: Buffer, at: number): number {
    if (!this.typed) {
      const length = bytes.readInt32BE(at)
      return length < 8 || length > MAX_LARGE_MESSAGE_LENGTH ? -1 : length
    }
    const length = bytes.readInt32BE(at + 1)
    return length < LEN_LENGTH || length > MAX_LARGE_MESSAGE_LENGTH ? -1 : 1 + length
  }

  #garbage(bytes: number): void {
    this.#broken = true
    this.#onGarbage(bytes)
  }
}
