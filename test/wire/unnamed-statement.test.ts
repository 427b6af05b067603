// Each client's unnamed prepared statement is its own, as with a backend per client: a client that made it in an
// earlier unit (libpq's PQprepare(conn, "") then PQexecPrepared, PHP's pg_prepare($c, ""), Ruby pg's prepare(''))
// binds its own statement whatever other clients, or the server itself, did with the session's meanwhile; a client
// that has none gets Postgres's 26000. The same steps run against real PostgreSQL when PG_ORACLE_URL is set.
import { describe, expect, it } from 'vitest'
import type { RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'

const { start, connect, holdSession } = useDevDbs()

const reply = async (client: RawClient): Promise<wire.Summary> => wire.summarize(await client.until('ReadyForQuery'))
const codes = (summary: wire.Summary): string[] => summary.errors.map((error) => error.code)

/** Parse '' and Sync, a unit of its own, as PQprepare(conn, "", ...) sends it. */
async function prepareUnnamed(client: RawClient, sql: string): Promise<void> {
  await client.send(wire.parse('', sql), wire.sync())
  expect(codes(await reply(client))).toEqual([])
}

/** Bind '', Execute and Sync, as PQexecPrepared(conn, "", ...) sends them. */
async function execUnnamed(client: RawClient, params: string[] = []): Promise<wire.Summary> {
  await client.send(wire.bind('', '', params), wire.execute(''), wire.sync())
  return reply(client)
}

const targets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
const oracleUrl = process.env.PG_ORACLE_URL
if (oracleUrl) targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => oracleUrl])

describe.each(targets)("a client's unnamed statement, made in one unit and bound in a later one: %s", (_, serve) => {
  it("is the client's own while other clients make theirs; a client that made none gets 26000", async () => {
    const url = await serve()
    const [a, b, c] = await Promise.all([connect(url), connect(url), connect(url)])
    await prepareUnnamed(a, "select 'a' as who, $1::int as k")
    await prepareUnnamed(b, "select 'b' as who")
    expect((await execUnnamed(a, ['1'])).rows).toEqual([['a', '1']])
    expect((await execUnnamed(b)).rows).toEqual([['b']])
    expect(codes(await execUnnamed(c))).toEqual(['26000'])
    expect((await execUnnamed(a, ['2'])).rows).toEqual([['a', '2']])
    await prepareUnnamed(b, "select 'b again' as who")
    // Describe of the statement first is the same reference to it.
    await a.send(wire.describe('S', ''), wire.sync())
    expect((await reply(a)).fields).toEqual(['who', 'k'])
    expect((await execUnnamed(b)).rows).toEqual([['b again']])
    expect((await execUnnamed(a, ['3'])).rows).toEqual([['a', '3']])
  })

  it("what the client's own backend would have dropped stays dropped: its simple Query, its Close", async () => {
    const url = await serve()
    const [a, b] = await Promise.all([connect(url), connect(url)])
    await prepareUnnamed(a, 'select 1')
    expect((await a.query('select 2')).errors).toEqual([])
    await prepareUnnamed(b, "select 'b' as who")
    expect(codes(await execUnnamed(a))).toEqual(['26000'])
    await prepareUnnamed(a, 'select 3')
    await a.send(wire.close('S', ''), wire.sync())
    await reply(a)
    await prepareUnnamed(b, "select 'b' as who")
    expect(codes(await execUnnamed(a))).toEqual(['26000'])
  })

  it("survives another client's Query that the server takes over (asyncpg's pool reset with CLOSE ALL, DISCARD TEMP among statements)", async () => {
    const url = await serve()
    const [a, b] = await Promise.all([connect(url), connect(url)])
    await prepareUnnamed(a, "select 'a' as who")
    for (const sql of [
      'CLOSE ALL',
      'select 1; deallocate all',
      'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;',
      'select 1; discard temp',
    ]) {
      expect((await b.query(sql)).errors, sql).toEqual([])
      expect((await execUnnamed(a)).rows, sql).toEqual([['a']])
    }
  })

  it('fails as Postgres fails to plan it again when another client dropped its table', async () => {
    const url = await serve()
    const [a, b] = await Promise.all([connect(url), connect(url)])
    const table = `unnamed_dropped_${process.pid}`
    expect((await b.query(`create table ${table} (x int); insert into ${table} values (7)`)).errors).toEqual([])
    await prepareUnnamed(a, `select x from ${table}`)
    expect((await execUnnamed(a)).rows).toEqual([['7']])
    expect((await b.query(`drop table ${table}`)).errors).toEqual([])
    const summary = await execUnnamed(a)
    expect(codes(summary)).toEqual(['42P01'])
    expect(summary.status).toBe('I')
    expect((await a.query('select 1')).rows).toEqual([['1']])
  })

  it("survives what runs between the client's units on its behalf: its settings, its temporary table, the advisory lock functions", async () => {
    const url = await serve()
    const a = await connect(url)
    expect((await a.query("set work_mem = '1234kB'; create temp table unnamed_mine (x int)")).errors).toEqual([])
    await prepareUnnamed(a, "select current_setting('work_mem') as work_mem")
    expect((await execUnnamed(a)).rows).toEqual([['1234kB']])
    await prepareUnnamed(a, 'select pg_advisory_lock(4242)::text as locked')
    expect((await execUnnamed(a)).rows).toEqual([['']])
    expect((await a.query('select pg_advisory_unlock_all()')).errors).toEqual([])
  })
})

describe("a client's unnamed statement and combined calls", () => {
  const waitersAre = (dev: DevDb, count: number): Promise<void> =>
    expect.poll(() => dev.server.getStats().waitingClients, { timeout: 5_000 }).toBe(count)

  it("a rider's Parse makes the session's unnamed statement its own, a rider's Query drops it: each client still binds its own", async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const [a, b, c] = await Promise.all([connect(dev.url), connect(dev.url), connect(dev.url)])
    const before = dev.server.getStats()
    await a.send(wire.parse('', "select 'a' as who"), wire.sync())
    await waitersAre(dev, 1)
    await b.send(wire.parse('', "select 'b' as who"), wire.sync())
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')
    expect(codes(await reply(a))).toEqual([])
    expect(codes(await reply(b))).toEqual([])
    expect(dev.server.getStats().combinedCalls - before.combinedCalls).toBe(1)
    // B's made last: A's is made again for A, then B's for B.
    expect((await execUnnamed(a)).rows).toEqual([['a']])
    expect((await execUnnamed(b)).rows).toEqual([['b']])

    const held = await holdSession(dev)
    await a.send(wire.parse('', "select 'a again' as who"), wire.sync())
    await waitersAre(dev, 1)
    await c.send(wire.query('select 1'))
    await waitersAre(dev, 2)
    expect((await held.query('commit')).status).toBe('I')
    expect(codes(await reply(a))).toEqual([])
    expect((await reply(c)).rows).toEqual([['1']])
    expect(dev.server.getStats().combinedCalls - before.combinedCalls).toBe(2)
    // C's Query, after A's Parse in the same call, dropped the session's unnamed statement: A's is made again.
    expect((await execUnnamed(a)).rows).toEqual([['a again']])
  })
})
