// queueTimeoutMs: work that waits too long for the session (another client holds it in a transaction) fails with
// ERROR 55P03, as a statement that waited past lock_timeout does in Postgres, and the waiting client stays usable.
// A client's own statement_timeout, when shorter, ends the wait with 57014, as it ends a Postgres statement's lock wait.
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect, holdSession: hold } = useDevDbs()
const QUEUE_TIMEOUT_MS = 300

const holdSession = (dev: DevDb): Promise<RawClient> =>
  hold(dev, 'begin; create table held (id int); insert into held values (1)')

describe('queueTimeoutMs', () => {
  it('a query waiting behind a transaction past the timeout gets ERROR 55P03 naming the holder; both clients carry on', async () => {
    const dev = await start({ queueTimeoutMs: QUEUE_TIMEOUT_MS })
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)

    await waiter.send(wire.query('select count(*) from pg_tables'))
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors.map((e) => [e.severity, e.code])).toEqual([['ERROR', '55P03']])
    expect(reply.errors[0]!.message).toContain(`client ${holder.backendKey!.pid} holds it`)
    expect(reply.status).toBe('I')
    expect(dev.server.getStats().waitingClients).toBe(0)

    // The holder's transaction was never touched; once it commits, the waiter runs and sees its row.
    expect((await holder.query('insert into held values (2); commit')).status).toBe('I')
    // The reply reaches the holder before the server has recorded the release (the database thread writes it).
    await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 5_000 }).toBe(false)
    expect((await waiter.query('select count(*) from held')).rows).toEqual([['2']])
  })

  it('a pipeline that timed out before its Sync arrived: error at once, the rest skipped until Sync, one ReadyForQuery', async () => {
    const dev = await start({ queueTimeoutMs: QUEUE_TIMEOUT_MS })
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)

    // Flush asks for replies without ending the pipeline: the client is waiting on these, so they time out too.
    await waiter.send(
      wire.parse('s1', 'select $1::int as n', [23]),
      wire.bind('', 's1', ['1']),
      wire.execute(''),
      wire.flush(),
    )
    const failed = await waiter.until('ErrorResponse')
    expect(wire.summarize(failed).errors.map((e) => e.code)).toEqual(['55P03'])

    // Postgres discards what follows an error until Sync; then one ReadyForQuery and nothing of the skipped work.
    await waiter.send(wire.bind('', 's1', ['2']), wire.execute(''), wire.sync())
    const skipped = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(skipped).toMatchObject({ rows: [], errors: [], status: 'I' })

    // The statement was never made, as in Postgres when its Parse fails.
    expect((await holder.query('commit')).status).toBe('I')
    await waiter.send(wire.bind('', 's1', ['3']), wire.execute(''), wire.sync())
    expect(wire.summarize(await waiter.until('ReadyForQuery')).errors.map((e) => e.code)).toEqual(['26000'])
    expect((await waiter.query('select count(*) from held')).rows).toEqual([['1']])
  })

  it('a COPY FROM STDIN waiting past the timeout is refused before CopyInResponse; the client goes on', async () => {
    const dev = await start({ queueTimeoutMs: QUEUE_TIMEOUT_MS })
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)
    await waiter.send(wire.query('copy held from stdin'))
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors.map((e) => e.code)).toEqual(['55P03'])
    expect(reply.status).toBe('I')
    expect((await holder.query('commit')).status).toBe('I')
    await waiter.send(wire.query('copy held from stdin'))
    await waiter.until('CopyInResponse')
    await waiter.send(wire.copyData('7\n'), wire.copyDone())
    expect(wire.summarize(await waiter.until('ReadyForQuery')).errors).toEqual([])
    expect((await waiter.query('select sum(id) from held')).rows).toEqual([['8']])
  })

  it('postgres.js: the waiting query rejects with 55P03 and the same connection serves the next one', async () => {
    const dev = await start({ queueTimeoutMs: QUEUE_TIMEOUT_MS })
    const sql = postgres(dev.url, { max: 1, onnotice: () => {} })
    try {
      await withDeadline(sql`select 1`.execute(), 5_000, 'postgres.js connects')
      const holder = await holdSession(dev)
      await expect(
        withDeadline(sql`select count(*)::int as n from pg_tables`.execute(), 5_000, 'the waiting query'),
      ).rejects.toMatchObject({ code: '55P03' })
      expect((await holder.query('commit')).status).toBe('I')
      expect(await withDeadline(sql`select count(*)::int as n from held`.execute(), 5_000, 'the next query')).toEqual([
        { n: 1 },
      ])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })

  it("the client's statement_timeout, shorter than the queue timeout, ends its wait with 57014 as a lock wait's does", async () => {
    const dev = await start({ queueTimeoutMs: 60_000 })
    const waiter = await connect(dev.url)
    expect((await waiter.query('set statement_timeout = 300')).status).toBe('I')
    const holder = await holdSession(dev)

    const began = performance.now()
    await waiter.send(wire.query('select count(*) from held'))
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    const waitedMs = performance.now() - began
    expect(reply.errors.map((e) => [e.severity, e.code, e.message])).toEqual([
      ['ERROR', '57014', 'canceling statement due to statement timeout'],
    ])
    expect(reply.status).toBe('I')
    // At the timeout, not the queue timeout's minute (the upper bound leaves room for a loaded machine).
    expect(waitedMs, `waited ${Math.round(waitedMs)} ms`).toBeGreaterThanOrEqual(290)
    expect(waitedMs, `waited ${Math.round(waitedMs)} ms`).toBeLessThan(10_000)

    // An extended-protocol unit too: the error, the rest skipped, one ReadyForQuery.
    await waiter.send(wire.parse('', 'select count(*) from held'), wire.bind('', ''), wire.execute(''), wire.sync())
    expect(wire.summarize(await waiter.until('ReadyForQuery')).errors.map((e) => e.code)).toEqual(['57014'])

    expect((await holder.query('insert into held values (2); commit')).status).toBe('I')
    // The reply reaches the holder before the server has recorded the release (the database thread writes it).
    await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 5_000 }).toBe(false)
    expect((await waiter.query('select count(*) from held')).rows).toEqual([['2']])
  })

  it('postgres.js with statement_timeout in its startup parameters: its first query waits, ends at it, and the connection goes on', async () => {
    const dev = await start({ queueTimeoutMs: 60_000 })
    // Its first query waits, so the value is read as the startup packet gave it (with a unit), not yet applied.
    const holder = await holdSession(dev)
    const sql = postgres(dev.url, {
      max: 1,
      onnotice: () => {},
      fetch_types: false,
      connection: { statement_timeout: '250ms' } as unknown as Record<string, string>,
    })
    try {
      await expect(
        withDeadline(sql`select count(*)::int as n from pg_tables`.execute(), 5_000, 'the waiting query'),
      ).rejects.toMatchObject({
        code: '57014',
        message: 'canceling statement due to statement timeout',
      })
      expect((await holder.query('commit')).status).toBe('I')
      expect(await withDeadline(sql`select count(*)::int as n from held`.execute(), 5_000, 'the next query')).toEqual([
        { n: 1 },
      ])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })

  it('0 waits without limit: the query runs once the holder commits', async () => {
    const dev = await start({ queueTimeoutMs: 0 })
    const holder = await holdSession(dev)
    const waiter = await connect(dev.url)
    await waiter.send(wire.query('select count(*) from held'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    expect((await holder.query('commit')).status).toBe('I')
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['1']])
  })
})
