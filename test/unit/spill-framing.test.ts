// Where a stream of backend messages stands, as the database thread hands a reply over mid-write (framingAt) and the
// server follows it (Framing): every split offset of a message stream gives the same message boundaries. No I/O.
import { describe, expect, it } from 'vitest'
import { framingAt } from '../../src/engine/direct-reply.ts'
import { OutputWatch, type Framing as ThreadFraming } from '../../src/engine/output-watch.ts'
import { Framing } from '../../src/server/connection/spill.ts'

function message(code: string, body: number): Buffer {
  const bytes = Buffer.alloc(5 + body, 0x61)
  bytes[0] = code.charCodeAt(0)
  bytes.writeInt32BE(4 + body, 1)
  return bytes
}

/** RowDescription-ish, empty and one-byte bodies, a long DataRow, CommandComplete, ReadyForQuery. */
const parts = [
  message('T', 12),
  message('D', 0),
  message('D', 1),
  message('D', 40),
  message('D', 3),
  message('C', 9),
  message('Z', 1),
]
const stream = Buffer.concat(parts)
const boundaries = new Set<number>([0])
for (let at = 0, i = 0; i < parts.length; i++) boundaries.add((at += parts[i]!.length))

/** Offsets in `bytes` at which a message begins or ends, as `framing` reads them a byte at a time. */
function boundariesRead(framing: Framing, bytes: Uint8Array): number[] {
  const found = framing.atBoundary ? [0] : []
  for (let i = 0; i < bytes.length; i++) if (framing.feed(bytes.subarray(i, i + 1)) === 1) found.push(i + 1)
  return found
}

describe('Framing', () => {
  it('finds the last message boundary of each piece, split at every offset', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      const framing = new Framing()
      const first = framing.feed(stream.subarray(0, cut))
      const second = framing.feed(stream.subarray(cut))
      expect(first).toBe(Math.max(...[...boundaries].filter((b) => b <= cut)))
      expect(second + cut).toBe(stream.length)
      expect(framing.atBoundary).toBe(true)
    }
  })

  it('picks up where the database thread stopped writing, at every offset of a chunk that began at any offset', () => {
    const watch = new OutputWatch()
    const before: ThreadFraming = { remaining: 0, headerFill: 0, header: Buffer.alloc(5) }
    for (let start = 0; start < stream.length; start++) {
      for (let at = 0; at <= stream.length - start; at++) {
        watch.startCall()
        watch.feed(stream.subarray(0, start))
        watch.framingInto(before)
        const chunk = stream.subarray(start)
        const framing = new Framing()
        framing.set(framingAt(before, chunk, at))
        const expected = [...boundaries].filter((b) => b >= start + at).map((b) => b - start - at)
        expect(boundariesRead(framing, chunk.subarray(at))).toEqual(expected)
        expect(framing.atBoundary).toBe(true)
      }
    }
  })
})
