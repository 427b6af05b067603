// node-postgres Pool (max 10): parameterized selects from many pool clients while others run explicit transactions
// (BEGIN; insert; select; COMMIT or ROLLBACK). The table must end up holding exactly the committed rows.
// The isolation variant checks that a bystander's statement never runs inside another client's open transaction.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { trackPool } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario, type Tally } from './outcome.ts'

export interface PgPoolMixedOptions {
  workers?: number
  iterations?: number
  queryDeadlineMs?: number
}

const same = (got: unknown, want: unknown): true | string =>
  JSON.stringify(got) === JSON.stringify(want) ? true : `expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`

const uniqueTable = (prefix: string) => `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 12)}`

function createPool(url: string, tally: Tally, max: number) {
  const pool = new pg.Pool({ connectionString: url, max, connectionTimeoutMillis: 5_000 })
  // An idle client's connection error is emitted on the pool; unhandled it would crash the run.
  pool.on('error', (error) => recordFailure(tally, error))
  return { pool, tracked: trackPool(pool) }
}

/** One explicit transaction on a checked-out client; resolves whether the row should now exist. */
async function transaction(
  pool: pg.Pool,
  table: string,
  worker: number,
  step: number,
  committed: number,
  deadlineMs: number,
): Promise<true | string> {
  const client = await withDeadline(pool.connect(), deadlineMs, 'pool.connect')
  let isBroken = false
  try {
    const q = (text: string, values?: unknown[]) =>
      withDeadline(client.query(text, values), deadlineMs, `${text} (worker ${worker})`)
    await q('BEGIN')
    await q(`insert into ${table} (id, worker, step) values ($1, $2, $3)`, [worker * 1000 + step, worker, step])
    const { rows } = await q(`select count(*)::int as n from ${table} where worker = $1`, [worker])
    const seen = same(rows, [{ n: committed + 1 }])
    await q(step % 4 === 3 ? 'ROLLBACK' : 'COMMIT')
    return seen
  } catch (error) {
    // The session may be mid-transaction or desynchronized: never hand it back to the pool.
    isBroken = true
    throw error
  } finally {
    client.release(isBroken)
  }
}

export async function pgPoolMixed(url: string, options: PgPoolMixedOptions = {}): Promise<Outcome> {
  const { workers = 8, iterations = 8, queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const { pool, tracked } = createPool(url, tally, 10)
  const table = uniqueTable('pool_mixed')
  const expected: number[] = []
  try {
    await withDeadline(
      pool.query(`create table ${table} (id int primary key, worker int not null, step int not null)`),
      queryDeadlineMs,
      'create table',
    )
    const timed = (op: () => Promise<true | string>) => () => withDeadline(op(), queryDeadlineMs, 'pool query')
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const worker = w + 1
        let committed = 0
        for (let step = 0; step < iterations; step++) {
          const k = worker * 1000 + step
          const results = [
            await attempt(
              tally,
              timed(async () => same((await pool.query('select $1::int * 2 as n', [k])).rows, [{ n: k * 2 }])),
            ),
            await attempt(tally, () => transaction(pool, table, worker, step, committed, queryDeadlineMs)),
          ]
          // Count only what the server reported committed; a failed COMMIT leaves the row's fate to the final check.
          if (results[1] === 'ok' && step % 4 !== 3) {
            committed++
            expected.push(k)
          }
          results.push(
            await attempt(
              tally,
              timed(async () =>
                same((await pool.query(`select count(*)::int as n from ${table} where worker = $1`, [worker])).rows, [
                  { n: committed },
                ]),
              ),
            ),
          )
          if (results.includes('stalled')) return
        }
      }),
    )
    await attempt(tally, async () => {
      const { rows } = await withDeadline(
        pool.query<{ id: number }>(`select id from ${table} order by id`),
        queryDeadlineMs,
        'final select',
      )
      const got = rows.map((r) => r.id)
      const want = [...expected].sort((a, b) => a - b)
      const missing = want.filter((id) => !got.includes(id))
      const extra = got.filter((id) => !want.includes(id))
      return missing.length === 0 && extra.length === 0
        ? true
        : `final table: missing ${JSON.stringify(missing)}, extra ${JSON.stringify(extra)}`
    })
    return verdictOf(tally, { workers, iterations, committed: expected.length })
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally, { workers, iterations })
  } finally {
    await tracked.end()
  }
}

/**
 * A: BEGIN; insert; B sends a read meanwhile; A: COMMIT. B must not run inside A's transaction: its statement has
 * no transaction id of A's and it counts 0 (a snapshot before the commit, as real Postgres usually answers) or 1
 * (after it). On one shared session only the second is possible; `details.order` lets the caller require that.
 */
export async function pgPoolIsolation(url: string, options: { queryDeadlineMs?: number } = {}): Promise<Outcome> {
  const { queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const { pool, tracked } = createPool(url, tally, 2)
  const table = uniqueTable('pool_isolation')
  const order: string[] = []
  let bCount: number | undefined
  const q = <R extends pg.QueryResultRow>(client: pg.Pool | pg.PoolClient, text: string, values?: unknown[]) =>
    withDeadline(client.query<R>(text, values), queryDeadlineMs, text)
  try {
    await q(pool, `create table ${table} (id int primary key)`)
    // Both connections are up before A begins, so B's read reaches the server while A's transaction is open.
    const a = await withDeadline(pool.connect(), queryDeadlineMs, 'pool.connect')
    const b = await withDeadline(pool.connect(), queryDeadlineMs, 'pool.connect')
    let isBroken = true
    try {
      await q(a, 'BEGIN')
      await q(a, `insert into ${table} (id) values ($1)`, [1])
      const xidA = (await q<{ xid: string }>(a, 'select pg_current_xact_id()::text as xid')).rows[0]?.xid
      const read = q<{ n: number; xid: string | null }>(
        b,
        `select count(*)::int as n, pg_current_xact_id_if_assigned()::text as xid from ${table} where id = $1`,
        [1],
      )
      const bRows = read.then((r) => {
        order.push('B')
        bCount = r.rows[0]?.n
        return r.rows
      })
      await attempt(tally, async () => {
        await q(a, 'COMMIT')
        order.push('A COMMIT')
        return true
      })
      await attempt(tally, async () => {
        const rows = await bRows
        if (rows[0]?.xid != null && rows[0].xid === xidA) return `B ran inside A's transaction (xid ${xidA})`
        const before = same(rows, [{ n: 0, xid: null }])
        return before === true ? true : same(rows, [{ n: 1, xid: null }])
      })
      isBroken = tally.ok !== 2
    } finally {
      a.release(isBroken)
      b.release(isBroken)
    }
    return verdictOf(tally, { order, counted: bCount })
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally, { order, counted: bCount })
  } finally {
    await tracked.end()
  }
}

export const pgPoolMixedScenario: Scenario = { name: 'pg-pool-mixed', run: (url) => pgPoolMixed(url) }
export const pgPoolIsolationScenario: Scenario = { name: 'pg-pool-isolation', run: (url) => pgPoolIsolation(url) }
