// Fuzzing the frame reader, seeded (FUZZ_SEED replays a run): random, truncated, oversized and out-of-order streams
// against a reference model, at random read boundaries. No sockets; the live-server fuzz is test/wire/fuzz.test.ts.
import { describe, expect, it } from 'vitest'
import { FrameReader, forEachFrame } from '../../src/server/protocol/frames.ts'
import { WireError } from '../../src/errors.ts'
import {
  CASE_KINDS,
  PROTOCOL_3_0,
  chunking,
  generateCase,
  model,
  type CaseKind,
  type FuzzCase,
} from '../helpers/frame-fuzz.ts'
import { createRng, runSeed, withSeed } from '../../harness/seed.ts'

const FILE = 'test/unit/frames-fuzz.test.ts'
const READER_CASES = 6000

interface Seen {
  kind: CaseKind
  outcome: 'complete' | 'incomplete' | 'error'
}

/**
 * Feeds one case to a FrameReader as a connection does (startup packets until a 3.0 StartupMessage, then typed
 * frames), in the case's chunks, draining after some reads, and checks every property after every drain.
 */
function runReaderCase(c: FuzzCase, chunks: number[], drainAfter: boolean[], label: string): Seen['outcome'] {
  const expected = model(c.stream, c.limits, c.startTyped)
  const reader = c.isPostgresLimits ? new FrameReader() : new FrameReader({ maxLength: c.limits })
  if (c.startTyped) reader.startTyped()
  const packets: Buffer[] = []
  const frames: Array<{ bytes: Buffer; count: number }> = []
  let pushed = 0
  let consumed = 0
  const fail = (what: string): never => {
    throw new Error(
      `${label}: ${what} (pushed ${pushed}, consumed ${consumed}, chunks ${JSON.stringify(chunks.slice(0, 40))})`,
    )
  }
  for (let i = 0; i < chunks.length; i++) {
    // Each read is its own allocation, as a socket's are.
    const chunk = Buffer.from(c.stream.subarray(pushed, pushed + chunks[i]!))
    reader.push(chunk)
    pushed += chunk.length
    if (!drainAfter[i] && i < chunks.length - 1) continue
    try {
      while (!reader.isTyped) {
        const packet = reader.readStartupPacket()
        if (packet === null) break
        packets.push(packet)
        consumed += packet.length
        if (packet.length >= 8 && packet.readInt32BE(4) === PROTOCOL_3_0) reader.startTyped()
      }
      if (reader.isTyped) {
        for (let f = reader.readFrames(); f !== null; f = reader.readFrames()) {
          frames.push(f)
          consumed += f.bytes.length
        }
      }
    } catch (error) {
      if (!(error instanceof WireError)) fail(`threw ${String(error)} instead of a WireError`)
      const wireError = error as WireError
      if (wireError.severity !== 'FATAL' || wireError.sqlstate !== '08P01')
        fail(`threw ${wireError.severity} ${wireError.sqlstate}`)
      if (!expected.error) fail(`threw "${wireError.message}" on input the model accepts`)
      if (pushed < expected.error!.visibleAt)
        fail(`threw "${wireError.message}" before the violation at ${expected.error!.at} arrived`)
      if (wireError.message !== expected.error!.message)
        fail(`threw "${wireError.message}", expected "${expected.error!.message}"`)
      if (consumed !== expected.error!.at)
        fail(
          `threw with ${consumed} bytes handed out, expected every unit before the violation at ${expected.error!.at}`,
        )
      checkHandedOut(c, packets, frames, fail)
      return 'error'
    }
    if (expected.error && pushed >= expected.error.visibleAt)
      fail(`did not throw "${expected.error.message}" once the violation at ${expected.error.at} arrived`)
    // Every unit complete in what arrived so far has been handed out, and nothing more.
    const ends = [...expected.packetEnds, ...expected.messageEnds].filter((end) => end <= pushed)
    const wantConsumed = ends.length === 0 ? 0 : Math.max(...ends)
    if (consumed !== wantConsumed) fail(`handed out ${consumed} bytes, expected ${wantConsumed}`)
    if (reader.buffered !== pushed - consumed) fail(`buffered ${reader.buffered}, expected ${pushed - consumed}`)
    checkPendingWithinLimits(
      c,
      expected.typedFrom !== null && consumed >= expected.typedFrom,
      reader.buffered,
      consumed,
      fail,
    )
  }
  checkHandedOut(c, packets, frames, fail)
  return consumed === c.stream.length ? 'complete' : 'incomplete'
}

