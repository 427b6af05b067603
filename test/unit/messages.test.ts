// The message handlers without PGlite or sockets: what passes on to PGlite (names given the client's prefix, SQL the
// server carries out rewritten), what the client's statement registry records, and which messages the server takes
// over, byte for byte.
import { describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import { MessageReader, type Segment, type Takeover } from '../../src/server/connection/messages.ts'
import { UnnamedUse, unnamedUseOf } from '../../src/server/protocol/unnamed-use.ts'
import { NO_OP_STATEMENT } from '../../src/server/features/database-commands.ts'
import { ClientState } from '../../src/server/features/state.ts'
import { encodeErrorResponse } from '../../src/server/protocol/backend-messages.ts'

/** Decode a frontend buffer into [code, body text] pairs, to compare rewritten batches readably. */
function frames(bytes: Buffer): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let at = 0; at < bytes.length;) {
    const length = bytes.readInt32BE(at + 1)
    out.push([String.fromCharCode(bytes[at]!), bytes.toString('latin1', at + 5, at + 1 + length)])
    at += 1 + length
  }
  return out
}

interface Read {
  /** What passed on, as segments split at each takeover. */
  segments: Segment[]
  takeovers: Takeover[]
}

/** Read a batch the way the connection does: handle each message, cutting a segment at each takeover. */
function read(reader: MessageReader, batch: Buffer): Read {
  const result: Read = { segments: [], takeovers: [] }
  reader.begin(batch)
  let offset = 0
  while (offset < batch.length) {
    const end = offset + 1 + batch.readInt32BE(offset + 1)
    const takeover = reader.handle(offset, end)
    if (takeover) {
      result.segments.push(reader.take(offset))
      reader.take(end)
      result.takeovers.push(takeover)
    }
    offset = end
  }
  result.segments.push(reader.take(batch.length))
  return result
}

const reader = (id: number, managesDatabases = true) =>
  new MessageReader(new ClientState(id), managesDatabases, () => 'postgres')

