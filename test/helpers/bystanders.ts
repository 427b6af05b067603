// Well-behaved clients that run beside misbehaving ones (fuzz, abrupt disconnects): node-postgres (a pool; unnamed
// and named statements; transactions) and postgres.js (a pool; prepared, unprepared, transactions). Every result is
// checked, every operation is bounded, and any failure is collected with who and what.
import pg from 'pg'
import postgres from 'postgres'
import { trackPool } from '../../harness/pg.ts'
import { withDeadline } from '../../harness/raw-client.ts'
import type { Rng } from '../../harness/seed.ts'

export interface BystanderOptions {
  /** Created here (who text, n int); each bystander's committed rows go there. */
  table: string
  /** Connections (and loops) per driver. */
  perDriver: number
  deadlineMs: number
}

export interface BystanderResult {
  ops: number
  errors: string[]
  /** Rows committed to the table: what a count of it must say afterwards. */
  committed: number
}

/** Runs the bystanders until `isDone()`, then closes their pools (bounded). */
export async function runBystanders(
  url: string,
  rng: Rng,
  isDone: () => boolean,
  options: BystanderOptions,
): Promise<BystanderResult> {
  const { table, perDriver, deadlineMs } = options
  const result: BystanderResult = { ops: 0, errors: [], committed: 0 }
  const pool = new pg.Pool({ connectionString: url, max: perDriver })
  pool.on('error', (error) => result.errors.push(`pg pool: ${error.message}`))
  const poolEnd = trackPool(pool)
  const sql = postgres(url, { max: perDriver, onnotice: () => {} })
  const op = async (who: string, what: string, body: () => Promise<void>) => {
    try {
      await withDeadline(body(), deadlineMs, `${who} ${what}`)
      result.ops++
    } catch (error) {
      result.errors.push(`${who} ${what}: ${(error as Error).message}`)
    }
  }
  const expectEqual = (got: unknown, want: unknown) => {
    if (JSON.stringify(got) !== JSON.stringify(want))
      throw new Error(`expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`)
  }

  const pgLoop = async (id: number, r: Rng) => {
    const who = `pg bystander ${id}`
    let mine = 0
    while (!isDone()) {
      const a = r.int(-1000, 1000)
      const b = r.int(-1000, 1000)
      switch (r.int(0, 2)) {
        case 0:
          await op(who, `select ${a} + ${b}`, async () =>
            expectEqual((await pool.query('select $1::int + $2::int as s', [a, b])).rows, [{ s: a + b }]),
          )
          break
        case 1:
          await op(who, `named select ${a} * ${b}`, async () =>
            expectEqual(
              (await pool.query({ name: 'bystander_mul', text: 'select $1::int * $2::int as p', values: [a, b] })).rows,
              [{ p: a * b }],
            ),
          )
          break
        default:
          await op(who, `transaction ${mine}`, async () => {
            const client = await pool.connect()
            let failure: Error | undefined
            try {
              await client.query('begin')
              await client.query(`insert into ${table} (who, n) values ($1, $2)`, [who, mine])
              expectEqual((await client.query(`select count(*)::int as c from ${table} where who = $1`, [who])).rows, [
                { c: mine + 1 },
              ])
              await client.query('commit')
              mine++
              result.committed++
            } catch (error) {
              failure = error as Error
              throw error
            } finally {
              // A client that failed mid-transaction is discarded, not handed to the next bystander.
              client.release(failure)
            }
          })
      }
    }
  }

  const postgresLoop = async (id: number, r: Rng) => {
    const who = `postgres.js bystander ${id}`
    let mine = 0
    while (!isDone()) {
      const a = r.int(-1000, 1000)
      const text = r.bytes(8).toString('hex')
      switch (r.int(0, 2)) {
        case 0:
          await op(who, `select ${a} - 1`, async () =>
            expectEqual([...(await sql`select ${a}::int - 1 as d`)], [{ d: a - 1 }]),
          )
          break
        case 1:
          // Unprepared: the unnamed statement, the one a shared session exposes most.
          await op(who, `unprepared select '${text}'`, async () =>
            expectEqual([...(await sql.unsafe('select $1::text as t', [text], { prepare: false }))], [{ t: text }]),
          )
          break
        default:
          await op(who, `transaction ${mine}`, async () => {
            await sql.begin(async (tx) => {
              await tx.unsafe(`insert into ${table} (who, n) values ($1, $2)`, [who, mine])
              expectEqual(
                [...(await tx.unsafe(`select count(*)::int as c from ${table} where who = $1`, [who]))],
                [{ c: mine + 1 }],
              )
            })
            mine++
            result.committed++
          })
      }
    }
  }

  try {
    await withDeadline(
      pool.query(`create table if not exists ${table} (who text, n int)`),
      deadlineMs,
      'create the bystander table',
    )
    await Promise.all([
      ...Array.from({ length: perDriver }, (_, i) => pgLoop(i, rng.fork(i))),
      ...Array.from({ length: perDriver }, (_, i) => postgresLoop(i, rng.fork(100 + i))),
    ])
  } finally {
    await poolEnd.end()
    await withDeadline(sql.end({ timeout: 5 }), deadlineMs, 'postgres.js end')
  }
  return result
}
