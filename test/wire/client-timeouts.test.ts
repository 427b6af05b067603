// A client's own idle_in_transaction_session_timeout and idle_session_timeout end its connection as its backend would
// on Postgres (FATAL 25P03, 57P05), and its transaction's work is rolled back: a pool that sets one to reap a leaked
// transaction frees the database for the others. PGlite acts on neither, so the server does; the same steps run
// against PostgreSQL 15 when PG_ORACLE_URL is set. The server's own limits stay when the client's is longer.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect } = useDevDbs()

type Connect = (params?: Record<string, string>) => Promise<RawClient>
const targets: Array<[string, () => Promise<Connect>]> = [
  [
    'pglite-dev-db',
    async () => {
      const dev = await start()
      return (params) => connect(dev.url, params)
    },
  ],
]
const oracleUrl = process.env.PG_ORACLE_URL
if (oracleUrl) targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => (params) => connect(oracleUrl, params)])

async function expectFatal(client: RawClient, code: string): Promise<string> {
  const error = wire.decodeError((await client.next('ErrorResponse', { deadlineMs: 5_000 })).body)
  expect(error).toMatchObject({ severity: 'FATAL', code })
  await withDeadline(client.closed, 3_000, `socket closed after FATAL ${code}`)
  return error.message
}

describe("a client's own idle timeouts", () => {
  for (const [name, open] of targets) {
    it(`${name}: idle_in_transaction_session_timeout ends the client's connection with 25P03 and rolls its work back`, async () => {
      const connectTo = await open()
      const table = `own_idle_${process.pid}_${Date.now()}`
      const holder = await connectTo()
      expect((await holder.query("set idle_in_transaction_session_timeout = '300ms'")).errors).toEqual([])
      const began = performance.now()
      expect((await holder.query(`begin; create table ${table} (id int)`)).status).toBe('T')
      expect(await expectFatal(holder, '25P03')).toBe('terminating connection due to idle-in-transaction timeout')
      expect(performance.now() - began).toBeGreaterThanOrEqual(290)
      const other = await connectTo()
      expect((await other.query(`select to_regclass('${table}') is null as gone`)).rows).toEqual([['t']])
    })

    it(`${name}: a SET LOCAL of idle_in_transaction_session_timeout counts from its block's next rest`, async () => {
      const connectTo = await open()
      const holder = await connectTo()
      expect((await holder.query("begin; set local idle_in_transaction_session_timeout = '300ms'")).status).toBe('T')
      expect(await expectFatal(holder, '25P03')).toBe('terminating connection due to idle-in-transaction timeout')
    })

    it(`${name}: a SET in a block, in the extended protocol, counts from the next rest; a SET LOCAL ends with its block`, async () => {
      const connectTo = await open()
      const client = await connectTo()
      // The block's SET LOCAL is gone after its COMMIT: the next block rests past it and is still open.
      expect(
        (await client.query("begin; set local idle_in_transaction_session_timeout = '200ms'; commit")).status,
      ).toBe('I')
      expect((await client.query('begin')).status).toBe('T')
      // Time passing is what is tested: past the 200 ms the first block set, the second stays open.
      await new Promise((resolve) => setTimeout(resolve, 600))
      expect((await client.query('select 1')).rows).toEqual([['1']])
      await client.send(
        Buffer.concat([
          wire.parse('', "set idle_in_transaction_session_timeout = '300ms'"),
          wire.bind('', ''),
          wire.execute(''),
          wire.sync(),
        ]),
      )
      expect(wire.summarize(await client.until('ReadyForQuery')).status).toBe('T')
      expect(await expectFatal(client, '25P03')).toBe('terminating connection due to idle-in-transaction timeout')
    })

    it(`${name}: idle_session_timeout from the startup packet ends a client at rest with 57P05`, async () => {
      const connectTo = await open()
      const client = await connectTo({ options: '-c idle_session_timeout=300' })
      expect((await client.query('show idle_session_timeout')).rows).toEqual([['300ms']])
      expect(await expectFatal(client, '57P05')).toBe('terminating connection due to idle-session timeout')
    })
  }

  it("pglite-dev-db: a client's longer setting leaves the server's idle-in-transaction limit as it is", async () => {
    const dev = await start({ idleInTransactionTimeoutMs: 300 })
    const holder = await connect(dev.url)
    expect((await holder.query("set idle_in_transaction_session_timeout = '10min'; begin")).status).toBe('T')
    await expectFatal(holder, '25P03')
  })

  it("pglite-dev-db: one client's idle_session_timeout reaps that client alone", async () => {
    const dev = await start()
    const short = await connect(dev.url)
    const other = await connect(dev.url)
    expect((await short.query("set idle_session_timeout = '300ms'")).errors).toEqual([])
    await expectFatal(short, '57P05')
    expect((await other.query('select 1')).rows).toEqual([['1']])
  })
})

describe("a client's idle-in-transaction timeout, not idle", () => {
  for (const [name, open] of targets) {
    // Postgres arms it only at a ReadyForQuery in a transaction block: COPY data coming slowly is not idle.
    it(`${name}: COPY FROM STDIN whose data comes slower than the timeout completes`, async () => {
      const connectTo = await open()
      const client = await connectTo()
      expect((await client.query("set idle_in_transaction_session_timeout = '200ms'")).errors).toEqual([])
      expect((await client.query('begin; create temporary table slow_copy (n int)')).status).toBe('T')
      await client.send(wire.query('copy slow_copy from stdin'))
      await client.next('CopyInResponse')
      await client.send(wire.copyData('1\n'))
      // Time passing is what is tested: past the timeout, the COPY still waits for its data.
      await new Promise((resolve) => setTimeout(resolve, 600))
      await client.send(Buffer.concat([wire.copyData('2\n'), wire.copyDone()]))
      const reply = wire.summarize(await client.until('ReadyForQuery'))
      expect(reply.errors).toEqual([])
      expect(reply.status).toBe('T')
      expect((await client.query('select count(*) from slow_copy; commit')).rows).toEqual([['2']])
    })
  }
})

/** 32 MB of 1 kB rows. */
const ROWS = 32_768

describe("a client's idle-in-transaction timeout, not reading", () => {
  for (const [name, open] of targets) {
    // A backend blocked sending a reply is not idle: Postgres's timer waits for a ReadyForQuery.
    it(`${name}: a client that stops reading a big result in its block is not ended by its own timeout`, async () => {
      const connectTo = await open()
      const client = await connectTo()
      expect((await client.query("set idle_in_transaction_session_timeout = '200ms'")).errors).toEqual([])
      expect((await client.query('begin')).status).toBe('T')
      client.socket.pause()
      // Many small rows, more than socket buffers hold: the reader's parse stays quick once it reads again. The
      // COMMIT goes with the query, so that the client's own time to parse 33 MB after the last row counts for nothing.
      const query = `select repeat('x', 1024) as payload from generate_series(1, ${ROWS})`
      await client.send(wire.query(query), wire.query('commit'))
      await expect.poll(() => client.socket.readableLength, { timeout: 10_000 }).toBeGreaterThan(0)
      // Time passing is what is tested: past the timeout, the reply still waits for its reader.
      await new Promise((resolve) => setTimeout(resolve, 800))
      client.socket.resume()
      const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 20_000 }))
      expect(reply.errors).toEqual([])
      expect([reply.rows.length, reply.status]).toEqual([ROWS, 'T'])
      expect(wire.summarize(await client.until('ReadyForQuery')).status).toBe('I')
    })
  }
})
