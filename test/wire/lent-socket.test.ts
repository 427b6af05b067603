// A client's socket lent to its database's thread (engine/lent-reads.ts): after a unit that binds a prepared
// statement, the thread reads the client's next units itself while nobody else sends, or while the client's
// transaction block keeps the session from the others. What a client sees must not change: its answers in order,
// another client served, a cancel, statement_timeout and a stop reaching a statement the thread read, a client that
// leaves or stops reading. Whether a unit was read by the thread depends on timing (it looks for 0.5 ms), so each
// case is tried until it was, a bounded number of times.
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { sendCancelRequest, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))

const { start, connect } = useDevDbs()
const TRIES = 50
const DEADLINE_MS = 10_000

const unit = (statement: string, params: string[]): Buffer[] => [
  wire.bind('', statement, params),
  wire.execute(''),
  wire.sync(),
]
const stats = (dev: DevDb) => dev.server.getStats()

// Tells its client it began (a notice is sent at once, not at the statement's end), then sleeps.
const NOTICE_THEN_SLEEP = `create or replace function notice_then_sleep(s float8) returns void language plpgsql as $$
  begin raise notice 'sleeping'; perform pg_sleep(s); end $$`

async function prepared(dev: DevDb): Promise<RawClient> {
  const client = await connect(dev.url)
  expect((await client.query(NOTICE_THEN_SLEEP)).errors).toEqual([])
  await client.send(
    wire.parse('plus', 'select $1::int + 1 as n'),
    wire.parse('sleep', 'select notice_then_sleep($1::float8)'),
    wire.sync(),
  )
  expect(wire.summarize(await client.until('ReadyForQuery')).errors).toEqual([])
  return client
}

/** The client with a table `kept` and a statement `keep` that inserts into it. */
async function keeping(client: RawClient): Promise<RawClient> {
  expect((await client.query('create table kept (n int)')).errors).toEqual([])
  await client.send(wire.parse('keep', 'insert into kept values ($1::int)'), wire.sync())
  expect(wire.summarize(await client.until('ReadyForQuery')).errors).toEqual([])
  return client
}

/** Run `statement` as one unit and wait for its answer. */
async function run(client: RawClient, statement: string, params: string[]): Promise<wire.Summary> {
  await client.send(...unit(statement, params))
  return wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS }))
}

/** Send `plus 0` (the server lends the socket as it runs it), then at once `then`: the thread reads it if it came in time. */
async function afterLend(client: RawClient, then: Buffer[]): Promise<void> {
  expect((await run(client, 'plus', ['0'])).rows).toEqual([['1']])
  await client.send(...then)
}

/**
 * Run `plus 0` until the thread is reading the client's socket once it is answered (none of other clients' bytes
 * lately: the server lends a socket only while one client sends). False if it never was.
 */
async function lent(dev: DevDb, client: RawClient): Promise<boolean> {
  for (let tries = 0; tries < 1000; tries++) {
    expect((await run(client, 'plus', ['0'])).rows).toEqual([['1']])
    if (stats(dev).clientsReadByDatabaseThreads === 1) return true
  }
  return false
}

/**
 * Once the socket is back: whether the thread ran at least `units` units since `before` (a unit it read counts once it
 * gave it back).
 */
async function threadRan(dev: DevDb, before: number, units = 1): Promise<boolean> {
  await expect.poll(() => stats(dev).clientsReadByDatabaseThreads, { timeout: 5_000 }).toBe(0)
  return stats(dev).unitsReadByDatabaseThreads >= before + units
}

/**
 * The server lends a socket only while one client sends: a try after another client's query waits until that one
 * aged out of the server's count of clients sending.
 */
async function othersQuiet(dev: DevDb): Promise<void> {
  await expect.poll(() => stats(dev).sendingClients, { timeout: 5_000, interval: 10 }).toBeLessThanOrEqual(1)
}

