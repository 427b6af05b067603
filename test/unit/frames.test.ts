// FrameReader without sockets: every split offset, many messages per read, startup vs typed framing, bad lengths.
import { describe, expect, it } from 'vitest'
import { FrameReader, forEachFrame, type Frames } from '../../src/server/protocol/frames.ts'
import { WireError } from '../../src/errors.ts'
import { StartupCode } from '../../src/server/protocol/codes.ts'
import { bindInteger } from '../../src/server/protocol/frontend-messages.ts'
import { Writer } from '../../harness/wire.ts'

function typed(code: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(5)
  header[0] = code.charCodeAt(0)
  header.writeInt32BE(4 + body.length, 1)
  return Buffer.concat([header, body])
}
const cstr = (s: string): Buffer => Buffer.from(s + '\0')
const query = (sql: string): Buffer => typed('Q', cstr(sql))
const sync = (): Buffer => typed('S')
const parse = (sql: string): Buffer => typed('P', Buffer.concat([cstr(''), cstr(sql), Buffer.alloc(2)]))
function startup(params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).flat().join('\0') + '\0\0')
  const head = Buffer.alloc(8)
  head.writeInt32BE(8 + body.length, 0)
  head.writeInt32BE(StartupCode.Protocol3, 4)
  return Buffer.concat([head, body])
}
function codes(frames: Frames[]): string {
  let out = ''
  for (const f of frames) forEachFrame(f.bytes, (code) => void (out += String.fromCharCode(code)))
  return out
}
function drain(reader: FrameReader): Frames[] {
  const out: Frames[] = []
  let f: Frames | null
  while ((f = reader.readFrames()) !== null) out.push(f)
  return out
}

describe('FrameReader, typed messages', () => {
  const stream = Buffer.concat([
    parse('select 1'),
    typed('B', Buffer.alloc(10)),
    typed('E', Buffer.concat([cstr(''), Buffer.alloc(4)])),
    sync(),
    query('select 2'),
  ])

  it('returns all complete messages of one read as one contiguous slice, without copying', () => {
    const reader = new FrameReader()
    reader.startTyped()
    reader.push(stream)
    const frames = drain(reader)
    expect(frames).toHaveLength(1)
    expect(frames[0]!.count).toBe(5)
    expect(frames[0]!.bytes.equals(stream)).toBe(true)
    expect(frames[0]!.bytes.buffer).toBe(stream.buffer)
    expect(reader.buffered).toBe(0)
  })

  it('reassembles the same messages whatever offset the stream is split at', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const reader = new FrameReader()
      reader.startTyped()
      const frames: Frames[] = []
      reader.push(stream.subarray(0, cut))
      frames.push(...drain(reader))
      reader.push(stream.subarray(cut))
      frames.push(...drain(reader))
      expect(codes(frames), `cut at ${cut}`).toBe('PBESQ')
      expect(Buffer.concat(frames.map((f) => f.bytes)).equals(stream), `cut at ${cut}`).toBe(true)
      expect(reader.buffered).toBe(0)
    }
  })

  it('survives a byte-at-a-time stream, and earlier slices are never overwritten', () => {
    const reader = new FrameReader()
    reader.startTyped()
    const frames: Frames[] = []
    for (let i = 0; i < stream.length; i++) {
      reader.push(stream.subarray(i, i + 1))
      frames.push(...drain(reader))
    }
    expect(codes(frames)).toBe('PBESQ')
    expect(Buffer.concat(frames.map((f) => f.bytes)).equals(stream)).toBe(true)
  })

  it('reassembles a large message spread over many reads', () => {
    const big = query('select ' + "'" + 'x'.repeat(4 * 1024 * 1024) + "'")
    const reader = new FrameReader()
    reader.startTyped()
    const frames: Frames[] = []
    for (let i = 0; i < big.length; i += 65536) {
      reader.push(big.subarray(i, i + 65536))
      frames.push(...drain(reader))
    }
    expect(frames).toHaveLength(1)
    expect(frames[0]!.bytes.equals(big)).toBe(true)
  })

  it('rejects an unknown message type with FATAL 08P01, after handing out the good messages before it', () => {
    const reader = new FrameReader()
    reader.startTyped()
    reader.push(Buffer.concat([sync(), Buffer.from([0xff, 0, 0, 0, 4])]))
    expect(codes([reader.readFrames()!])).toBe('S')
    const error = catchError(() => reader.readFrames())
    expect(error).toBeInstanceOf(WireError)
    expect(error).toMatchObject({ severity: 'FATAL', sqlstate: '08P01', message: 'invalid frontend message type 255' })
  })

  it.each([
    ['a length below 4', Buffer.from([0x51, 0, 0, 0, 3])],
    ['a Sync longer than 10000 bytes', Buffer.from([0x53, 0, 0, 0x27, 0x15])],
    ['a Query longer than 1 GB', Buffer.from([0x51, 0x40, 0, 0, 0])],
    ['a negative length', Buffer.from([0x51, 0xff, 0xff, 0xff, 0xff])],
  ])('rejects %s as invalid message length', (_name, bytes) => {
    const reader = new FrameReader()
    reader.startTyped()
    reader.push(bytes)
    expect(catchError(() => reader.readFrames())).toMatchObject({
      sqlstate: '08P01',
      message: 'invalid message length',
    })
  })

  it('rejects a Password message after startup (no auth in progress)', () => {
    const reader = new FrameReader()
    reader.startTyped()
    reader.push(typed('p', cstr('secret')))
    expect(catchError(() => reader.readFrames())).toMatchObject({
      sqlstate: '08P01',
      message: 'invalid frontend message type 112',
    })
  })
})

