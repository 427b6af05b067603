// Several clients' units in one engine call (session/combined-calls.ts): units that wait together run in one call,
// each client gets its own replies, and no unit runs inside another client's transaction or settings. Units are made
// to wait together by a holder's open transaction; its COMMIT lets them go as one call.
import path from 'node:path'
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { DbThread } from '../../src/engine/thread.ts'
import { scratchDir, useDevDbs } from '../helpers/dev-db.ts'
import { sendCancelRequest, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect, holdSession } = useDevDbs()
/** Rows of about 1 KB: far more than the kernel's socket buffers and the server's 1 MB for a client take. */
const BIG_ROWS = 8_000

async function waitersAre(dev: DevDb, count: number): Promise<void> {
  await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 5_000 }).toBe(count)
}

const sendCancel = (dev: DevDb, client: RawClient): Promise<void> => sendCancelRequest(dev.url, client.backendKey)

const reply = async (client: RawClient): Promise<wire.Summary> => wire.summarize(await client.until('ReadyForQuery'))
const errorsOf = (summary: wire.Summary) => summary.errors.map((e) => [e.severity, e.code])

/**
 * A's unit, then B's, waiting together behind a holder's transaction; the holder commits, so that both run in one
 * call, and A's answer has come. Returns the stats from before the call.
 */
async function aThenB(
  dev: DevDb,
  a: RawClient,
  aSql: string,
  b: RawClient,
  bSql: string,
): Promise<{ before: ReturnType<DevDb['server']['getStats']>; first: wire.Summary }> {
  const holder = await holdSession(dev)
  await a.send(wire.query(aSql))
  await waitersAre(dev, 1)
  await b.send(wire.query(bSql))
  await waitersAre(dev, 2)
  const before = dev.server.getStats()
  expect((await holder.query('commit')).status).toBe('I')
  return { before, first: await reply(a) }
}

/** A's next unit went into the running call (combined-calls.ts #addToRunning): three units in it since `before`. */
const addedToTheCall = (dev: DevDb, before: { combinedUnits: number }): Promise<void> =>
  expect.poll(() => dev.server.getStats().combinedUnits - before.combinedUnits, { timeout: 5_000 }).toBe(3)