/** What is buffered is at most the unfinished unit, whose declared length is within its limit. */
function checkPendingWithinLimits(
  c: FuzzCase,
  isTyped: boolean,
  buffered: number,
  consumed: number,
  fail: (what: string) => never,
): void {
  if (!isTyped) {
    if (buffered >= 4 && buffered >= c.stream.readInt32BE(consumed))
      fail('holds a whole startup packet it did not hand out')
    return
  }
  if (buffered < 5) return
  const length = c.stream.readInt32BE(consumed + 1)
  const limit = c.limits(c.stream[consumed]!)
  if (limit < 0 || length > limit) fail(`buffers ${buffered} bytes of a message whose header breaks the limits`)
  if (buffered >= 1 + length) fail('holds a whole message it did not hand out')
}

/** The handed-out packets and frames are the stream's bytes, in order, still intact (no later read overwrote them). */
function checkHandedOut(
  c: FuzzCase,
  packets: Buffer[],
  frames: Array<{ bytes: Buffer; count: number }>,
  fail: (what: string) => never,
): void {
  const all = Buffer.concat([...packets, ...frames.map((f) => f.bytes)])
  if (!all.equals(c.stream.subarray(0, all.length)))
    fail('handed-out bytes differ from the bytes sent (overwritten or reordered)')
  for (const f of frames) {
    let count = 0
    let end = 0
    forEachFrame(f.bytes, (_code, offset, length) => {
      count++
      end = offset + length
    })
    if (count !== f.count || end !== f.bytes.length)
      fail(`a Frames of count ${f.count} holds ${count} messages over ${end} of ${f.bytes.length} bytes`)
  }
}

describe('FrameReader fuzz', () => {
  it(`${READER_CASES} random, truncated, oversized and out-of-order streams at random read boundaries`, async () => {
    const seed = runSeed()
    await withSeed(seed, FILE, () => {
      const rng = createRng(seed)
      const seen: Seen[] = []
      for (let i = 0; i < READER_CASES; i++) {
        const kind = CASE_KINDS[i % CASE_KINDS.length]!
        const c = generateCase(rng, kind)
        const chunks = chunking(rng, c.stream, c.boundaries)
        const drainAfter = chunks.map(() => rng.chance(0.75))
        const outcome = runReaderCase(
          c,
          chunks,
          drainAfter,
          `case ${i} (${kind}, ${c.stream.length} bytes in ${chunks.length} reads)`,
        )
        seen.push({ kind, outcome })
      }
      // The generators must reach every outcome they are meant to, or the properties above test nothing.
      const count = (kind: CaseKind, outcome: Seen['outcome']) =>
        seen.filter((s) => s.kind === kind && s.outcome === outcome).length
      const perKind = READER_CASES / CASE_KINDS.length
      expect(count('valid', 'complete')).toBe(seen.filter((s) => s.kind === 'valid').length)
      expect(count('startup', 'complete')).toBeGreaterThan(perKind * 0.9)
      expect(count('truncated', 'incomplete')).toBeGreaterThan(perKind * 0.9)
      expect(count('huge-declared', 'incomplete')).toBeGreaterThan(perKind * 0.9)
      for (const kind of [
        'oversized',
        'unknown-type',
        'startup-bad-length',
        'typed-before-startup',
        'startup-after-typed',
      ] as const) {
        expect(count(kind, 'error'), kind).toBeGreaterThan(perKind * 0.9)
      }
      expect(count('garbage', 'error')).toBeGreaterThan(perKind * 0.3)
      expect(count('garbage', 'complete') + count('garbage', 'incomplete')).toBeGreaterThan(perKind * 0.05)
    })
  })
})
