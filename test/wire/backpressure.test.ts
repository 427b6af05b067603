// Backpressure: a client that stops reading its replies does not make the server buffer without bound. Its running
// statement's output waits for it in the database's thread (so does the statement, holding the session), and its
// next batch waits too; a holder that stays stalled is reaped by the idle-in-transaction timer, and so is a client
// whose unit runs in a combined call with others' (session/combined-calls.ts). This is what happens inside a
// transaction block, or with maxSpillBytes 0; outside a block the rest waits on disk instead (unread-replies.test.ts).
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { sendCancelRequest, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'

const { start, connect, holdSession } = useDevDbs()
/** Far more than the kernel's socket buffers take, so most of each reply waits in the server. */
const REPLY_BYTES = 16 * 2 ** 20
const bigQuery = `select nextval('bp') as n, repeat('x', ${REPLY_BYTES}) as payload`

/**
 * An observer that made sequence bp, and a client that began a block and stopped reading bigQuery's reply in it: the
 * reply has begun to arrive (its paused socket still buffers a little), so the query ran.
 */
async function stalledInBlock(url: string): Promise<{ observer: RawClient; client: RawClient }> {
  const observer = await connect(url)
  await observer.query('create sequence bp')
  const client = await connect(url)
  expect((await client.query('begin')).status).toBe('T')
  client.socket.pause()
  await client.send(wire.query(bigQuery))
  await expect.poll(() => client.socket.readableLength, { timeout: 10_000 }).toBeGreaterThan(0)
  return { observer, client }
}

describe('a client that stops reading', () => {
  it('its statement waits for it mid-output, and its next query after that; once it reads, every reply arrives whole and in order', async () => {
    const dev = await start({ maxSpillBytes: 0 })
    const observer = await connect(dev.url)
    await observer.query('create sequence bp')
    const client = await connect(dev.url)
    client.socket.pause()

    await client.send(wire.query(bigQuery))
    await expect.poll(() => client.socket.readableLength, { timeout: 10_000 }).toBeGreaterThan(0)
    await client.send(wire.query(bigQuery))
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    // The first statement is paused with most of its output not yet made (it holds the session meanwhile), so the
    // server holds about a megabyte of it, not 16: the observer waits behind it.
    const watching = observer.query('select last_value from bp', { deadlineMs: 30_000 })
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ sessionHeld: true, waitingClients: 1 })

    client.socket.resume()
    const first = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 20_000 }))
    const second = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 20_000 }))
    expect([first.rows[0]![0], first.rows[0]![1]!.length]).toEqual(['1', REPLY_BYTES])
    expect([second.rows[0]![0], second.rows[0]![1]!.length]).toEqual(['2', REPLY_BYTES])
    expect(dev.server.getStats().notReadingClients).toBe(0)
    // It had waited since before the client's second query, so it ran between the two.
    expect((await watching).rows).toEqual([['1']])
  })

  it('holding the session, it is reaped with 25P03 and the others go on', async () => {
    const dev = await start({ idleInTransactionTimeoutMs: 2_000 })
    const { observer, client } = await stalledInBlock(dev.url)
    await client.send(wire.query(bigQuery))
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)

    // The observer queues behind the transaction, and runs once the stalled holder is reaped and rolled back.
    const reply = await observer.query('select last_value, is_called from bp', { deadlineMs: 10_000 })
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['1', 't']])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ activeConnections: 1, sessionHeld: false, notReadingClients: 0 })
    // Once it reads again, it finds its connection closed.
    client.socket.resume()
    await withDeadline(client.closed, 10_000, 'the reaped client sees its connection closed')
  })

  it('canceled while it does not read, inside a block: its database is not restarted, it is reaped and the others go on', async () => {
    // A canceled statement that does not end within 10 s restarts its database, unless it waits for its client. The
    // reaping comes after those 10 s, so a wait the server lost track of would have ended the database by then.
    const records: LogRecord[] = []
    const logger = createLogger({ level: 'warn', sink: (record) => records.push(record) })
    const dev = await start({ idleInTransactionTimeoutMs: 12_000, idleTransactionWaitMs: 0, logger })
    const { observer, client } = await stalledInBlock(dev.url)
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    await sendCancelRequest(dev.url, client.backendKey)

    const reply = await observer.query('select last_value, is_called from bp', { deadlineMs: 30_000 })
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['1', 't']])
    client.socket.resume()
    await withDeadline(client.closed, 10_000, 'the reaped client sees its connection closed')
    expect(records.filter((record) => record.level === 'error').map((record) => record.msg)).toEqual([])
  })

  it('a reply the server rewrites (from a notice on, for a client that named a statement) waits the same way, and is reaped', async () => {
    const dev = await start({ maxSpillBytes: 0, idleInTransactionTimeoutMs: 2_000 })
    const observer = await connect(dev.url)
    const client = await connect(dev.url)
    // With a named statement the server reads this client's notices to restore its names: the database thread stops
    // writing the reply straight to the socket at the first notice, and the rest comes through the server.
    await client.send(wire.parse('s1', 'select 1'), wire.sync())
    expect(wire.summarize(await client.until('ReadyForQuery')).errors).toEqual([])
    client.socket.pause()
    await client.send(
      wire.query(`do $$ begin raise notice 'rows follow'; end $$; select repeat('x', ${REPLY_BYTES}) as payload`),
    )
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    // The statement waits for the client, holding the session, until the timer ends it.
    const watching = observer.query('select 1', { deadlineMs: 10_000 })
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ sessionHeld: true, waitingClients: 1 })
    expect((await watching).rows).toEqual([['1']])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ activeConnections: 1, sessionHeld: false, notReadingClients: 0 })
    client.socket.resume()
    await withDeadline(client.closed, 10_000, 'the reaped client sees its connection closed')
  })

  it('riding in a combined call with other clients, it is reaped with 25P03 the same way, and the units after it run', async () => {
    const dev = await start({ maxSpillBytes: 0, idleInTransactionTimeoutMs: 2_000 })
    // Units sent while another client holds the session wait together, and ride in one call once it commits.
    const holder = await holdSession(dev)
    const client = await connect(dev.url)
    client.socket.pause()
    await client.send(wire.query(`select repeat('x', ${REPLY_BYTES}) as payload`))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 10_000 }).toBe(1)
    const next = await connect(dev.url)
    await next.send(wire.query("select 'next' as who"))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 10_000 }).toBe(2)
    const before = dev.server.getStats()
    expect((await holder.query('commit')).status).toBe('I')

    // The unit after the stalled one, in the same call, is answered once the stalled client is reaped.
    const answer = wire.summarize(await next.until('ReadyForQuery', { deadlineMs: 15_000 }))
    expect(answer.errors).toEqual([])
    expect(answer.rows).toEqual([['next']])
    const after = dev.server.getStats()
    expect([after.combinedCalls - before.combinedCalls, after.combinedUnits - before.combinedUnits]).toEqual([1, 2])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ activeConnections: 2, sessionHeld: false, notReadingClients: 0 })
    client.socket.resume()
    await withDeadline(client.closed, 10_000, 'the reaped client sees its connection closed')
  })
})
