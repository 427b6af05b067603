// idleTransactionWaitMs: a statement waiting behind another client's transaction that sits idle is, most often, an
// app sending a query on another pool connection inside its own open transaction (on Postgres it would just run).
// It fails fast with 55P03 naming the idle client and a hint; the idle transaction itself is left alone.
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect } = useDevDbs()
const WAIT_MS = 400

describe('idleTransactionWaitMs', () => {
  it('a statement behind an idle transaction gets 55P03 naming its client, how long it sat idle, and a hint; the transaction goes on', async () => {
    const dev = await start({ idleTransactionWaitMs: WAIT_MS })
    const holder = await connect(dev.url, { application_name: 'checkout-worker' })
    expect((await holder.query('begin; create table held (id int); insert into held values (1)')).status).toBe('T')
    const waiter = await connect(dev.url)

    const sent = performance.now()
    await waiter.send(wire.query('select count(*) from pg_tables'))
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    const waitedMs = performance.now() - sent
    expect(reply.errors.map((e) => [e.severity, e.code])).toEqual([['ERROR', '55P03']])
    const error = reply.errors[0]!
    expect(error.message).toMatch(
      new RegExp(
        `client ${holder.backendKey!.pid} \\(application_name "checkout-worker"\\) holds in a transaction idle for \\d+\\.\\d s`,
      ),
    )
    expect(error.hint).toContain('send this statement on its connection')
    expect(waitedMs, `waited ${Math.round(waitedMs)} ms`).toBeGreaterThanOrEqual(WAIT_MS)
    expect(reply.status).toBe('I')

    // Untouched: the holder commits what it did, and the waiter then sees it.
    expect((await holder.query('insert into held values (2); commit')).status).toBe('I')
    expect((await waiter.query('select count(*) from held')).rows).toEqual([['2']])
  })

  it('a holder running a statement is waited for however long it runs; the wait counts only once it sits idle', async () => {
    const dev = await start({ idleTransactionWaitMs: WAIT_MS })
    const holder = await connect(dev.url)
    expect((await holder.query('begin')).status).toBe('T')
    await holder.send(wire.query('select pg_sleep(1)'))
    const waiter = await connect(dev.url)
    await waiter.send(wire.query('select 1'))
    // The holder's statement ran 1 s, past WAIT_MS, while the waiter waited: no error for that.
    expect(wire.summarize(await holder.until('ReadyForQuery')).errors).toEqual([])
    expect((await holder.query('commit')).status).toBe('I')
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['1']])
  })

  it('postgres.js: the outer sql used inside sql.begin fails fast with 55P03 instead of stalling, and the transaction still commits', async () => {
    const dev = await start({ idleTransactionWaitMs: WAIT_MS })
    // fetch_types off: postgres.js's first query on a connection would otherwise be its own type lookup.
    const sql = postgres(dev.url, { max: 2, onnotice: () => {}, fetch_types: false })
    try {
      await sql`create table orders (id int)`
      let outer: unknown
      await sql.begin(async (tx) => {
        await tx`insert into orders values (1)`
        // The mistake: the pool's other connection, not tx.
        outer = await sql`select count(*) from orders`.catch((error: unknown) => error)
        await tx`insert into orders values (2)`
      })
      expect(outer).toMatchObject({ code: '55P03', hint: expect.stringContaining('transaction object') })
      expect(await sql`select count(*)::int as n from orders`).toEqual([{ n: 2 }])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })

  it('0 waits up to the queue timeout instead', async () => {
    const dev = await start({ idleTransactionWaitMs: 0, queueTimeoutMs: 1_500 })
    const holder = await connect(dev.url)
    expect((await holder.query('begin')).status).toBe('T')
    const waiter = await connect(dev.url)
    const sent = performance.now()
    await waiter.send(wire.query('select 1'))
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors.map((e) => e.code)).toEqual(['55P03'])
    expect(reply.errors[0]!.message).toContain('waited 1500 ms')
    expect(performance.now() - sent).toBeGreaterThanOrEqual(1_500)
  })
})