describe('MessageReader: names', () => {
  it('prefixes every statement name, leaves portal names as they are, and fixes each length', () => {
    const r = reader(7)
    const batch = Buffer.concat([
      wire.parse('S_1', 'select $1::int', [23]),
      wire.bind('C_1', 'S_1', ['5']),
      wire.describe('P', 'C_1'),
      wire.execute('C_1', 10),
      wire.close('S', 'S_1'),
      wire.sync(),
    ])
    const { segments, takeovers } = read(r, batch)
    expect(takeovers).toEqual([])
    const expected = [
      wire.parse('pgdd7.S_1', 'select $1::int', [23]),
      wire.bind('C_1', 'pgdd7.S_1', ['5']),
      wire.describe('P', 'C_1'),
      wire.execute('C_1', 10),
      wire.close('S', 'pgdd7.S_1'),
      wire.sync(),
    ]
    expect(frames(segments[0]!.bytes)).toEqual(frames(Buffer.concat(expected)))
    expect(r.statements.used).toBe(true)
    expect(r.statements.count).toBe(0) // parsed, then closed
  })

  it('leaves a batch of unnamed statements untouched, without copying it', () => {
    const r = reader(1)
    const batch = Buffer.concat([wire.parse('', 'select 1'), wire.bind('', ''), wire.execute(''), wire.sync()])
    const { segments } = read(r, batch)
    expect(segments).toHaveLength(1)
    expect(segments[0]!.bytes.buffer).toBe(batch.buffer)
    expect(segments[0]!.bytes.equals(batch)).toBe(true)
    expect(r.statements.used).toBe(false)
  })

  it('counts a statement among those to make again only once PGlite has run its Parse', () => {
    const r = reader(3)
    const first = read(r, Buffer.concat([wire.parse('S_1', 'select 1'), wire.sync()])).segments[0]!.bytes
    const second = read(
      r,
      Buffer.concat([
        wire.parse('S_2', 'select 2'),
        wire.parse('S_3', 'select 3'),
        wire.close('S', 'S_3'),
        wire.sync(),
      ]),
    ).segments[0]!.bytes
    // Both batches wait for the session: a wipe now must make none of them (their own Parse will).
    expect(r.statements.parseFrames()).toEqual([])
    r.statements.ran(first)
    expect(r.statements.parseFrames().map((frame) => frames(frame)[0]![1].split('\0')[0])).toEqual(['pgdd3.S_1'])
    // S_3 was closed in the same batch: only S_2 is left to make again.
    r.statements.ran(second)
    expect(r.statements.parseFrames().map((frame) => frames(frame)[0]![1].split('\0')[0])).toEqual([
      'pgdd3.S_1',
      'pgdd3.S_2',
    ])
  })

  it('hashes names too long for Postgres to keep whole after the prefix, and restores them in errors', () => {
    const r = reader(2)
    const long = 'q'.repeat(60)
    const out = read(r, wire.parse(long, 'select 1')).segments[0]!.bytes
    const server = frames(out)[0]![1].split('\0')[0]!
    expect(server.length).toBeLessThanOrEqual(63)
    expect(read(r, wire.parse('q'.repeat(61), 'select 1')).segments[0]!.bytes.equals(out)).toBe(false)
    const error = encodeErrorResponse('ERROR', '42P05', `prepared statement "${server}" already exists`)
    expect(wire.decodeError(r.statements.restore(error).subarray(5)).message).toBe(
      `prepared statement "${long}" already exists`,
    )
  })

  it('remembers the statements still open, for cleanup on disconnect', () => {
    const r = reader(3)
    read(
      r,
      Buffer.concat([
        wire.parse('a', 'select 1'),
        wire.parse('b', 'select 2'),
        wire.close('S', 'a'),
        wire.close('P', 'b'),
      ]),
    )
    expect(r.statements.has('b') && !r.statements.has('a')).toBe(true)
    expect(frames(Buffer.concat(r.statements.closeAll()))).toEqual([['C', 'Spgdd3.b\0']])
    expect(r.statements.count).toBe(0)
  })

  it('prefixes statement names in SQL PREPARE, EXECUTE, EXPLAIN EXECUTE and DEALLOCATE, and nothing else', () => {
    const r = reader(7)
    const sql =
      "PREPARE q (int) AS select 'execute q', $1; EXECUTE q(1); explain execute \"Q\"(2); deallocate prepare q; prepare transaction 'q'"
    const out = read(r, wire.query(sql)).segments[0]!.bytes
    expect(frames(out)).toEqual(
      frames(
        wire.query(
          'PREPARE "pgdd7.q" (int) AS select \'execute q\', $1; EXECUTE "pgdd7.q"(1); explain execute "pgdd7.Q"(2); deallocate prepare "pgdd7.q"; prepare transaction \'q\'',
        ),
      ),
    )
    expect(r.statements.count).toBe(0) // prepared, then deallocated
  })

  it("DEALLOCATE ALL and CLOSE ALL in a Query: stand-ins that close the client's own names alone, taken over", () => {
    const r = reader(7)
    const { takeovers } = read(r, wire.query('prepare q as select 1; deallocate all; close all'))
    expect(takeovers).toMatchObject([
      {
        kind: 'query-with-stand-ins',
        standIns: [
          { index: 1, tag: 'DEALLOCATE ALL' },
          { index: 2, tag: 'CLOSE CURSOR ALL' },
        ],
      },
    ])
    const sql = frames((takeovers[0] as { frame: Buffer }).frame)[0]![1]
    expect(sql).toContain(
      "FROM pg_catalog.pg_prepared_statements WHERE name !~ '^pgdd[0-9a-z]*[.]' OR pg_catalog.starts_with(name, 'pgdd7.')",
    )
    expect(sql).toContain(
      "FROM pg_catalog.pg_cursors WHERE name !~ '^pgdd[0-9a-z]*[.]' OR pg_catalog.starts_with(name, 'pgdd7.')",
    )
    // Forgotten only once the stand-in ran (discard-all.ts queryWithStandIns asks PGlite what is left).
    expect(r.statements.count).toBe(1)
    r.statements.keepExisting([])
    expect(r.statements.count).toBe(0)
  })

  it('a portal and a SQL cursor of one name are one: asyncpg binds a portal and MOVEs it in SQL, psycopg DECLAREs and Executes', () => {
    const r = reader(7)
    const batch = Buffer.concat([
      wire.bind('__asyncpg_portal_1__', 'S_1'),
      wire.query('MOVE FORWARD 5 "__asyncpg_portal_1__"'),
      wire.query('DECLARE "c" CURSOR FOR select 1'),
      wire.describe('P', 'c'),
      wire.execute('c', 10),
    ])
    const out = read(r, batch).segments[0]!.bytes
    expect(frames(out).map(([code, body]) => [code, body.split('\0')[0]])).toEqual([
      ['B', '__asyncpg_portal_1__'],
      ['Q', 'MOVE FORWARD 5 "__asyncpg_portal_1__"'],
      ['Q', 'DECLARE "c" CURSOR FOR select 1'],
      ['D', 'Pc'],
      ['E', 'c'],
    ])
    expect(r.statements.holdsCursors).toBe(false)
  })

  it('a cursor declared WITH HOLD outlives the transaction: its name gets the prefix wherever the client names it, until closed', () => {
    const r = reader(7)
    const declared = read(
      r,
      wire.query('begin; declare "Big" no scroll cursor with hold for select 1; commit; fetch 2 from "Big"'),
    ).segments[0]!.bytes
    expect(frames(declared)[0]![1]).toBe(
      'begin; declare "pgdd7.Big" no scroll cursor with hold for select 1; commit; fetch 2 from "pgdd7.Big"\0',
    )
    expect(r.statements.holdsCursors).toBe(true)
    const used = read(
      r,
      Buffer.concat([
        wire.describe('P', 'Big'),
        wire.execute('Big', 3),
        wire.query('move all in "Big"; update t set a = 1 where current of "Big"; fetch big'),
        wire.parse('', 'fetch 1 from "Big"'),
      ]),
    ).segments[0]!.bytes
    expect(frames(used).map(([code, body]) => [code, body.replace(/\0.*$/s, '')])).toEqual([
      ['D', 'Ppgdd7.Big'],
      ['E', 'pgdd7.Big'],
      ['Q', 'move all in "pgdd7.Big"; update t set a = 1 where current of "pgdd7.Big"; fetch big'],
      ['P', ''],
    ])
    expect(frames(used)[3]![1]).toContain('fetch 1 from "pgdd7.Big"')
    // Cleanup closes it by the name PGlite knows.
    expect(frames(Buffer.concat(r.statements.closeAll()))).toEqual([['C', 'Ppgdd7.Big\0']])
    read(r, wire.query('declare h cursor with hold for select 1; close h'))
    expect(r.statements.holdsCursors).toBe(false)
  })

  it('leaves SQL without those commands untouched, without copying it', () => {
    const r = reader(7)
    const batch = Buffer.concat([
      wire.query("select 'prepare x' as p"),
      wire.parse('', 'insert into t values ($1)', []),
      wire.sync(),
    ])
    const out = read(r, batch).segments[0]!.bytes
    expect(out.buffer).toBe(batch.buffer)
    expect(r.statements.used).toBe(false)
  })
})

