// Recursion deeper than Postgres's stack check allows (a recursive SQL or PL/pgSQL function, deeply nested jsonb, a
// long chain of operators) fails that statement with 54001, as on PostgreSQL, and the session goes on, in a database
// whose thread started after another one's recursion too (that one needs more of its stack). A client cannot raise
// max_stack_depth past what the thread's stack holds (22023, as for any value out of range). Where the
// native stack runs out first (a PGlite in the server's own thread), the database is lost and its clients are told
// with FATAL; before, PGlite swallowed V8's stack overflow and the client waited for an answer that never came.
import { describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { targets, useInProcessTarget } from '../helpers/targets.ts'

const oracleUrl = process.env.PG_ORACLE_URL
const STALL_MS = 3_000

const RECURSIVE_SQL = 'create or replace function down(int) returns int as $$ select down($1 + 1) $$ language sql'
const RECURSIVE_PLPGSQL =
  'create or replace function down_pl(n int) returns int language plpgsql as $$ begin return down_pl(n + 1); end $$'
const CASES: Array<[what: string, setup: string | null, sql: string]> = [
  ['a recursive SQL function', RECURSIVE_SQL, 'select down(1)'],
  ['a recursive PL/pgSQL function', RECURSIVE_PLPGSQL, 'select down_pl(1)'],
  ['jsonb nested 100,000 deep', null, "select (repeat('[', 100000) || repeat(']', 100000))::jsonb"],
  ['50,000 additions in a row', null, `select 1${' + 1'.repeat(50_000)}`],
]

/** Each case on one connection: its SQLSTATE, then whether the same connection still answers. */
async function recurse(client: RawClient): Promise<Array<[string, string[], Array<Array<string | null>>]>> {
  const seen: Array<[string, string[], Array<Array<string | null>>]> = []
  for (const [what, setup, sql] of CASES) {
    if (setup) expect((await client.query(setup)).errors).toEqual([])
    const failed = await client.query(sql)
    seen.push([what, failed.errors.map((error) => error.code ?? ''), (await client.query('select 1')).rows])
  }
  return seen
}

const EXPECTED = CASES.map(([what]) => [what, ['54001'], [['1']]])

describe('recursion past the stack limit', () => {
  const { start, connect } = useDevDbs()

  it('fails the statement with 54001 and the session goes on', async () => {
    const dev = await start()
    const client = await connect(dev.url)
    expect(await recurse(client)).toEqual(EXPECTED)
    const other = await connect(dev.url)
    expect((await other.query("select current_setting('max_stack_depth')")).rows).toEqual([['250kB']])
  })

  it('does so in a database whose thread starts after another one recursed', async () => {
    const dev = await start()
    const first = await connect(dev.url)
    expect(await recurse(first)).toEqual(EXPECTED)
    expect((await first.query('create database later')).errors).toEqual([])
    expect(await recurse(await connect(dev.url, { database: 'later' }))).toEqual(EXPECTED)
  })

  it('refuses a larger max_stack_depth however it is set (22023), so recursion still ends in 54001', async () => {
    const dev = await start()
    const client = await connect(dev.url)
    const outOfRange = (kb: number) => [
      '22023',
      `${kb} kB is outside the valid range for parameter "max_stack_depth" (100 kB .. 250 kB)`,
    ]
    const raise = [
      "set max_stack_depth = '7MB'",
      "select pg_catalog.set_config('max_stack_depth', '251kB', false)",
      "alter role postgres set max_stack_depth = '1MB'",
      `${RECURSIVE_SQL.replace(' language sql', " language sql set max_stack_depth = '7MB'")}`,
    ]
    for (const sql of raise)
      expect((await client.query(sql)).errors.map(({ code, message }) => [code, message])).toEqual([
        outOfRange(sql.includes('251kB') ? 251 : sql.includes('1MB') ? 1024 : 7168),
      ])
    expect((await client.query("set max_stack_depth = '200kB'")).errors).toEqual([])
    expect(await recurse(client)).toEqual(EXPECTED)
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    const client = await connectRaw(oracleUrl!)
    try {
      expect(await recurse(client)).toEqual(EXPECTED)
    } finally {
      await client.query('drop function if exists down(int), down_pl(int)')
      client.destroy()
    }
  })
})

describe.each(targets)("recursion past the native stack on $name (PGlite in the server's thread)", (target) => {
  const { start, connect } = useInProcessTarget(target)

  it(
    target.name === 'patched' ? 'ends the database with FATAL, never a missing reply' : 'leaves the client waiting',
    async () => {
      const server = await start()
      const client = await connect(server.url)
      expect((await client.query(RECURSIVE_SQL)).errors).toEqual([])
      await client.send(wire.query('select down(1)'))
      if (target.name === 'patched') {
        const error = wire.decodeError((await client.next('ErrorResponse')).body)
        expect(error).toMatchObject({ severity: 'FATAL', code: 'XX000' })
        expect(error.message).toMatch(/stack/)
        await withDeadline(client.closed, STALL_MS, 'the client closed after its database was lost')
        const late = await connect(server.url).then(
          () => 'connected',
          (refused: Error) => refused.message,
        )
        expect(late).toMatch(/XX000|stopped unexpectedly/)
      } else {
        await expect(client.next('ReadyForQuery', { deadlineMs: STALL_MS })).rejects.toThrow(/stalled/)
      }
    },
  )
})
