// Per-client statement and portal names: the rewrite on the way in and the restore on the way out, byte for byte.
import { describe, expect, it } from 'vitest'
import * as wire from './helpers/wire.ts'
import { ClientNames, MessageRestorer } from '../src/socket/client/statements.ts'
import { encodeErrorResponse, encodeReadyForQuery, TxStatus } from '../src/socket/protocol/codes.ts'

/** Decode a frontend buffer back into [code, body text] pairs, to compare rewritten batches readably. */
function frames(bytes: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let at = 0; at < bytes.length; ) {
    const length = bytes.readInt32BE(at + 1)
    out.push([String.fromCharCode(bytes[at]!), bytes.toString('latin1', at + 5, at + 1 + length)])
    at += 1 + length
  }
  return out
}

describe('ClientNames.rewrite', () => {
  it('prefixes every statement and portal name and fixes each length', () => {
    const names = new ClientNames(7)
    const batch = Buffer.concat([
      wire.parse('S_1', 'select $1::int', [23]),
      wire.bind('C_1', 'S_1', ['5']),
      wire.describe('P', 'C_1'),
      wire.execute('C_1', 10),
      wire.close('S', 'S_1'),
      wire.sync(),
    ])
    const out = names.rewrite(batch)
    expect(frames(out)).toEqual(
      frames(
        Buffer.concat([
          wire.parse('pgdd7.S_1', 'select $1::int', [23]),
          wire.bind('pgdd7.C_1', 'pgdd7.S_1', ['5']),
          wire.describe('P', 'pgdd7.C_1'),
          wire.execute('pgdd7.C_1', 10),
          wire.close('S', 'pgdd7.S_1'),
          wire.sync(),
        ]),
      ),
    )
    expect(names.used).toBe(true)
    expect(names.statements.size).toBe(0) // parsed, then closed
  })

  it('counts a statement among those to make again only once PGlite has run its Parse', () => {
    const names = new ClientNames(3)
    const first = names.rewrite(Buffer.concat([wire.parse('S_1', 'select 1'), wire.sync()]))
    const second = names.rewrite(Buffer.concat([wire.parse('S_2', 'select 2'), wire.parse('S_3', 'select 3'), wire.close('S', 'S_3'), wire.sync()]))
    // Both batches wait for the session: a wipe now must make none of them (their own Parse will).
    expect(names.parseFrames()).toEqual([])
    names.ran(first)
    expect(names.parseFrames().map((frame) => frames(frame)[0]![1].split('\0')[0])).toEqual(['pgdd3.S_1'])
    // S_3 was closed in the same batch: only S_2 is left to make again.
    names.ran(second)
    expect(names.parseFrames().map((frame) => frames(frame)[0]![1].split('\0')[0])).toEqual(['pgdd3.S_1', 'pgdd3.S_2'])
  })

  it('leaves a batch of unnamed statements untouched, without copying it', () => {
    const names = new ClientNames(1)
    const batch = Buffer.concat([wire.parse('', 'select 1'), wire.bind('', ''), wire.execute(''), wire.sync()])
    expect(names.rewrite(batch)).toBe(batch)
    expect(names.used).toBe(false)
  })

  it('hashes names too long for Postgres to keep whole after the prefix, and restores them in errors', () => {
    const names = new ClientNames(2)
    const long = 'q'.repeat(60)
    const out = names.rewrite(wire.parse(long, 'select 1'))
    const server = frames(out)[0]![1].split('\0')[0]!
    expect(server.length).toBeLessThanOrEqual(63)
    expect(names.rewrite(wire.parse('q'.repeat(61), 'select 1')).equals(out)).toBe(false)
    const error = encodeErrorResponse('ERROR', '42P05', `prepared statement "${server}" already exists`)
    expect(wire.decodeError(names.restore(error).subarray(5)).message).toBe(`prepared statement "${long}" already exists`)
  })

  it('remembers the statements still open, for cleanup on disconnect', () => {
    const names = new ClientNames(3)
    names.rewrite(Buffer.concat([wire.parse('a', 'select 1'), wire.parse('b', 'select 2'), wire.close('S', 'a'), wire.close('P', 'b')]))
    expect([...names.statements.keys()]).toEqual(['b'])
    expect(frames(Buffer.concat(names.closeAll()))).toEqual([['C', 'Spgdd3.b\0']])
    expect(names.statements.size).toBe(0)
  })
})

describe('MessageRestorer', () => {
  const names = new ClientNames(11)
  const other = 'prepared statement "pgdd12.S_1" does not exist' // another client's name: not ours to touch
  const stream = Buffer.concat([
    Buffer.from([0x31, 0, 0, 0, 4]), // ParseComplete
    encodeErrorResponse('ERROR', '26000', 'prepared statement "pgddb.S_1" does not exist'),
    encodeErrorResponse('WARNING' as 'ERROR', '01000', 'portal "pgddb.C_1" and "plain" text', 0x4e),
    encodeErrorResponse('ERROR', '26000', other),
    encodeReadyForQuery(TxStatus.Idle),
  ])
  const expected = Buffer.concat([
    Buffer.from([0x31, 0, 0, 0, 4]),
    encodeErrorResponse('ERROR', '26000', 'prepared statement "S_1" does not exist'),
    encodeErrorResponse('WARNING' as 'ERROR', '01000', 'portal "C_1" and "plain" text', 0x4e),
    encodeErrorResponse('ERROR', '26000', other),
    encodeReadyForQuery(TxStatus.Idle),
  ])

  it('restores names whatever the chunk boundaries', () => {
    for (let size = 1; size <= stream.length; size++) {
      const restorer = new MessageRestorer((m) => names.restore(m))
      const out: Buffer[] = []
      for (let at = 0; at < stream.length; at += size) restorer.feed(stream.subarray(at, at + size), (b) => out.push(b))
      expect(Buffer.concat(out).equals(expected), `chunks of ${size}`).toBe(true)
    }
  })

  it('copies what it passes through: the source may be reused after feed returns', () => {
    const restorer = new MessageRestorer((m) => names.restore(m))
    const source = Buffer.from(stream)
    const out: Buffer[] = []
    restorer.feed(source, (b) => out.push(b))
    source.fill(0)
    expect(Buffer.concat(out).equals(expected)).toBe(true)
  })
})

describe('ClientNames.rewriteSql', () => {
  it('prefixes statement names in SQL PREPARE, EXECUTE, EXPLAIN EXECUTE and DEALLOCATE, and nothing else', () => {
    const names = new ClientNames(7)
    const sql = "PREPARE q (int) AS select 'execute q', $1; EXECUTE q(1); explain execute \"Q\"(2); deallocate prepare q; deallocate all; prepare transaction 'q'"
    const out = names.rewriteSql(wire.query(sql))
    expect(frames(out)).toEqual(
      frames(wire.query("PREPARE \"pgdd7.q\" (int) AS select 'execute q', $1; EXECUTE \"pgdd7.q\"(1); explain execute \"pgdd7.Q\"(2); deallocate prepare \"pgdd7.q\"; deallocate all; prepare transaction 'q'")),
    )
    expect(names.used).toBe(true)
    expect(names.statements.size).toBe(0) // prepared, then deallocated
  })

  it('leaves SQL without those commands untouched, without copying it', () => {
    const names = new ClientNames(7)
    const batch = Buffer.concat([wire.query("select 'prepare x' as p"), wire.parse('', 'insert into t values ($1)', []), wire.sync()])
    expect(names.rewriteSql(batch)).toBe(batch)
    expect(names.used).toBe(false)
  })
})