describe('MessageReader: takeovers', () => {
  it('a COPY FROM STDIN Query, cutting the batch there', () => {
    const r = reader(1)
    const copy = wire.query('COPY items (a, b) FROM STDIN WITH (FORMAT csv)')
    const { segments, takeovers } = read(r, Buffer.concat([wire.query('select 1'), copy, wire.copyData('1,2\n')]))
    expect(takeovers).toEqual([
      { kind: 'copy-in', copy: { table: 'items', columns: 2, binary: false }, viaQuery: true, frame: copy },
    ])
    expect(segments.map((s) => frames(s.bytes).map(([code]) => code))).toEqual([['Q'], ['d']])
  })

  it('not a COPY: the word inside a literal', () => {
    const { takeovers } = read(reader(1), wire.query("select 'copy t from stdin'"))
    expect(takeovers).toEqual([])
  })

  it('a prepared COPY FROM STDIN is taken over at the Execute of its portal, with the names PGlite knows', () => {
    const r = reader(4)
    const batch = Buffer.concat([
      wire.parse('c', 'copy t from stdin'),
      wire.bind('p', 'c'),
      wire.execute('p'),
      wire.sync(),
    ])
    const { segments, takeovers } = read(r, batch)
    expect(takeovers).toHaveLength(1)
    expect(takeovers[0]).toMatchObject({
      kind: 'copy-in',
      viaQuery: false,
      copy: { table: 't', columns: null, binary: false },
    })
    expect(frames((takeovers[0] as { frame: Buffer }).frame)).toEqual(frames(wire.execute('p')))
    expect(frames(segments[0]!.bytes).map(([code]) => code)).toEqual(['P', 'B'])
    // Bound again to an ordinary statement, the portal is ordinary.
    expect(
      read(r, Buffer.concat([wire.parse('s', 'select 1'), wire.bind('p', 's'), wire.execute('p')])).takeovers,
    ).toEqual([])
  })

  it('DISCARD ALL and DEALLOCATE ALL alone (comments allowed); DISCARD ALL among other statements passes on (PGlite refuses it)', () => {
    expect(read(reader(1), wire.query(' discard ALL;')).takeovers).toMatchObject([
      { kind: 'discard', command: 'DISCARD ALL', via: 'query' },
    ])
    expect(read(reader(1), wire.query('/* reset */ DISCARD ALL;; -- pool')).takeovers).toMatchObject([
      { kind: 'discard', command: 'DISCARD ALL' },
    ])
    expect(read(reader(1), wire.query('DEALLOCATE PREPARE ALL')).takeovers).toMatchObject([
      { kind: 'discard', command: 'DEALLOCATE ALL' },
    ])
    expect(read(reader(1), wire.query('select 1; discard all')).takeovers).toEqual([])
  })

  it("DISCARD TEMP among other statements: the drop of the client's own temporary objects in its place, taken over", () => {
    const { takeovers } = read(reader(1), wire.query('select 1; discard temp; select 2'))
    expect(takeovers).toMatchObject([{ kind: 'query-with-stand-ins', standIns: [{ index: 1, tag: 'DISCARD TEMP' }] }])
    const sql = frames((takeovers[0] as { frame: Buffer }).frame)[0]![1]
    expect(sql.startsWith('select 1; DO $pgdd$')).toBe(true)
    expect(sql.endsWith('END$pgdd$; select 2\0')).toBe(true)
  })

  it('a prepared DISCARD: PGlite parses a stand-in, the Execute of its portal is taken over once', () => {
    const r = reader(5)
    const batch = Buffer.concat([
      wire.parse('S_1', 'DISCARD ALL'),
      wire.bind('', 'S_1'),
      wire.execute(''),
      wire.execute(''),
      wire.sync(),
    ])
    const { segments, takeovers } = read(r, batch)
    expect(frames(segments[0]!.bytes)).toEqual(
      frames(Buffer.concat([wire.parse('pgdd5.S_1', NO_OP_STATEMENT), wire.bind('', 'pgdd5.S_1')])),
    )
    expect(takeovers).toMatchObject([{ kind: 'discard', command: 'DISCARD ALL', via: 'execute' }])
    expect(frames(segments[1]!.bytes).map(([code]) => code)).toEqual(['E', 'S'])
    const temp = read(reader(5), wire.parse('', '-- drop mine\nDISCARD TEMP')).segments[0]!.bytes
    expect(frames(temp)[0]![1]).toContain('DO $pgdd$')
  })

  it('CREATE/DROP DATABASE as a Query, when the server manages databases', () => {
    expect(read(reader(1), wire.query('create database "Shop"')).takeovers).toMatchObject([
      { kind: 'database-command', via: 'query', command: { kind: 'create', name: 'Shop' } },
    ])
    expect(read(reader(1), wire.query('DROP DATABASE IF EXISTS a WITH (FORCE)')).takeovers).toMatchObject([
      { command: { kind: 'drop', name: 'a', ifExists: true, force: true } },
    ])
    expect(read(reader(1, false), wire.query('create database shop')).takeovers).toEqual([])
  })

  it('a prepared CREATE DATABASE: PGlite gets a no-op, the Bind carries it out, the Execute is answered with its tag', () => {
    const r = reader(5)
    const batch = Buffer.concat([
      wire.parse('', 'CREATE DATABASE w1'),
      wire.bind('', ''),
      wire.execute(''),
      wire.sync(),
    ])
    const { segments, takeovers } = read(r, batch)
    expect(frames(segments[0]!.bytes)).toEqual(frames(wire.parse('', NO_OP_STATEMENT)))
    expect(takeovers.map((t) => t.kind)).toEqual(['database-command', 'tagged-execute'])
    expect(takeovers[0]).toMatchObject({ via: 'bind', command: { kind: 'create', name: 'w1' } })
    expect(frames(segments[2]!.bytes).map(([code]) => code)).toEqual(['S'])
  })

  it('select pglite_dev_db.reset() is rewritten into a setting, by Query or by binding a prepared one', () => {
    const r = reader(6)
    const out = read(r, wire.query('SELECT pglite_dev_db.reset ( )')).segments[0]!.bytes
    expect(frames(out)[0]![1]).toContain("set_config('pglite_dev_db.reset', 'requested', false)")
    expect(r.client.resetRequested).toBe(true)
    const s = reader(6)
    read(s, wire.parse('r', 'select pglite_dev_db.reset()'))
    expect(s.client.resetRequested).toBe(false)
    read(s, Buffer.concat([wire.bind('', 'r'), wire.execute(''), wire.sync()]))
    expect(s.client.resetRequested).toBe(true)
  })

  it('Terminate', () => {
    expect(read(reader(1), Buffer.concat([wire.query('select 1'), wire.terminate()])).takeovers).toEqual([
      { kind: 'terminate' },
    ])
  })
})

