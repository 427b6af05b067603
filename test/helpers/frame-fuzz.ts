// Inputs for fuzzing the frame reader, and the reference model that says what a correct reader returns for them.
// The model is written from the protocol spec and postgres.c, not from src/, so the two can disagree.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import type { Rng } from '../../harness/seed.ts'

/** postgres.c PQ_SMALL_MESSAGE_LIMIT: the largest length field of Close, Describe, Execute, Flush, Sync, Terminate, CopyDone, CopyFail. */
export const SMALL_LIMIT = 10_000
/** postgres.c PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1): Query, Parse, Bind, CopyData, FunctionCall. */
export const LARGE_LIMIT = 0x3ffffffe
/** backend_startup.c MAX_STARTUP_PACKET_LENGTH; a startup packet is at least its length and a 4-byte code. */
export const MAX_STARTUP_LENGTH = 10_000
export const MIN_STARTUP_LENGTH = 8
export const PROTOCOL_3_0 = 196608
export const SSL_REQUEST = 80877103
export const GSSENC_REQUEST = 80877104

/** Message types the main loop of postgres.c accepts after startup. */
export const TYPED_CODES = [...'QPBdFCDEHSXcf'].map((c) => c.charCodeAt(0))
const LARGE_CODES = new Set([...'QPBdF'].map((c) => c.charCodeAt(0)))
export const UNKNOWN_CODES = Array.from({ length: 256 }, (_, code) => code).filter(
  (code) => !TYPED_CODES.includes(code),
)

/** The largest length field allowed for a type, or -1 for a type Postgres rejects (the reader's `maxLength` contract). */
export type Limits = (code: number) => number

export const postgresLimits: Limits = (code) =>
  !TYPED_CODES.includes(code) ? -1 : LARGE_CODES.has(code) ? LARGE_LIMIT : SMALL_LIMIT

/** Small random limits, so the over-limit paths are reached with little data. */
export function smallLimits(rng: Rng): Limits {
  const table = new Map(TYPED_CODES.map((code) => [code, rng.int(4, 400)]))
  return (code) => table.get(code) ?? -1
}

export function header(code: number, length: number): Buffer {
  const buf = Buffer.alloc(5)
  buf[0] = code
  buf.writeInt32BE(length | 0, 1)
  return buf
}

export function typedMessage(code: number, body: Buffer): Buffer {
  return Buffer.concat([header(code, body.length + 4), body])
}

export function startupPacket(code: number, body: Buffer = Buffer.alloc(0), length = body.length + 8): Buffer {
  const head = Buffer.alloc(8)
  head.writeInt32BE(length | 0, 0)
  head.writeInt32BE(code | 0, 4)
  return Buffer.concat([head, body])
}

export function startupMessage(rng: Rng): Buffer {
  const pairs: string[] = ['user', 'postgres', 'database', 'postgres']
  for (let i = rng.int(0, 4); i > 0; i--) pairs.push(`opt${i}`, rng.bytes(rng.int(0, 20)).toString('hex'))
  return startupPacket(PROTOCOL_3_0, Buffer.from(pairs.join('\0') + '\0\0'))
}

/** A well-formed message of a random accepted type; its body is random bytes (framing does not read bodies). */
export function validMessage(rng: Rng, limits: Limits, large = false): Buffer {
  const code = rng.pick(TYPED_CODES)
  const maxBody = limits(code) - 4
  const wanted =
    large && LARGE_CODES.has(code) ? rng.int(50_000, 700_000) : rng.chance(0.1) ? rng.int(0, 3000) : rng.int(0, 40)
  return typedMessage(code, rng.bytes(Math.min(wanted, maxBody)))
}

/** A length field the type's limit refuses: below 4, negative, just over the limit, or anything above it. */
export function badLength(rng: Rng, limit: number): number {
  switch (rng.int(0, 4)) {
    case 0:
      return rng.int(0, 3)
    case 1:
      return -rng.int(1, 2 ** 31)
    case 2:
      return limit + 1
    default:
      return rng.int(limit + 1, 2 ** 31 - 1)
  }
}

