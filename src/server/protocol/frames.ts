// Frontend framing: bytes from a socket in, complete messages out. Startup packets have no code byte;
// typed messages do. Buffering is offset-based: a read that holds only whole messages is never copied.

import { WireError, SqlState } from '../../errors.ts'
import { CODE_LENGTH, HEADER_LENGTH, LEN_LENGTH, MAX_STARTUP_PACKET_LENGTH, maxMessageLength } from './codes.ts'

const EMPTY = Buffer.alloc(0)
/** Below this a partial message's buffer is sized for the whole message at once; above it, it grows by doubling. */
const PREALLOCATE_LIMIT = 16 * 1024 * 1024

/** Complete typed messages, contiguous in `bytes`, ready to hand to PGlite in one call. */
export interface Frames {
  bytes: Buffer
  count: number
}

export function protocolViolation(message: string): WireError {
  return new WireError('FATAL', SqlState.ProtocolViolation, message)
}

export class FrameReader {
  #buffer: Buffer = EMPTY
  #start = 0
  #end = 0
  /** True when #buffer was allocated here and may be appended to in place. */
  #owned = false
  #typed = false
  /** Bytes the message at #start needs in total, once its header is known (for sizing the buffer). */
  #wanted = 0
  #maxLength: (code: number) => number

  /** `maxLength(code)` returns the largest allowed length field for a message type, or -1 for an unknown type. */
  constructor(options: { maxLength?: (code: number) => number } = {}) {
    this.#maxLength = options.maxLength ?? maxMessageLength
  }

  get buffered(): number {
    return this.#end - this.#start
  }

  /** The first byte buffered, or -1 if none (a direct TLS handshake begins with 0x16). */
  get firstByte(): number {
    return this.#start < this.#end ? this.#buffer[this.#start]! : -1
  }

  /** Everything buffered, taken out (bytes that belong to a TLS handshake, not to the protocol). */
  takeBuffered(): Buffer {
    const bytes = this.#buffer.subarray(this.#start, this.#end)
    this.#consume(this.#end - this.#start)
    return bytes
  }

  /** After the StartupMessage every message carries a code byte. */
  startTyped(): void {
    this.#typed = true
  }

  get isTyped(): boolean {
    return this.#typed
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    if (this.#start === this.#end) {
      this.#buffer = chunk
      this.#start = 0
      this.#end = chunk.length
      this.#owned = false
      return
    }
    const pending = this.#end - this.#start
    const needed = pending + chunk.length
    if (this.#owned && this.#buffer.length - this.#end >= chunk.length) {
      chunk.copy(this.#buffer, this.#end)
      this.#end += chunk.length
      return
    }
    // Returned Frames may still point into the old buffer, so never write over it: allocate and move the tail.
    const wanted = this.#wanted > 0 && this.#wanted <= PREALLOCATE_LIMIT ? this.#wanted : 0
    const capacity = Math.max(needed, wanted, pending * 2)
    const next = Buffer.allocUnsafe(capacity)
    this.#buffer.copy(next, 0, this.#start, this.#end)
    chunk.copy(next, pending)
    this.#buffer = next
    this.#start = 0
    this.#end = needed
    this.#owned = true
  }

  /** The next complete startup-phase packet (length-prefixed, no code), or null if incomplete. */
  readStartupPacket(): Buffer | null {
    const available = this.#end - this.#start
    if (available < LEN_LENGTH) return null
    const length = this.#buffer.readInt32BE(this.#start)
    // Postgres: "invalid length of startup packet" for len < 4 + 4 or > MAX_STARTUP_PACKET_LENGTH, a COMMERROR: logged,
    // the connection closed with nothing sent (node-postgres' connect() then end() at once sends Terminate here).
    if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH)
      throw new WireError('FATAL', SqlState.ProtocolViolation, 'invalid length of startup packet', { logOnly: true })
    if (available < length) {
      this.#wanted = length
      return null
    }
    const packet = this.#buffer.subarray(this.#start, this.#start + length)
    this.#consume(length)
    return packet
  }

  /**
   * All complete typed messages buffered now, as one contiguous slice, or null if there is none.
   * A malformed message throws a FATAL 08P01 WireError, after the complete messages before it were taken
   * by an earlier call: call `readFrames` until it returns null, and expect the throw on the call after the good ones.
   */
  readFrames(): Frames | null {
    const buffer = this.#buffer
    const from = this.#start
    let offset = from
    let count = 0
    this.#wanted = 0
    while (this.#end - offset >= HEADER_LENGTH) {
      const code = buffer[offset]!
      const length = buffer.readInt32BE(offset + CODE_LENGTH)
      const max = this.#maxLength(code)
      if (max < 0 || length < LEN_LENGTH || length > max) {
        if (count > 0) break
        throw max < 0
          ? protocolViolation(`invalid frontend message type ${code}`)
          : protocolViolation('invalid message length')
      }
      const total = CODE_LENGTH + length
      if (this.#end - offset < total) {
        this.#wanted = total
        break
      }
      offset += total
      count++
    }
    if (count === 0) return null
    const bytes = buffer.subarray(from, offset)
    this.#consume(offset - from)
    return { bytes, count }
  }

  #consume(length: number): void {
    this.#start += length
    if (this.#start === this.#end) {
      this.#buffer = EMPTY
      this.#start = 0
      this.#end = 0
      this.#owned = false
    }
  }
}

/** Calls `visit(code, offset, length)` for each message of a Frames slice (offset of the code byte, total length). */
export function forEachFrame(
  bytes: Uint8Array,
  visit: (code: number, offset: number, length: number) => boolean | void,
): void {
  const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  while (offset + HEADER_LENGTH <= view.length) {
    const total = CODE_LENGTH + view.readInt32BE(offset + CODE_LENGTH)
    if (visit(view[offset]!, offset, total) === false) return
    offset += total
  }
}