describe('MessageReader: the unnamed statement', () => {
  it('records, per segment, whether it makes the unnamed statement or binds it first', () => {
    const cases: Array<[Buffer, number]> = [
      [Buffer.concat([wire.parse('', 'select 1'), wire.bind('', ''), wire.sync()]), UnnamedUse.Parsed],
      [Buffer.concat([wire.bind('', ''), wire.execute(''), wire.sync()]), UnnamedUse.ReferencedFirst],
      [
        Buffer.concat([wire.describe('S', ''), wire.parse('', 'select 1')]),
        UnnamedUse.ReferencedFirst | UnnamedUse.Parsed,
      ],
      [Buffer.concat([wire.parse('n', 'select 1'), wire.bind('', 'n'), wire.describe('P', '')]), 0],
    ]
    for (const [batch, use] of cases) {
      const segment = read(reader(1), batch).segments[0]!
      expect(segment.unnamedUse).toBe(use)
      expect(unnamedUseOf(segment.bytes)).toBe(use)
    }
  })
})

describe('MessageReader: more of the registry', () => {
  it('a taken-over Bind of the unnamed statement does not count for the segment before it', () => {
    const r = reader(8)
    read(r, Buffer.concat([wire.parse('', 'create database w'), wire.sync()]))
    const { segments, takeovers } = read(
      r,
      Buffer.concat([wire.sync(), wire.bind('', ''), wire.execute(''), wire.sync()]),
    )
    expect(takeovers.map((t) => t.kind)).toEqual(['database-command', 'tagged-execute'])
    expect(segments[0]!.unnamedUse).toBe(0)
  })

  it('without a catalog of databases, CREATE DATABASE and reset calls reach PGlite as written', () => {
    const r = reader(9, false)
    const batch = Buffer.concat([
      wire.parse('', 'create database w'),
      wire.bind('', ''),
      wire.execute(''),
      wire.query('select pglite_dev_db.reset()'),
      wire.sync(),
    ])
    const { segments, takeovers } = read(r, batch)
    expect(takeovers).toEqual([])
    expect(segments[0]!.bytes.equals(batch)).toBe(true)
    expect(r.client.resetRequested).toBe(false)
  })

  it('a closed portal is no longer a COPY; a failed pipeline ends every special portal', () => {
    const r = reader(10)
    read(r, Buffer.concat([wire.parse('c', 'copy t from stdin'), wire.bind('p', 'c'), wire.close('P', 'p')]))
    expect(read(r, wire.execute('p')).takeovers).toEqual([])
    read(r, wire.bind('q', 'c'))
    r.statements.portalsEnded()
    expect(read(r, wire.execute('q')).takeovers).toEqual([])
    read(r, wire.bind('q', 'c'))
    expect(read(r, wire.execute('q')).takeovers).toHaveLength(1)
  })

  it('SQL PREPARE of a name made by Parse replaces it: its Parse is no longer made again after a wipe', () => {
    const r = reader(11)
    r.statements.ran(read(r, wire.parse('s', 'select 1')).segments[0]!.bytes)
    expect(r.statements.parseFrames()).toHaveLength(1)
    read(r, wire.query('prepare s as select 2'))
    expect(r.statements.parseFrames()).toEqual([])
    expect(r.statements.has('s')).toBe(true)
  })

  it('a segment with several changed messages is written once, as each message would be on its own', () => {
    const r = reader(12)
    const batch = Buffer.concat([
      wire.query('select 1'),
      wire.bind('a', 'b'),
      wire.sync(),
      wire.execute('a'),
      wire.query('execute b'),
      wire.flush(),
    ])
    const expected = Buffer.concat([
      wire.query('select 1'),
      wire.bind('a', 'pgddc.b'),
      wire.sync(),
      wire.execute('a'),
      wire.query('execute "pgddc.b"'),
      wire.flush(),
    ])
    expect(frames(read(r, batch).segments[0]!.bytes)).toEqual(frames(expected))
  })
})