/** What a correct reader makes of a stream: where each packet or message ends, and the first violation, if any. */
export interface Expected {
  /** End offsets of the complete startup packets, in order. */
  packetEnds: number[]
  /** End offsets of the complete typed messages, in order. */
  messageEnds: number[]
  /** Offset where typed framing starts (after a StartupMessage), or null while still in startup. */
  typedFrom: number | null
  /** The first violation: its offset, how many bytes must have arrived to see it, and the FATAL 08P01 text. */
  error: { at: number; visibleAt: number; message: string } | null
}

/**
 * Reads `stream` as a backend reads a connection: startup packets until a 3.0 StartupMessage (when `startTyped`
 * is false), then typed messages. Bytes past an incomplete unit or a violation are not read.
 */
export function model(stream: Buffer, limits: Limits, startTyped: boolean): Expected {
  const expected: Expected = { packetEnds: [], messageEnds: [], typedFrom: startTyped ? 0 : null, error: null }
  let offset = 0
  while (expected.typedFrom === null) {
    if (stream.length - offset < 4) return expected
    const length = stream.readInt32BE(offset)
    if (length < MIN_STARTUP_LENGTH || length > MAX_STARTUP_LENGTH) {
      expected.error = { at: offset, visibleAt: offset + 4, message: 'invalid length of startup packet' }
      return expected
    }
    if (stream.length - offset < length) return expected
    const code = stream.readInt32BE(offset + 4)
    offset += length
    expected.packetEnds.push(offset)
    if (code === PROTOCOL_3_0) expected.typedFrom = offset
  }
  while (stream.length - offset >= 5) {
    const code = stream[offset]!
    const length = stream.readInt32BE(offset + 1)
    const limit = limits(code)
    if (limit < 0 || length < 4 || length > limit) {
      const message = limit < 0 ? `invalid frontend message type ${code}` : 'invalid message length'
      expected.error = { at: offset, visibleAt: offset + 5, message }
      return expected
    }
    if (stream.length - offset < 1 + length) return expected
    offset += 1 + length
    expected.messageEnds.push(offset)
  }
  return expected
}

/** Where to cut a stream into reads: the ways a socket can split it, from one read to a byte at a time. */
export function chunking(rng: Rng, stream: Buffer, boundaries: number[]): number[] {
  const total = stream.length
  const cuts = new Set<number>()
  const strategy = rng.pick(['whole', 'bytes', 'tiny', 'random', 'boundaries', 'mixed'] as const)
  if (strategy === 'bytes' && total <= 4000) for (let i = 1; i < total; i++) cuts.add(i)
  else if (strategy === 'tiny') for (let at = rng.int(1, 7); at < total; at += rng.int(1, 7)) cuts.add(at)
  else if (strategy === 'random') for (let n = rng.int(1, 12); n > 0; n--) cuts.add(rng.int(1, Math.max(1, total - 1)))
  else if (strategy === 'boundaries') for (const end of boundaries) cuts.add(end + rng.int(-5, 5))
  else if (strategy === 'mixed') {
    for (let at = rng.int(1, 300); at < total; at += rng.chance(0.5) ? rng.int(1, 5) : rng.int(1, 3000)) cuts.add(at)
  }
  const sizes: number[] = []
  let previous = 0
  for (const cut of [...cuts].filter((c) => c > 0 && c < total).sort((a, b) => a - b)) {
    sizes.push(cut - previous)
    previous = cut
    // An empty read must change nothing.
    if (rng.chance(0.02)) sizes.push(0)
  }
  sizes.push(total - previous)
  return sizes
}

export const CASE_KINDS = [
  'valid',
  'truncated',
  'oversized',
  'unknown-type',
  'garbage',
  'random-bytes',
  'huge-declared',
  'startup',
  'startup-bad-length',
  'typed-before-startup',
  'startup-after-typed',
] as const
export type CaseKind = (typeof CASE_KINDS)[number]

export interface FuzzCase {
  kind: CaseKind
  stream: Buffer
  limits: Limits
  /** Limits are Postgres's (else small random ones). */
  isPostgresLimits: boolean
  /** The reader starts in typed mode (startup already done). */
  startTyped: boolean
  /** Offsets where units begin, for chunkings that cut near them. */
  boundaries: number[]
}

