// A database thread's filter of PGlite's repeated ParameterStatus messages, without PGlite: what it leaves out of a
// client's reply and what it learns, whatever the chunk boundaries (every split offset, as replies.test.ts does).
import { describe, expect, it } from 'vitest'
import { TxStatus } from '../../src/server/protocol/codes.ts'
import {
  encodeCommandComplete,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../../src/server/protocol/backend-messages.ts'
import { ReportedSettings } from '../../src/server/protocol/repeated-reports.ts'

const PATH = encodeParameterStatus('search_path', '"$user", public')
const TRUNCATE = encodeCommandComplete('TRUNCATE TABLE')
const READY = encodeReadyForQuery(TxStatus.Idle)
/** A DataRow longer than any chunk below but one: its body spans chunks. */
const ROW = Buffer.concat([Buffer.from([0x44, 0, 0, 0, 4 + 40]), Buffer.alloc(40, 7)])

/** `stream` passed as one call in chunks of `size` bytes: what is kept of it. */
function passCall(reported: ReportedSettings, stream: Buffer, size: number, leaveOut = true): Buffer {
  reported.startCall()
  const kept: Uint8Array[] = []
  for (let at = 0; at < stream.length; at += size) kept.push(reported.pass(stream.subarray(at, at + size), leaveOut))
  return Buffer.concat(kept)
}

function eachSplit(stream: Buffer, check: (size: number) => void): void {
  for (let size = 1; size <= stream.length; size++) check(size)
}

describe('ReportedSettings', () => {
  it('keeps the first report of a value and leaves out its repeats, whatever the chunking', () => {
    const first = Buffer.concat([ROW, TRUNCATE, PATH, READY])
    const again = Buffer.concat([TRUNCATE, PATH, ROW, PATH, READY])
    eachSplit(again, (size) => {
      const reported = new ReportedSettings()
      expect(passCall(reported, first, first.length)).toEqual(first)
      // A report split across chunks is learnt but cannot be left out: its start went on already.
      const kept = passCall(reported, again, size)
      const whole = Buffer.concat([TRUNCATE, ROW, READY])
      const splitAt = (offset: number) => Math.floor(offset / size) !== Math.floor((offset + PATH.length - 1) / size)
      const expected = Buffer.concat([
        TRUNCATE,
        ...(splitAt(TRUNCATE.length) ? [PATH] : []),
        ROW,
        ...(splitAt(TRUNCATE.length + PATH.length + ROW.length) ? [PATH] : []),
        READY,
      ])
      expect(kept, `chunks of ${size}`).toEqual(expected)
      if (size >= again.length) expect(kept).toEqual(whole)
    })
  })

  it('keeps a report whose value changed, and learns it', () => {
    const reported = new ReportedSettings()
    const other = encodeParameterStatus('search_path', 'pg_catalog')
    expect(passCall(reported, Buffer.concat([PATH, READY]), 64)).toEqual(Buffer.concat([PATH, READY]))
    expect(passCall(reported, Buffer.concat([other, READY]), 64)).toEqual(Buffer.concat([other, READY]))
    expect(passCall(reported, Buffer.concat([other, READY]), 64)).toEqual(READY)
    expect(passCall(reported, Buffer.concat([PATH, READY]), 64)).toEqual(Buffer.concat([PATH, READY]))
  })

  it('learns from output it must not change (the server reads it), and leaves the repeat out of the next reply', () => {
    const reported = new ReportedSettings()
    const capture = Buffer.concat([PATH, READY])
    expect(passCall(reported, capture, 3, false)).toEqual(capture)
    expect(passCall(reported, capture, 3, false)).toEqual(capture)
    expect(passCall(reported, Buffer.concat([TRUNCATE, PATH, READY]), 64)).toEqual(Buffer.concat([TRUNCATE, READY]))
  })

  it('keeps every report after forget() until it has learnt the value again', () => {
    const reported = new ReportedSettings()
    const reply = Buffer.concat([PATH, READY])
    passCall(reported, reply, 64)
    reported.forget()
    expect(passCall(reported, reply, 64)).toEqual(reply)
    expect(passCall(reported, reply, 64)).toEqual(READY)
  })

  it('hands back the chunk itself when it leaves nothing out', () => {
    const reported = new ReportedSettings()
    reported.startCall()
    const chunk = Buffer.concat([ROW, TRUNCATE, READY])
    expect(reported.pass(chunk, true)).toBe(chunk)
  })
})
