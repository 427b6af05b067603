// CancelRequest: a client whose statement waits behind another client's transaction can cancel it (ERROR 57014,
// as Postgres answers a statement canceled while it waited for a lock), and carries on; a wrong key cancels nothing.
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { sendCancelRequest, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect, holdSession: hold } = useDevDbs()

/** Send a CancelRequest on its own socket, as libpq does, and wait until the server has closed that socket. */
const sendCancel = (dev: DevDb, pid: number, key: number): Promise<void> => sendCancelRequest(dev.url, { pid, key })

const holdSession = (dev: DevDb): Promise<RawClient> =>
  hold(dev, 'begin; create table held (id int); insert into held values (1)')

describe('CancelRequest', () => {
  it('cancels a query waiting behind a transaction with ERROR 57014; the client carries on', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)
    const key = waiter.backendKey!

    await waiter.send(wire.query('select count(*) from pg_tables'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    await sendCancel(dev, key.pid, key.key)

    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors.map((e) => [e.severity, e.code, e.message])).toEqual([
      ['ERROR', '57014', 'canceling statement due to user request'],
    ])
    expect(reply.status).toBe('I')
    expect(dev.server.getStats().waitingClients).toBe(0)

    // The holder never noticed; once it commits, the canceled client's next query runs and sees the commit.
    expect((await holder.query('commit')).status).toBe('I')
    expect((await waiter.query('select count(*) from held')).rows).toEqual([['1']])
  })

  it('in a pipeline, cancels the unit up to the first Sync and runs the units after it', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)
    const key = waiter.backendKey!

    await waiter.send(
      wire.parse('', 'select $1::int as n', [23]),
      wire.bind('', '', ['1']),
      wire.execute(''),
      wire.sync(),
      wire.query('select 2 as n'),
    )
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    await sendCancel(dev, key.pid, key.key)
    const canceled = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(canceled.errors.map((e) => e.code)).toEqual(['57014'])
    expect(canceled.rows).toEqual([])

    // The second unit is still queued, and runs when the holder is done.
    expect((await holder.query('commit')).status).toBe('I')
    const second = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(second.errors).toEqual([])
    expect(second.rows).toEqual([['2']])
  })

  it('a wrong key cancels nothing: the waiting query gets its rows once the holder commits', async () => {
    const dev = await start()
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)
    const key = waiter.backendKey!

    await waiter.send(wire.query('select 3 as n'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    await sendCancel(dev, key.pid, key.key ^ 1)
    await sendCancel(dev, holder.backendKey!.pid + 1_000_000, key.key)
    expect(dev.server.getStats().waitingClients).toBe(1)

    expect((await holder.query('commit')).status).toBe('I')
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['3']])
  })

  it("postgres.js: query.cancel() on a query stuck behind another client's transaction rejects it with 57014", async () => {
    const dev = await start()
    const sql = postgres(dev.url, { max: 1, onnotice: () => {} })
    try {
      // Connected (and its type lookup done) before the holder begins, so the next query is the one that waits.
      await withDeadline(sql`select 1`.execute(), 5_000, 'postgres.js connects')
      const holder = await holdSession(dev)
      const pending = sql`select count(*)::int as n from pg_tables`.execute()
      await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
      pending.cancel()
      await expect(withDeadline(pending, 5_000, 'the canceled query')).rejects.toMatchObject({ code: '57014' })
      expect((await holder.query('commit')).status).toBe('I')
      expect(
        await withDeadline(sql`select count(*)::int as n from held`.execute(), 5_000, 'query after the cancel'),
      ).toEqual([{ n: 1 }])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })
})

// Postgres sends each answer of a pipeline at its ReadyForQuery, while the statements after it run: the client can
// act on it, as postgres.js does when it cancels a query it piped behind another ("Cancel piped query").
const pipelineTargets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
if (process.env.PG_ORACLE_URL)
  pipelineTargets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => process.env.PG_ORACLE_URL!])

describe.each(pipelineTargets)('a pipeline of two queries: %s', (_, serve) => {
  it('the first is answered while the second runs, and a CancelRequest then stops the second with 57014', async () => {
    const url = await serve()
    const client = await connect(url)
    await client.send(wire.query('select pg_sleep(0.5) as first'), wire.query('select pg_sleep(30) as second'))
    // Not the end of the whole pipeline: the second query sleeps 30 s.
    expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 10_000 })).errors).toEqual([])
    await sendCancelRequest(url, client.backendKey!)
    const second = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 10_000 }))
    expect(second.errors.map((e) => [e.severity, e.code, e.message])).toEqual([
      ['ERROR', '57014', 'canceling statement due to user request'],
    ])
    expect((await client.query('select 1 as next')).rows).toEqual([['1']])
  })

  it('postgres.js: cancel() of a query piped behind another rejects it with 57014 once it runs', async () => {
    const sql = postgres(await serve(), { max: 1, onnotice: () => {} })
    try {
      await withDeadline(sql`select 1`.execute(), 5_000, 'postgres.js connects')
      const first = sql`select pg_sleep(0.5)`.execute()
      const piped = sql`select pg_sleep(30) as dig`.execute()
      // Both written (postgres.js sends what a tick queued in one write); the first still sleeps.
      await new Promise((resolve) => setImmediate(resolve))
      piped.cancel()
      await expect(withDeadline(piped, 10_000, 'the piped query')).rejects.toMatchObject({ code: '57014' })
      await withDeadline(first, 5_000, 'the first query')
    } finally {
      await sql.end({ timeout: 2 })
    }
  })
})