/** One random input of `kind`: a stream of startup packets and/or typed messages, broken or not as the kind says. */
export function generateCase(rng: Rng, kind: CaseKind): FuzzCase {
  const isPostgresLimits = kind === 'huge-declared' || rng.chance(0.7)
  const limits = isPostgresLimits ? postgresLimits : smallLimits(rng)
  const parts: Buffer[] = []
  const valid = (n: number, large = false) => {
    for (let i = 0; i < n; i++) parts.push(validMessage(rng, limits, large && i === 0))
  }
  let startTyped = true
  switch (kind) {
    case 'valid':
      valid(rng.int(1, 40), rng.chance(0.03))
      break
    case 'truncated': {
      valid(rng.int(1, 20), rng.chance(0.03))
      const whole = Buffer.concat(parts.splice(0))
      parts.push(whole.subarray(0, rng.int(1, whole.length - 1)))
      break
    }
    case 'oversized': {
      valid(rng.int(0, 8))
      const code = rng.pick(TYPED_CODES)
      parts.push(header(code, badLength(rng, limits(code))), rng.bytes(rng.int(0, 30)))
      break
    }
    case 'unknown-type':
      valid(rng.int(0, 8))
      parts.push(header(rng.pick(UNKNOWN_CODES), rng.int(-10, 100)), rng.bytes(rng.int(0, 30)))
      break
    case 'garbage':
      // Headers that are mostly plausible, so garbage gets past the first message now and then.
      for (let n = rng.int(1, 20); n > 0; n--) {
        const code = rng.chance(0.85) ? rng.pick(TYPED_CODES) : rng.int(0, 255)
        const roll = rng.next()
        const length =
          roll < 0.7
            ? rng.int(4, 40)
            : roll < 0.85
              ? rng.pick([0, 3, 4, 5, SMALL_LIMIT, SMALL_LIMIT + 1, LARGE_LIMIT, LARGE_LIMIT + 1, -1, 2 ** 31 - 1])
              : rng.int(-(2 ** 31), 2 ** 31 - 1)
        parts.push(header(code, length), rng.bytes(Math.max(0, Math.min(length - 4, rng.int(0, 60)))))
      }
      break
    case 'random-bytes':
      startTyped = rng.chance(0.7)
      parts.push(rng.bytes(rng.int(1, 200)))
      break
    case 'huge-declared': {
      // A legal length far larger than what arrives: the reader waits for the rest and must not throw.
      const code = rng.pick([...'QPBdF'].map((c) => c.charCodeAt(0)))
      const length = rng.chance(0.2) ? rng.int(2 ** 20, 2 ** 24) : rng.int(2 ** 24 + 1, LARGE_LIMIT)
      valid(rng.int(0, 5))
      parts.push(header(code, length), rng.bytes(rng.int(0, 5000)))
      break
    }
    case 'startup':
      startTyped = false
      for (let n = rng.int(0, 3); n > 0; n--) parts.push(startupPacket(rng.pick([SSL_REQUEST, GSSENC_REQUEST])))
      parts.push(startupMessage(rng))
      valid(rng.int(0, 20))
      break
    case 'startup-bad-length':
      startTyped = false
      for (let n = rng.int(0, 2); n > 0; n--) parts.push(startupPacket(SSL_REQUEST))
      parts.push(
        startupPacket(
          PROTOCOL_3_0,
          rng.bytes(rng.int(0, 30)),
          rng.chance(0.5) ? rng.int(-(2 ** 31), MIN_STARTUP_LENGTH - 1) : rng.int(MAX_STARTUP_LENGTH + 1, 2 ** 31 - 1),
        ),
      )
      break
    case 'typed-before-startup':
      startTyped = false
      valid(rng.int(1, 5))
      break
    case 'startup-after-typed':
      valid(rng.int(0, 5))
      parts.push(startupMessage(rng))
      valid(rng.int(0, 3))
      break
  }
  const boundaries: number[] = []
  let offset = 0
  for (const part of parts) {
    boundaries.push(offset)
    offset += part.length
  }
  return { kind, stream: Buffer.concat(parts), limits, isPostgresLimits, startTyped, boundaries }
}
