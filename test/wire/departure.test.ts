// A client that leaves while its statement runs, by closing its socket (FIN) or by a reset: the statement finishes, as
// on Postgres, whose backend notices only when it next reads or writes. After a FIN what the client sent before runs
// too (a pipeline's COMMIT commits); after a reset nothing more begins. What is still open then is rolled back. Each
// scenario runs against PostgreSQL 15 too when PG_ORACLE_URL is set. Not compared: a reset with more work sent behind
// the running statement. Postgres stops after the statement whose reply it fails to send; here a pipeline in one write
// is one call, and a reset can reach the server as an end of input, after which the rest runs as after a FIN.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start } = useDevDbs()
type DevDb = Awaited<ReturnType<typeof start>>
const oracleUrl = process.env.PG_ORACLE_URL

type Departure = 'FIN' | 'reset'
const insert = (table: string) => wire.query(`INSERT INTO ${table} SELECT 1 FROM pg_sleep(0.3)`)
/**
 * What the leaving client sends in one write (`first`), and once that runs in a second (`then`), before it leaves;
 * the rows of its INSERT that are there after, for each way of leaving (none: not compared, see the top).
 */
const WORK: Record<
  string,
  { first: (table: string) => Buffer[]; then?: Buffer[]; rows: Partial<Record<Departure, number>> }
> = {
  'an autocommit INSERT': { first: (table) => [insert(table)], rows: { FIN: 1, reset: 1 } },
  'BEGIN, INSERT, COMMIT as a pipeline': {
    first: (table) => [wire.query('BEGIN'), insert(table), wire.query('COMMIT')],
    rows: { FIN: 1 },
  },
  'an INSERT in a block it leaves open': {
    first: (table) => [wire.query('BEGIN'), insert(table)],
    rows: { FIN: 0, reset: 0 },
  },
  'an INSERT in a block, then its COMMIT in a second write': {
    first: (table) => [wire.query('BEGIN'), insert(table)],
    then: [wire.query('COMMIT')],
    rows: { FIN: 1 },
  },
}
type Work = keyof typeof WORK

/**
 * Rows of the leaving client's INSERT that another client sees once it is gone. It leaves once its statement runs:
 * on Postgres the watcher sees it active; here the watcher could not look while it holds the session, so the
 * server's own count says it (`dev`).
 */
async function rowsAfterLeaving(url: string, departure: Departure, work: Work, dev?: DevDb): Promise<number> {
  const table = `departed_${Math.random().toString(36).slice(2, 10)}`
  const watcher = await connectRaw(url, { deadlineMs: 20_000 })
  const leaver = await connectRaw(url)
  try {
    expect((await watcher.query(`CREATE TABLE ${table} (x int)`)).errors).toEqual([])
    const pid = leaver.backendKey!.pid
    const stateOfLeaver = async (client: RawClient) =>
      (await client.query(`SELECT state FROM pg_stat_activity WHERE pid = ${pid}`)).rows[0]?.[0] ?? 'gone'
    if (dev) {
      // The watcher's CREATE TABLE lets the session go just after its answer: then the leaver's statement takes it.
      await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 10_000, interval: 5 }).toBe(false)
      await leaver.send(...WORK[work]!.first(table))
      await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 10_000, interval: 5 }).toBe(true)
    } else {
      await leaver.send(...WORK[work]!.first(table))
      await expect.poll(() => stateOfLeaver(watcher), { timeout: 10_000, interval: 20 }).toBe('active')
    }
    const then = WORK[work]!.then
    if (then) await leaver.send(...then)
    if (departure === 'FIN') leaver.socket.end()
    else leaver.socket.resetAndDestroy()
    await expect.poll(() => stateOfLeaver(watcher), { timeout: 10_000, interval: 20 }).toBe('gone')
    const counted = await watcher.query(`SELECT count(*) FROM ${table}`)
    expect(counted.errors).toEqual([])
    return Number(counted.rows[0]![0])
  } finally {
    await watcher.query(`DROP TABLE IF EXISTS ${table}`)
    leaver.destroy()
    await watcher.end()
  }
}

describe('a client that leaves while its work runs', () => {
  for (const departure of ['FIN', 'reset'] as const) {
    for (const work of Object.keys(WORK)) {
      const rows = WORK[work]!.rows[departure]
      if (rows === undefined) continue
      // Replies go straight to the socket from the database's thread, or through the server's thread (a trace).
      for (const traced of [false, true]) {
        it(`${departure} during ${work}${traced ? ', traced' : ''}: ${rows ? 'it commits' : 'it is rolled back'}`, async () => {
          const dir = traced ? await mkdtemp(join(tmpdir(), 'pglite-dev-db-departure-')) : null
          if (dir) onTestFinished(() => rm(dir, { recursive: true, force: true }))
          const dev = await start(dir ? { trace: join(dir, 'trace.jsonl') } : {})
          expect(await rowsAfterLeaving(dev.url, departure, work, dev)).toBe(rows)
        })
      }

      it.runIf(oracleUrl)(`PostgreSQL 15 (PG_ORACLE_URL): ${departure} during ${work}, the same`, async () => {
        expect(await rowsAfterLeaving(oracleUrl!, departure, work)).toBe(rows)
      })
    }
  }
})

/**
 * A client that prepared s1 sends, in one write, a statement that runs a while, a DISCARD TEMP (which the server
 * carries out itself, between two calls) and an Execute of s1, then closes its end: every reply still comes, errors
 * none. Its statements are closed only after its last unit.
 */
async function repliesAfterClosing(url: string): Promise<string[]> {
  const leaver = await connectRaw(url, { deadlineMs: 20_000 })
  try {
    await leaver.send(wire.parse('s1', 'SELECT 41 + 1'), wire.sync())
    await leaver.until('ReadyForQuery')
    await leaver.send(
      wire.query('SELECT pg_sleep(0.3)'),
      wire.query('DISCARD TEMP'),
      wire.bind('', 's1'),
      wire.execute(''),
      wire.sync(),
    )
    leaver.socket.end()
    const replies = [
      ...(await leaver.until('ReadyForQuery')),
      ...(await leaver.until('ReadyForQuery')),
      ...(await leaver.until('ReadyForQuery')),
    ]
    const { errors, commands, rows } = wire.summarize(replies)
    return [...errors.map((error) => `error ${error.code}`), ...commands, ...rows.map((row) => row.join())]
  } finally {
    leaver.destroy()
  }
}

const REPLIES_AFTER_CLOSING = ['SELECT 1', 'DISCARD TEMP', 'SELECT 1', '', '42']

describe('a client that closes its end after sending work', () => {
  it('is answered all of it, its prepared statement still there for its last unit', async () => {
    const dev = await start()
    expect(await repliesAfterClosing(dev.url)).toEqual(REPLIES_AFTER_CLOSING)
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    expect(await repliesAfterClosing(oracleUrl!)).toEqual(REPLIES_AFTER_CLOSING)
  })
})
