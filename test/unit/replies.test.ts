// The reply reader without PGlite or sockets: ReadyForQuery counting and the release rule, the session changes a
// reply reports, and the names restored in errors, whatever the chunk boundaries (every split offset, as
// frames.test.ts does for the frame reader).
import { describe, expect, it } from 'vitest'
import { BackendCode, TxStatus } from '../../src/server/protocol/codes.ts'
import {
  encodeCommandComplete,
  encodeErrorResponse,
  encodeNotice,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../../src/server/protocol/backend-messages.ts'
import { ReplyReader, SessionChange } from '../../src/server/protocol/replies.ts'

const PARSE_COMPLETE = Buffer.from([0x31, 0, 0, 0, 4])
const BIND_COMPLETE = Buffer.from([0x32, 0, 0, 0, 4])
const rfq = (status: number) => encodeReadyForQuery(status)

/** `stream` fed as one call in chunks of `size` bytes. */
function readCall(reader: ReplyReader, stream: Buffer, size: number, trackChanges = true): void {
  reader.startCall(trackChanges)
  for (let at = 0; at < stream.length; at += size) reader.feed(stream.subarray(at, at + size), null, null)
  reader.endCall()
}

/** Every chunk size from one byte to the whole stream. */
function eachSplit(stream: Buffer, check: (size: number) => void): void {
  for (let size = 1; size <= stream.length; size++) check(size)
}

describe('ReplyReader: the release rule', () => {
  it('keeps the status of the last ReadyForQuery, whatever the chunking', () => {
    const stream = Buffer.concat([
      PARSE_COMPLETE,
      BIND_COMPLETE,
      encodeCommandComplete('SELECT 1'),
      rfq(TxStatus.Idle),
      encodeCommandComplete('BEGIN'),
      rfq(TxStatus.InTransaction),
    ])
    eachSplit(stream, (size) => {
      const reader = new ReplyReader()
      readCall(reader, stream, size)
      expect([reader.txStatus, reader.pipelineOpen, reader.atRest], `chunks of ${size}`).toEqual([
        TxStatus.InTransaction,
        false,
        false,
      ])
    })
  })

  it('is at rest only when the call ended with ReadyForQuery(I); a message after it means a pipeline is open', () => {
    const reader = new ReplyReader()
    readCall(reader, Buffer.concat([encodeCommandComplete('SELECT 1'), rfq(TxStatus.Idle)]), 3)
    expect(reader.atRest).toBe(true)
    // Sync, then Parse of the next pipeline in the same call: ReadyForQuery then ParseComplete.
    readCall(reader, Buffer.concat([rfq(TxStatus.Idle), PARSE_COMPLETE]), 4)
    expect([reader.pipelineOpen, reader.atRest]).toEqual([true, false])
    // A Flush alone: nothing answered, nothing changes.
    readCall(reader, Buffer.alloc(0), 1)
    expect(reader.pipelineOpen).toBe(true)
    // The error of a failed pipeline, then its Sync.
    readCall(reader, Buffer.concat([encodeErrorResponse('ERROR', '42601', 'syntax error'), rfq(TxStatus.Idle)]), 7)
    expect(reader.atRest).toBe(true)
    readCall(reader, rfq(TxStatus.Failed), 6)
    expect([reader.pipelineOpen, reader.atRest]).toEqual([false, false])
  })

  it('a call answered only by an error (the rest skipped until Sync) leaves the pipeline open', () => {
    const reader = new ReplyReader()
    readCall(
      reader,
      Buffer.concat([PARSE_COMPLETE, encodeErrorResponse('ERROR', '42P01', 'relation does not exist')]),
      2,
    )
    expect([reader.pipelineOpen, reader.atRest]).toEqual([true, false])
    reader.acquired()
    expect([reader.atRest, reader.txStatus]).toEqual([true, TxStatus.Idle])
  })
})

describe('ReplyReader: what a reply changed in the session', () => {
  const cases: Array<[string, Buffer, number]> = [
    ['SET', encodeCommandComplete('SET'), SessionChange.Settings],
    ['RESET', encodeCommandComplete('RESET'), SessionChange.Settings],
    ['ParameterStatus', encodeParameterStatus('TimeZone', 'UTC'), SessionChange.Settings],
    [
      'DISCARD ALL',
      encodeCommandComplete('DISCARD ALL'),
      SessionChange.Settings | SessionChange.Listening | SessionChange.StatementsWiped | SessionChange.TempDropped,
    ],
    [
      'DISCARD TEMP',
      encodeCommandComplete('DISCARD TEMP'),
      SessionChange.Settings | SessionChange.Listening | SessionChange.TempDropped,
    ],
    ['CREATE TABLE', encodeCommandComplete('CREATE TABLE'), 0],
    ['DEALLOCATE ALL', encodeCommandComplete('DEALLOCATE ALL'), SessionChange.StatementsWiped],
    ['DEALLOCATE', encodeCommandComplete('DEALLOCATE'), 0],
    ['LISTEN', encodeCommandComplete('LISTEN'), SessionChange.Listening],
    ['UNLISTEN', encodeCommandComplete('UNLISTEN'), SessionChange.Listening],
    ['SELECT', encodeCommandComplete('SELECT 12345678901234567890'), 0],
    ['SETOF-like tag', encodeCommandComplete('SETTLE'), 0],
  ]

  it.each(cases)('%s, split anywhere', (_, message, expected) => {
    const stream = Buffer.concat([message, rfq(TxStatus.Idle)])
    eachSplit(stream, (size) => {
      const reader = new ReplyReader()
      readCall(reader, stream, size)
      expect(reader.takeChanges(), `chunks of ${size}`).toBe(expected)
      expect(reader.takeChanges()).toBe(0)
    })
  })

  it("the server's own statements change nothing the client must answer for; forgetChanges drops what the server dealt with", () => {
    const reader = new ReplyReader()
    readCall(reader, Buffer.concat([encodeCommandComplete('SET'), rfq(TxStatus.Idle)]), 100, false)
    expect(reader.takeChanges()).toBe(0)
    readCall(reader, Buffer.concat([encodeCommandComplete('DISCARD ALL'), rfq(TxStatus.Idle)]), 100)
    reader.forgetChanges(SessionChange.Settings | SessionChange.Listening | SessionChange.TempDropped)
    expect(reader.takeChanges()).toBe(SessionChange.StatementsWiped)
  })
})

describe('ReplyReader: messages held for a rewrite', () => {
  const mine = 'prepared statement "pgddb.S_1" does not exist'
  const other = 'prepared statement "pgdd12.S_1" does not exist' // another client's name: not ours to touch
  const notification = Buffer.from([BackendCode.NotificationResponse, 0, 0, 0, 13, 0, 0, 0, 7, 0x6a, 0x6f, 0x62, 0, 0]) // "job", ""
  const stream = Buffer.concat([
    PARSE_COMPLETE,
    encodeErrorResponse('ERROR', '26000', mine),
    encodeNotice('01000', 'portal "pgddb.C_1" and "plain" text', 'WARNING'),
    encodeErrorResponse('ERROR', '26000', other),
    notification,
    rfq(TxStatus.Idle),
  ])
  /** Restores `pgddb.` names, drops notifications (routed elsewhere). */
  const rewrite = (message: Buffer): Buffer | null => {
    if (message[0] === BackendCode.NotificationResponse) return null
    const text = message.toString('latin1')
    if (!text.includes('"pgddb.')) return message
    const restored = Buffer.from(text.replaceAll('"pgddb.', '"'), 'latin1')
    restored.writeInt32BE(restored.length - 1, 1)
    return restored
  }
  const expected = Buffer.concat([
    PARSE_COMPLETE,
    encodeErrorResponse('ERROR', '26000', 'prepared statement "S_1" does not exist'),
    encodeNotice('01000', 'portal "C_1" and "plain" text', 'WARNING'),
    encodeErrorResponse('ERROR', '26000', other),
    rfq(TxStatus.Idle),
  ])

  it('rewrites held messages and passes the rest through, whatever the chunk boundaries', () => {
    eachSplit(stream, (size) => {
      const reader = new ReplyReader()
      const out: Buffer[] = []
      reader.startCall()
      for (let at = 0; at < stream.length; at += size)
        reader.feed(stream.subarray(at, at + size), (bytes) => out.push(bytes), rewrite)
      reader.endCall()
      expect(Buffer.concat(out).equals(expected), `chunks of ${size}`).toBe(true)
      expect(reader.atRest).toBe(true)
    })
  })

  it('copies what it passes on: the source may be reused once feed returns', () => {
    for (const hold of [rewrite, null]) {
      const reader = new ReplyReader()
      const source = Buffer.from(stream)
      const out: Buffer[] = []
      reader.feed(source, (bytes) => out.push(bytes), hold)
      const passed = Buffer.concat(out)
      source.fill(0)
      expect(passed.equals(hold ? expected : stream)).toBe(true)
      expect(Buffer.concat(out).equals(passed)).toBe(true)
    }
  })

  it('without a rewrite, each chunk passes on whole as one copy', () => {
    const reader = new ReplyReader()
    const out: Buffer[] = []
    reader.feed(stream.subarray(0, 9), (bytes) => out.push(bytes), null)
    reader.feed(stream.subarray(9), (bytes) => out.push(bytes), null)
    expect(out.map((chunk) => chunk.length)).toEqual([9, stream.length - 9])
  })
})

describe('ReplyReader: more', () => {
  it('tracks what a reply changed while it holds messages for a rewrite too', () => {
    const stream = Buffer.concat([
      encodeErrorResponse('ERROR', '0A000', 'x'),
      encodeCommandComplete('SET'),
      encodeParameterStatus('TimeZone', 'UTC'),
      rfq(TxStatus.Idle),
    ])
    eachSplit(stream, (size) => {
      const reader = new ReplyReader()
      reader.startCall()
      for (let at = 0; at < stream.length; at += size)
        reader.feed(
          stream.subarray(at, at + size),
          () => {},
          (m) => m,
        )
      reader.endCall()
      expect(reader.takeChanges(), `chunks of ${size}`).toBe(SessionChange.Settings)
    })
  })

  it('a held message with an empty body is passed to the rewrite whole', () => {
    const empty = Buffer.from([BackendCode.NoticeResponse, 0, 0, 0, 4])
    const stream = Buffer.concat([PARSE_COMPLETE, empty, rfq(TxStatus.Idle)])
    eachSplit(stream, (size) => {
      const reader = new ReplyReader()
      const held: Buffer[] = []
      const out: Buffer[] = []
      for (let at = 0; at < stream.length; at += size)
        reader.feed(
          stream.subarray(at, at + size),
          (b) => out.push(b),
          (m) => (held.push(Buffer.from(m)), m),
        )
      expect(
        held.map((m) => m.equals(empty)),
        `chunks of ${size}`,
      ).toEqual([true])
      expect(Buffer.concat(out).equals(stream)).toBe(true)
    })
  })

  it('a call that fails part way still ends: what it answered decides', () => {
    const reader = new ReplyReader()
    reader.startCall()
    reader.feed(PARSE_COMPLETE, null, null)
    reader.endCall()
    expect(reader.pipelineOpen).toBe(true)
  })
})