describe('FrameReader, startup packets', () => {
  it('reads an SSLRequest, then a StartupMessage, then typed messages in the same read', () => {
    const ssl = Buffer.alloc(8)
    ssl.writeInt32BE(8, 0)
    ssl.writeInt32BE(StartupCode.SSLRequest, 4)
    const start = startup({ user: 'postgres', database: 'postgres' })
    const stream = Buffer.concat([ssl, start, query('select 1')])
    for (let cut = 0; cut <= stream.length; cut++) {
      const reader = new FrameReader()
      const packets: Buffer[] = []
      const frames: Frames[] = []
      const feed = (part: Buffer): void => {
        reader.push(part)
        let packet: Buffer | null
        while (!reader.isTyped && (packet = reader.readStartupPacket()) !== null) {
          packets.push(Buffer.from(packet))
          if (packet.readInt32BE(4) === StartupCode.Protocol3) reader.startTyped()
        }
        if (reader.isTyped) frames.push(...drain(reader))
      }
      feed(stream.subarray(0, cut))
      feed(stream.subarray(cut))
      expect(
        packets.map((p) => p.readInt32BE(4)),
        `cut at ${cut}`,
      ).toEqual([StartupCode.SSLRequest, StartupCode.Protocol3])
      expect(packets[1]!.equals(start)).toBe(true)
      expect(codes(frames), `cut at ${cut}`).toBe('Q')
    }
  })

  it.each([
    ['shorter than 8 bytes', 7],
    ['longer than 10000 bytes', 10001],
  ])('rejects a startup packet %s', (_name, length) => {
    const reader = new FrameReader()
    const packet = Buffer.alloc(8)
    packet.writeInt32BE(length, 0)
    reader.push(packet)
    expect(catchError(() => reader.readStartupPacket())).toMatchObject({
      sqlstate: '08P01',
      message: 'invalid length of startup packet',
    })
  })
})

function catchError(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw')
}

describe('bindInteger: the integer a Bind gives a parameter', () => {
  /** A Bind of statement "s" with these parameters ([format, bytes or null]) and format codes. */
  function bindOf(formats: number[], params: Array<Buffer | null>): { bytes: Buffer; from: number } {
    const writer = new Writer().cstring('').cstring('s').int16(formats.length)
    for (const format of formats) writer.int16(format)
    writer.int16(params.length)
    for (const param of params) {
      if (param === null) writer.int32(-1)
      else writer.int32(param.length).bytes(param)
    }
    const bytes = writer.int16(0).message('B')
    // After the header, the empty portal name and "s": where the format codes begin.
    return { bytes, from: 5 + 1 + 2 }
  }
  const int4 = (n: number) => {
    const bytes = Buffer.alloc(4)
    bytes.writeInt32BE(n)
    return bytes
  }
  const int8 = (n: number) => {
    const bytes = Buffer.alloc(8)
    bytes.writeBigInt64BE(BigInt(n))
    return bytes
  }

  it('reads text and binary (int2, int4, int8) parameters, each format as the codes say', () => {
    const text = bindOf([], [Buffer.from('7'), Buffer.from(' 12345 ')])
    expect([0, 1].map((i) => bindInteger(text.bytes, text.from, text.bytes.length, i))).toEqual([7, 12345])
    const binary = bindOf([1], [int4(4242), int8(99)])
    expect([0, 1].map((i) => bindInteger(binary.bytes, binary.from, binary.bytes.length, i))).toEqual([4242, 99])
    const mixed = bindOf([0, 1], [Buffer.from('abc'), int4(31)])
    expect([0, 1].map((i) => bindInteger(mixed.bytes, mixed.from, mixed.bytes.length, i))).toEqual([null, 31])
  })

  it('null for a NULL, a missing parameter, or a message cut short', () => {
    const bind = bindOf([], [null, Buffer.from('5')])
    expect(bindInteger(bind.bytes, bind.from, bind.bytes.length, 0)).toBeNull()
    expect(bindInteger(bind.bytes, bind.from, bind.bytes.length, 1)).toBe(5)
    expect(bindInteger(bind.bytes, bind.from, bind.bytes.length, 2)).toBeNull()
    for (let end = bind.from; end < bind.bytes.length - 3; end++)
      expect(bindInteger(bind.bytes, bind.from, end, 1), `cut at ${end}`).toBeNull()
  })
})