describe("several clients' units in one call", () => {
  it('run together, each client getting its own rows; an error stays with its unit', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const [a, b, c] = await Promise.all([connect(dev.url), connect(dev.url), connect(dev.url)])
    const before = dev.server.getStats()

    await a.send(wire.query('select 1/0'))
    await b.send(wire.query("select 'b' as who"))
    await c.send(
      wire.parse('', 'select $1::int * 2 as n'),
      wire.bind('', '', ['21']),
      wire.describe('P', ''),
      wire.execute(''),
      wire.sync(),
    )
    await waitersAre(dev, 3)
    expect((await holder.query('commit')).status).toBe('I')

    const [ra, rb, rc] = await Promise.all([reply(a), reply(b), reply(c)])
    expect(errorsOf(ra)).toEqual([['ERROR', '22012']])
    expect(ra.status).toBe('I')
    expect(rb.rows).toEqual([['b']])
    expect(rc.rows).toEqual([['42']])
    const after = dev.server.getStats()
    expect(after.combinedCalls - before.combinedCalls).toBe(1)
    expect(after.combinedUnits - before.combinedUnits).toBe(3)
    // Each carries on as usual afterwards.
    expect((await a.query('select 1')).rows).toEqual([['1']])
  })

  it('a client whose unit is answered is idle in pg_stat_activity while a later unit of the same call still runs', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    // Read from another database, whose session is free while this one's call runs. Its first query opens it (seconds
    // on a loaded machine, more for the run's first image of a booted database): done first, and given that time, so
    // that the read below waits for nothing but the answer.
    const reader = await connect(dev.url, { database: 'activity_reader' })
    expect((await reader.query('select count(*) > 0 from pg_stat_activity', { deadlineMs: 30_000 })).rows).toEqual([
      ['t'],
    ])
    await a.send(wire.query("select 'a' as who"))
    // Runs until canceled below, so it is still running whenever the reader looks.
    await b.send(wire.query('select pg_sleep(60)'))
    await waitersAre(dev, 2)
    const before = dev.server.getStats().combinedCalls
    expect((await holder.query('commit')).status).toBe('I')
    expect((await reply(a)).rows).toEqual([['a']])
    const seen = await reader.query(
      `select pid, state from pg_stat_activity where pid in (${a.backendKey!.pid}, ${b.backendKey!.pid}) order by pid = ${b.backendKey!.pid}`,
    )
    expect(seen.rows).toEqual([
      [String(a.backendKey!.pid), 'idle'],
      [String(b.backendKey!.pid), 'active'],
    ])
    expect(dev.server.getStats().combinedCalls - before).toBe(1)
    await sendCancel(dev, b)
    expect(errorsOf(await reply(b))).toEqual([['ERROR', '57014']])
  })

  it("a unit that opens a transaction ends the call: the next client's unit waits for that transaction, as on Postgres", async () => {
    const dev = await start()
    const setup = await connect(dev.url)
    await setup.query('create table combined_t (id int)')
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])

    await a.send(wire.query('begin; insert into combined_t values (1)'))
    await waitersAre(dev, 1)
    await b.send(wire.query('select count(*) from combined_t'))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')

    expect((await reply(a)).status).toBe('T')
    // B did not run inside A's transaction: it waits for it (it would have counted A's row).
    await waitersAre(dev, 1)
    expect((await a.query('rollback')).status).toBe('I')
    expect((await reply(b)).rows).toEqual([['0']])
    expect(dev.server.getStats().combinedCalls).toBeGreaterThanOrEqual(1)
  })

  it("a SET in one client's unit is not the next client's setting", async () => {
    const dev = await start()
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    const defaultWorkMem = (await b.query('show work_mem')).rows[0]?.[0]
    expect(defaultWorkMem).not.toBe('1234kB')
    const holder = await holdSession(dev)

    await a.send(wire.query("set work_mem = '1234kB'"))
    await waitersAre(dev, 1)
    await b.send(wire.query('show work_mem'))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')

    expect(errorsOf(await reply(a))).toEqual([])
    expect((await reply(b)).rows).toEqual([[defaultWorkMem]])
    expect((await a.query('show work_mem')).rows).toEqual([['1234kB']])
    expect((await b.query('show work_mem')).rows).toEqual([[defaultWorkMem]])
  })

  // Units wait together behind an ALTER DATABASE ... SET in an open transaction; its COMMIT lets them go as one call.
  // A new client gets the database's settings at its first turn; one that had a turn before keeps what it had.
  async function afterAlterDatabase(
    order: ReadonlyArray<'new' | 'old'>,
  ): Promise<Array<{ timezone: string | null | undefined; told: boolean }>> {
    const dev = await start()
    const old = await connect(dev.url)
    expect((await old.query('show timezone')).rows).toEqual([['UTC']])
    const holder = await holdSession(dev, "begin; alter database postgres set timezone = 'Asia/Tokyo'")
    const clients: RawClient[] = []
    for (const who of order) {
      const client = who === 'old' ? old : await connect(dev.url)
      await client.send(wire.query('show timezone'))
      clients.push(client)
      await waitersAre(dev, clients.length)
    }
    expect((await holder.query('commit')).status).toBe('I')
    return Promise.all(
      clients.map(async (client) => {
        const messages = await client.until('ReadyForQuery')
        const told = messages.some((m) => m.code === 'S' && wire.decodeParameterStatus(m.body)[0] === 'TimeZone')
        const timezone = wire.summarize(messages).rows[0]?.[0]
        // What it is told once is what it keeps.
        expect((await client.query('show timezone')).rows).toEqual([[timezone]])
        return { timezone, told }
      }),
    )
  }

  it('after an ALTER DATABASE ... SET, a new client first in the call does not give its settings to the others', async () => {
    expect(await afterAlterDatabase(['new', 'old', 'new'])).toEqual([
      { timezone: 'Asia/Tokyo', told: true },
      { timezone: 'UTC', told: false },
      { timezone: 'Asia/Tokyo', told: true },
    ])
  })

  it('after an ALTER DATABASE ... SET, new clients behind an older one in the call still get the settings', async () => {
    expect(await afterAlterDatabase(['old', 'new'])).toEqual([
      { timezone: 'UTC', told: false },
      { timezone: 'Asia/Tokyo', told: true },
    ])
  })

  it('a CancelRequest for a unit still behind another in the call answers it at once with 57014; the other runs on', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])

    await a.send(wire.query('select pg_sleep(1.5) is null as slept'))
    await waitersAre(dev, 1)
    await b.send(wire.query('select 2'))
    await waitersAre(dev, 2)
    const calls = dev.server.getStats().combinedCalls
    expect((await holder.query('commit')).status).toBe('I')
    // The call runs (A sleeps in it): nobody waits for the session any more.
    await waitersAre(dev, 0)
    expect(dev.server.getStats().combinedCalls).toBe(calls + 1)

    const aReply = reply(a)
    let aAnswered = false
    void aReply.then(() => (aAnswered = true))
    await sendCancel(dev, b)
    const rb = await reply(b)
    expect(rb.errors.map((e) => [e.code, e.message])).toEqual([['57014', 'canceling statement due to user request']])
    expect(rb.status).toBe('I')
    expect(aAnswered).toBe(false)
    expect((await aReply).rows).toEqual([['f']])
    expect((await b.query('select 3')).rows).toEqual([['3']])
  })

  it('a unit answered 57014 before it began never runs, even when the unit before it ends the call', async () => {
    const dev = await start()
    const setup = await connect(dev.url)
    await setup.query('create table combined_canceled (id int)')
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])

    // A's SET ends the call after A's unit: B's unit, stopped meanwhile, is never reached.
    await a.send(wire.query("select pg_sleep(3) is null as slept; set application_name = 'combined_a'"))
    await waitersAre(dev, 1)
    await b.send(wire.query('insert into combined_canceled values (1) returning id'))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')
    await waitersAre(dev, 0)

    await sendCancel(dev, b)
    const rb = await reply(b)
    expect(errorsOf(rb)).toEqual([['ERROR', '57014']])
    expect(rb.rows).toEqual([])
    const ra = await reply(a)
    expect(ra.rows).toEqual([['f']])
    expect(ra.status).toBe('I')
    // B's next reply is its own (not the insert's, run late), and the insert it was told was canceled is not there.
    expect((await b.query('select count(*) from combined_canceled')).rows).toEqual([['0']])
    expect((await a.query('show application_name')).rows).toEqual([['combined_a']])
  })

  it('a CancelRequest for a unit running in the call cancels that statement only', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])

    await a.send(wire.query('select 1 as a'))
    await waitersAre(dev, 1)
    await b.send(wire.query('select pg_sleep(30)'))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')
    // A's reply comes when its unit ends: B's runs now.
    expect((await reply(a)).rows).toEqual([['1']])

    const started = performance.now()
    await sendCancel(dev, b)
    const rb = await reply(b)
    expect(rb.errors.map((e) => [e.code, e.message])).toEqual([['57014', 'canceling statement due to user request']])
    expect(performance.now() - started).toBeLessThan(5_000)
    expect((await a.query('select 4')).rows).toEqual([['4']])
    expect((await b.query('select 5')).rows).toEqual([['5']])
  })

  it("a client answered in a running call sends its next unit into that call, which runs it after the others' units", async () => {
    const dev = await start()
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    const { before, first } = await aThenB(dev, a, "select 'a' as who", b, 'select pg_sleep(30)')
    expect(first.rows).toEqual([['a']])

    // B sleeps in the call: A's next unit goes in after it (more-units.ts), not in a call of its own.
    await a.send(wire.query("select 'a again' as who"))
    await addedToTheCall(dev, before)
    let aAnswered = false
    const ra = reply(a).then((summary) => ((aAnswered = true), summary))
    // A's unit waits behind B's for as long as B's sleeps: a third client's whole start-up goes by meanwhile, A
    // unanswered. Once B's is canceled both answers come, in no order this client can tell: they travel on two
    // sockets, as from two backends of Postgres.
    const bystander = await connect(dev.url)
    bystander.destroy()
    expect(aAnswered).toBe(false)
    await sendCancel(dev, b)
    expect(errorsOf(await reply(b))).toEqual([['ERROR', '57014']])
    expect((await ra).rows).toEqual([['a again']])
    expect(dev.server.getStats().combinedCalls - before.combinedCalls).toBe(1)
  })

  it('a unit that went into a running call which a transaction then ends waits for that transaction, as on Postgres', async () => {
    const dev = await start()
    await (await connect(dev.url)).query('create table combined_grown (id int)')
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    const { before, first } = await aThenB(
      dev,
      a,
      'select 1',
      b,
      'begin; insert into combined_grown values (1); select pg_sleep(30)',
    )
    expect(first.rows).toEqual([['1']])

    await a.send(wire.query('select count(*) from combined_grown'))
    await addedToTheCall(dev, before)
    await sendCancel(dev, b)
    const rb = await reply(b)
    expect([errorsOf(rb), rb.status]).toEqual([[['ERROR', '57014']], 'E'])
    // A's unit went into B's call, which B's failed block ended before it: it waits for B's transaction like any client.
    await waitersAre(dev, 1)
    expect((await b.query('rollback')).status).toBe('I')
    expect((await reply(a)).rows).toEqual([['0']])
  })

  it("a client that sends while a rider of the call does not read takes nothing of that rider's reply", async () => {
    // Traced, every reply comes through the server's thread, which holds the call while A does not read.
    const dev = await start({ maxSpillBytes: 0, trace: path.join(await scratchDir('grown-trace'), 'trace.jsonl') })
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    const other = await connect(dev.url, { database: 'combined_other' })
    a.socket.pause()
    await a.send(wire.query(`select g, repeat('x', 1000) as payload from generate_series(1, ${BIG_ROWS}) g`))
    await waitersAre(dev, 1)
    await b.send(wire.query("select 'b' as who"))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)

    // Every client's bytes make the call read its units' ends: never while it waits for A.
    for (let i = 0; i < 5; i++) expect((await other.query(`select ${i}`)).rows).toEqual([[String(i)]])
    a.socket.resume()
    const ra = wire.summarize(await a.until('ReadyForQuery', { deadlineMs: 30_000 }))
    expect(ra.errors).toEqual([])
    expect(ra.rows.length).toBe(BIG_ROWS)
    expect(ra.rows.every(([g, payload], i) => g === String(i + 1) && payload!.length === 1000)).toBe(true)
    expect((await reply(b)).rows).toEqual([['b']])
  })

  it('a client that left while the call ran is forgotten before another unit goes into the call: its LISTEN reaches nobody', async () => {
    const dev = await start()
    const [a, b, listener] = await Promise.all([connect(dev.url), connect(dev.url), connect(dev.url)])
    expect((await listener.query('listen grown_channel')).status).toBe('I')
    const { first } = await aThenB(dev, a, 'select 1', b, 'select pg_sleep(30)')
    expect(first.rows).toEqual([['1']])
    const connections = dev.server.getStats().activeConnections
    expect(await listener.end()).toBe(true)
    await expect.poll(() => dev.server.getStats().activeConnections, { timeout: 5_000 }).toBe(connections - 1)

    // The session still listens for the listener until its UNLISTEN runs, which must come before A's NOTIFY.
    await a.send(wire.query("notify grown_channel, 'nobody listens'"))
    await waitersAre(dev, 1)
    await sendCancel(dev, b)
    expect(errorsOf(await reply(b))).toEqual([['ERROR', '57014']])
    const ra = await reply(a)
    expect([errorsOf(ra), ra.trace.filter((name) => name === 'NotificationResponse')]).toEqual([[], []])
  })

  it('a CancelRequest for a unit that went into a running call answers it at once with 57014; the call runs on', async () => {
    const dev = await start()
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    const { before, first } = await aThenB(dev, a, 'select 1', b, 'select pg_sleep(30)')
    expect(first.rows).toEqual([['1']])

    await a.send(wire.query('select 2'))
    await addedToTheCall(dev, before)
    await sendCancel(dev, a)
    expect(errorsOf(await reply(a))).toEqual([['ERROR', '57014']])
    // B's statement still runs; its own cancel ends it.
    await sendCancel(dev, b)
    expect(errorsOf(await reply(b))).toEqual([['ERROR', '57014']])
    expect((await a.query('select 3')).rows).toEqual([['3']])
  })

  it('more units than one call carries wait in several batches; any of them can be canceled while it waits', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const clients = await Promise.all(Array.from({ length: 70 }, () => connect(dev.url)))
    for (const [i, client] of clients.entries()) await client.send(wire.query(`select ${i} as i`))
    await waitersAre(dev, 70)

    // The last one rides in the second batch (a call carries 64 units at most).
    const last = clients.at(-1)!
    await sendCancel(dev, last)
    expect(errorsOf(await reply(last))).toEqual([['ERROR', '57014']])
    await waitersAre(dev, 69)

    expect((await holder.query('commit')).status).toBe('I')
    const replies = await Promise.all(clients.slice(0, -1).map(reply))
    expect(replies.map((r) => r.rows)).toEqual(clients.slice(0, -1).map((_, i) => [[String(i)]]))
  })

  it('the database dying in a combined call ends each of its clients with FATAL, and the database serves again', async () => {
    const dev = await start()
    const setup = await connect(dev.url)
    await setup.query('create table combined_kept (id int); insert into combined_kept values (1)')
    const holder = await holdSession(dev)
    const [a, b] = await Promise.all([connect(dev.url), connect(dev.url)])
    await a.send(wire.query('select pg_sleep(30)'))
    await waitersAre(dev, 1)
    await b.send(wire.query('select 2'))
    await waitersAre(dev, 2)
    expect((await holder.query('commit')).status).toBe('I')
    await waitersAre(dev, 0)

    const db = dev.databases.main
    if (!(db instanceof DbThread)) throw new Error('the main database is not in a thread')
    await db.end(new Error('ended by the test'))
    for (const client of [a, b]) {
      const errors = wire.summarize(await client.until('ErrorResponse')).errors
      expect(errors.map((e) => [e.severity, e.code])).toEqual([['FATAL', 'XX000']])
    }
    await expect
      .poll(
        async () => {
          const client = await connect(dev.url).catch(() => null)
          const reply = await client?.query('select id from combined_kept').catch(() => null)
          return reply?.rows ?? null
        },
        { timeout: 15_000, interval: 250 },
      )
      .toEqual([['1']])
  })

  it("pooled drivers: every answer is the asking client's (postgres.js prepared, node-style unnamed, simple)", async () => {
    const dev = await start()
    const sql = postgres(dev.url, { max: 8, prepare: true, onnotice: () => {} })
    try {
      const asked = Array.from({ length: 400 }, (_, i) => i)
      const answers = await Promise.all(
        asked.map(async (i) => {
          const [row] =
            i % 3 === 0
              ? await sql`select ${i}::int as i, pg_backend_pid() > 0 as ok`
              : i % 3 === 1
                ? await sql`select ${i}::int as i, true as ok`
                : await sql.unsafe(`select ${i}::int as i, true as ok`)
          return row!
        }),
      )
      expect(answers.map((row) => row.i)).toEqual(asked)
      expect(answers.every((row) => row.ok === true)).toBe(true)
      expect(dev.server.getStats().combinedCalls).toBeGreaterThan(0)
    } finally {
      await sql.end({ timeout: 5 })
    }
  })
})