/** Run `attempt` until the thread read `units` units it sent (a bounded number of tries); fails if it never did. */
async function untilThreadRan(dev: DevDb, attempt: () => Promise<void>, units = 1): Promise<void> {
  for (let tries = 0; tries < TRIES; tries++) {
    const before = stats(dev).unitsReadByDatabaseThreads
    await attempt()
    if (await threadRan(dev, before, units)) return
  }
  expect.unreachable(`in none of ${TRIES} tries did the thread read ${units} of the client's units`)
}

/** Every message until the server's FATAL (or the close). */
async function untilFatal(client: RawClient): Promise<wire.ErrorInfo[]> {
  const errors: wire.ErrorInfo[] = []
  while (!errors.some((error) => error.severity === 'FATAL')) {
    const messages = await client.until('ErrorResponse', { deadlineMs: DEADLINE_MS }).catch(() => null)
    if (!messages) break
    errors.push(...wire.summarize(messages).errors)
  }
  return errors
}

describe('a client read by its database thread', () => {
  it('gets every answer in order, one at a time and pipelined', async () => {
    const dev = await start()
    const client = await prepared(dev)
    for (let i = 0; i < 200; i++) expect((await run(client, 'plus', [String(i)])).rows).toEqual([[String(i + 1)]])
    const pipeline = Array.from({ length: 100 }, (_, i) => unit('plus', [String(i)])).flat()
    let read = false
    for (let tries = 0; tries < TRIES && !read; tries++) {
      const before = stats(dev).unitsReadByDatabaseThreads
      await afterLend(client, pipeline)
      for (let i = 0; i < 100; i++)
        expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).rows).toEqual([
          [String(i + 1)],
        ])
      read = (await threadRan(dev, before)) && stats(dev).unitsReadByDatabaseThreads - before >= 100
    }
    expect(read).toBe(true)
  })

  it("runs a client's units of the unnamed statement, and the server knows which unnamed statement is the client's", async () => {
    const dev = await start()
    const client = await prepared(dev)
    const other = await connect(dev.url)
    const unnamedUnit = (sql: string, param: string): Buffer[] => [
      wire.parse('', sql),
      wire.bind('', '', [param]),
      wire.describe('P', ''),
      wire.execute(''),
      wire.sync(),
    ]
    await untilThreadRan(dev, async () => {
      expect(await lent(dev, client)).toBe(true)
      // Made twice, with other text: the second is the client's unnamed statement.
      await client.send(...unnamedUnit('select $1::int * 10', '1'), ...unnamedUnit('select $1::int * 100', '2'))
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).rows).toEqual([['10']])
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).rows).toEqual([['200']])
    })
    // Another client's Query drops the session's unnamed statement: the client's comes back as it last made it.
    expect((await other.query('select 1')).errors).toEqual([])
    expect((await run(client, '', ['3'])).rows).toEqual([['300']])
  })

  it("runs a client's simple Query, which drops its unnamed statement as on Postgres", async () => {
    const dev = await start()
    const client = await prepared(dev)
    const other = await connect(dev.url)
    await untilThreadRan(dev, async () => {
      await client.send(wire.parse('', 'select 5'), wire.sync())
      await client.until('ReadyForQuery')
      expect(await lent(dev, client)).toBe(true)
      await client.send(wire.query('select 6'))
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).rows).toEqual([['6']])
    })
    // Another client's unnamed statement is the session's now; the client's own is gone, as its Query dropped it.
    expect((await other.extended('select 99')).rows).toEqual([['99']])
    expect((await run(client, '', [])).errors.map((error) => error.code)).toEqual(['26000'])
  })

  it("runs a lone client's transaction block in the thread, to its COMMIT", async () => {
    const dev = await start()
    const client = await keeping(await prepared(dev))
    const other = await connect(dev.url)
    let kept = 0
    // Every unit of the block, not only the BEGIN: sent at once, the four are read together, and run in the thread
    // unless the lend ends inside the block.
    await untilThreadRan(
      dev,
      async () => {
        expect(await lent(dev, client)).toBe(true)
        await client.send(wire.query('begin'), ...unit('keep', ['1']), ...unit('keep', ['2']), wire.query('commit'))
        for (const command of ['BEGIN', 'INSERT 0 1', 'INSERT 0 1', 'COMMIT'])
          expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).commands).toEqual([
            command,
          ])
        kept += 2
      },
      4,
    )
    expect((await other.query('select count(*) from kept')).rows).toEqual([[String(kept)]])
  })

  it('runs the statements of a transaction block in the thread while another client waits, which gets the session at COMMIT', async () => {
    const dev = await start()
    const client = await keeping(await prepared(dev))
    const other = await connect(dev.url)
    let kept = 0
    let read = false
    for (let tries = 0; tries < TRIES && !read; tries++) {
      const before = stats(dev).unitsReadByDatabaseThreads
      expect((await client.query('begin')).errors).toEqual([])
      await other.send(wire.query('select count(*) from kept'))
      await expect.poll(() => stats(dev).waitingClients, { timeout: 5_000, interval: 5 }).toBe(1)
      // The server lends the socket as it runs the first insert (the client holds the session; the other waits).
      expect((await run(client, 'keep', ['1'])).commands).toEqual(['INSERT 0 1'])
      await client.send(...unit('keep', ['2']), wire.query('commit'), ...unit('keep', ['3']))
      for (const command of ['INSERT 0 1', 'COMMIT', 'INSERT 0 1'])
        expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).commands).toEqual([
          command,
        ])
      const counted = wire.summarize(await other.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).rows
      // Read by the thread, the block ends at the COMMIT: the session is the waiting client's there, and the insert
      // sent with the COMMIT runs after the other's count. (Read by the server, the three run as one batch.)
      read = await threadRan(dev, before, 2)
      if (read) expect(counted).toEqual([[String(kept + 2)]])
      kept += 3
    }
    expect(read, `the thread never read the block's last units in ${TRIES} tries`).toBe(true)
  })

  // Here the server's end of a COMMIT (a reset the transaction asked for) must come before the client's next unit.
  it("runs nothing before the server's work at the end of the unit before it: a reset done at COMMIT", async () => {
    const dev = await start({ migrations: MIGRATIONS })
    const client = await connect(dev.url)
    for (let round = 0; round < 30; round++) {
      expect(
        (await client.query(`insert into customers (email, name) values ('r${round}@example.com', 'R')`)).errors,
      ).toEqual([])
      expect((await client.query('begin')).errors).toEqual([])
      expect((await client.query('select pglite_dev_db.reset()')).errors).toEqual([])
      expect((await client.query('commit')).errors).toEqual([])
      expect((await client.query('select count(*) from customers')).rows).toEqual([['0']])
    }
  })

  // A unit before a statement the server carries out (DISCARD ALL) must not let the thread run what comes after it.
  it('runs what follows a statement the server carries out only after it: DISCARD ALL, then a Bind of a discarded statement', async () => {
    const dev = await start()
    const client = await connect(dev.url)
    for (let round = 0; round < 5; round++) {
      await client.send(
        wire.parse('plus', 'select $1::int + 1 as n'),
        wire.parse('nap', 'select pg_sleep($1::float8)'),
        wire.sync(),
      )
      expect(wire.summarize(await client.until('ReadyForQuery')).errors).toEqual([])
      await client.send(...unit('nap', ['0.3']), wire.query('discard all'))
      // The nap runs: what the client sends now comes after the DISCARD ALL.
      await expect.poll(() => stats(dev).sessionHeld, { timeout: 5_000, interval: 5 }).toBe(true)
      await client.send(...unit('plus', ['5']))
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).errors).toEqual([])
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).commands).toEqual([
        'DISCARD ALL',
      ])
      const after = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS }))
      expect(after.errors.map((error) => error.code)).toEqual(['26000'])
    }
  })

  it('gives the socket back when another client sends, which is answered', async () => {
    const dev = await start()
    const client = await prepared(dev)
    const other = await connect(dev.url)
    await untilThreadRan(dev, async () => {
      await othersQuiet(dev)
      await afterLend(client, unit('sleep', ['0.2']))
      expect((await other.query('select 42', { deadlineMs: DEADLINE_MS })).rows).toEqual([['42']])
      expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS })).errors).toEqual([])
    })
    expect((await run(client, 'plus', ['5'])).rows).toEqual([['6']])
  })

  it('lets a CancelRequest stop the statement the thread read: 57014, and the client goes on', async () => {
    const dev = await start()
    const client = await prepared(dev)
    await untilThreadRan(dev, async () => {
      expect(await lent(dev, client)).toBe(true)
      await client.send(...unit('sleep', ['30']))
      await client.next('NoticeResponse', { deadlineMs: DEADLINE_MS })
      await sendCancelRequest(dev.url, client.backendKey!)
      const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS }))
      expect(reply.errors.map((error) => error.code)).toEqual(['57014'])
    })
    expect((await run(client, 'plus', ['1'])).rows).toEqual([['2']])
  })

  it("ends a statement the thread read at the client's statement_timeout", async () => {
    const dev = await start()
    const client = await prepared(dev)
    expect((await client.query("set statement_timeout = '200ms'")).errors).toEqual([])
    await untilThreadRan(dev, async () => {
      await afterLend(client, unit('sleep', ['30']))
      const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS }))
      expect(reply.errors.map((error) => [error.code, error.message])).toEqual([
        ['57014', 'canceling statement due to statement timeout'],
      ])
    })
  })

  // The unit is the thread's to read when it comes within its look (most runs), else the server's: either way the
  // stop cancels it, tells the client and ends within its deadline.
  it('stops within its deadline while a statement of a lent socket runs: the client is told 57P01', async () => {
    const dev = await start()
    const client = await prepared(dev)
    expect(await lent(dev, client)).toBe(true)
    await client.send(...unit('sleep', ['30']))
    await client.next('NoticeResponse', { deadlineMs: DEADLINE_MS })
    const closed = dev.close()
    const fatal = (await untilFatal(client)).filter((error) => error.severity === 'FATAL')
    expect(fatal.map((error) => error.code)).toEqual(['57P01'])
    await closed
  })

  it('notices a client that leaves: its place in the session is freed for others', async () => {
    const dev = await start()
    const client = await prepared(dev)
    expect(await lent(dev, client)).toBe(true)
    client.destroy()
    await expect.poll(() => stats(dev).activeConnections, { timeout: 5_000 }).toBe(0)
    expect(stats(dev).clientsReadByDatabaseThreads).toBe(0)
    const other = await connect(dev.url)
    expect((await other.query('select 7', { deadlineMs: DEADLINE_MS })).rows).toEqual([['7']])
  })

  it('keeps a reply the client does not read off the session: others are answered, and it gets every row later', async () => {
    const dev = await start()
    const client = await prepared(dev)
    await client.send(wire.parse('big', "select g, repeat('x', 1000) from generate_series(1, $1::int) g"), wire.sync())
    await client.until('ReadyForQuery')
    const other = await connect(dev.url)
    await untilThreadRan(dev, async () => {
      await othersQuiet(dev)
      expect((await run(client, 'plus', ['0'])).rows).toEqual([['1']])
      client.socket.pause()
      await client.send(...unit('big', ['20000']))
      expect((await other.query('select 8', { deadlineMs: DEADLINE_MS })).rows).toEqual([['8']])
      client.socket.resume()
      const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: DEADLINE_MS }))
      expect(reply.errors).toEqual([])
      expect(reply.rows.length).toBe(20000)
      expect(reply.rows.every(([g], i) => g === String(i + 1))).toBe(true)
    })
  })
})
