// The Node drivers' features beyond plain queries, three apps at once: postgres.js (pipelining on one connection,
// prepare true and false, savepoints, a cursor, LISTEN, COPY streams both ways, a 10 MB bytea, a 100k-row result),
// node-postgres (pg-cursor, pg-copy-streams) and kysely on a pg pool. Every value is checked.
import { randomBytes } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Kysely, PostgresDialect, sql as ksql } from 'kysely'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import Cursor from 'pg-cursor'
import postgres from 'postgres'
import { trackPool } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import {
  attempt,
  createTally,
  recordFailure,
  verdictOf,
  type Outcome,
  type RunOptions,
  type Scenario,
  type Tally,
} from './outcome.ts'

const APPS = 3
const DEADLINE_MS = 10_000

type Check = [label: string, run: () => Promise<true | string>]

function postgresJsChecks(url: string, app: number, table: string): { checks: Check[]; end: () => Promise<void> } {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 })
  const unprepared = postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 5 })
  const checks: Check[] = [
    [
      'postgres.js pipelining',
      async () => {
        // All sent before any answer comes back, on one connection.
        const results = await Promise.all(Array.from({ length: 50 }, (_, i) => sql`select ${i}::int * ${app + 2} as v`))
        const bad = results.findIndex((rows, i) => rows[0]?.v !== i * (app + 2))
        return bad < 0 ? true : `query ${bad}: ${JSON.stringify(results[bad])}`
      },
    ],
    [
      'postgres.js prepare: false',
      async () => {
        const rows = await unprepared`select ${app}::int as a, ${'x'.repeat(app + 1)}::text as b`
        return rows[0]?.a === app && rows[0]?.b === 'x'.repeat(app + 1) ? true : JSON.stringify(rows)
      },
    ],
    [
      'postgres.js savepoints',
      async () => {
        await sql`create table ${sql(table)} (id int primary key, data bytea)`
        const undo = new Error('undo the savepoint')
        await sql.begin(async (tx) => {
          await tx`insert into ${sql(table)} (id) values (1)`
          await tx
            .savepoint(async (sp) => {
              await sp`insert into ${sql(table)} (id) values (2)`
              throw undo
            })
            .catch((error: unknown) => {
              if (error !== undo) throw error
            })
          await tx`insert into ${sql(table)} (id) values (3)`
        })
        const rows = await sql`select id from ${sql(table)} order by id`
        return JSON.stringify(rows.map((r) => r.id)) === '[1,3]' ? true : `ids ${JSON.stringify(rows.map((r) => r.id))}`
      },
    ],
    [
      'postgres.js cursor',
      async () => {
        let seen = 0
        let sum = 0
        for await (const rows of sql`select g from generate_series(1, 1000) g`.cursor(100)) {
          seen += rows.length
          for (const row of rows) sum += row.g as number
        }
        return seen === 1000 && sum === 500_500 ? true : `cursor read ${seen} rows, sum ${sum}`
      },
    ],
    [
      'postgres.js 10 MB bytea',
      async () => {
        const data = randomBytes(10 * 1024 * 1024)
        await sql`insert into ${sql(table)} (id, data) values (10, ${data})`
        const [row] = await sql`select data from ${sql(table)} where id = 10`
        return Buffer.isBuffer(row?.data) && (row.data as Buffer).equals(data)
          ? true
          : `bytea came back as ${(row?.data as Buffer | undefined)?.length} bytes`
      },
    ],
    [
      'postgres.js 100k rows',
      async () => {
        const rows = await sql`select g, md5(g::text) as h from generate_series(1, 100000) g`
        return rows.length === 100_000 &&
          rows[99_999]?.g === 100_000 &&
          rows[0]?.h === 'c4ca4238a0b923820dcc509a6f75849b'
          ? true
          : `${rows.length} rows`
      },
    ],
    [
      'postgres.js COPY streams',
      async () => {
        await sql`create table ${sql(`${table}_copy`)} (n int, label text)`
        const writable = await sql`copy ${sql(`${table}_copy`)} from stdin`.writable()
        await pipeline(Readable.from(Array.from({ length: 5000 }, (_, i) => `${i}\tapp ${app}\n`)), writable)
        const readable = await sql`copy (select n from ${sql(`${table}_copy`)} order by n) to stdout`.readable()
        let text = ''
        for await (const chunk of readable) text += chunk.toString()
        const lines = text.trim().split('\n')
        return lines.length === 5000 && lines[4999] === '4999' ? true : `copied back ${lines.length} lines`
      },
    ],
    [
      'postgres.js LISTEN',
      async () => {
        const channel = `drivers_${app}`
        let resolve!: (payload: string) => void
        const got = new Promise<string>((r) => (resolve = r))
        const listener = await sql.listen(channel, (payload) => resolve(payload))
        await unprepared`select pg_notify(${channel}, ${`hello ${app}`})`
        const payload = await withDeadline(got, 5_000, 'notification')
        await listener.unlisten()
        return payload === `hello ${app}` ? true : `payload ${payload}`
      },
    ],
  ]
  return {
    checks,
    end: async () => void (await Promise.all([sql.end({ timeout: 2 }), unprepared.end({ timeout: 2 })])),
  }
}

function nodePostgresChecks(pool: pg.Pool, app: number, table: string): Check[] {
  return [
    [
      'pg-cursor',
      async () => {
        const client = await pool.connect()
        // A lost connection also rejects the query in progress, which is what the check reports.
        client.on('error', () => {})
        try {
          const cursor = client.query(new Cursor('select g from generate_series(1, 500) g'))
          let total = 0
          let count = 0
          for (;;) {
            const rows = await cursor.read(64)
            if (rows.length === 0) break
            count += rows.length
            for (const row of rows) total += row.g as number
          }
          await cursor.close()
          return count === 500 && total === 125_250 ? true : `cursor read ${count} rows, sum ${total}`
        } finally {
          client.release()
        }
      },
    ],
    [
      'pg-copy-streams',
      async () => {
        const client = await pool.connect()
        // A lost connection also rejects the query in progress, which is what the check reports.
        client.on('error', () => {})
        try {
          await client.query(`create table ${table}_pgcopy (n int, app int)`)
          await pipeline(
            Readable.from(Array.from({ length: 3000 }, (_, i) => `${i},${app}\n`)),
            client.query(copyFrom(`copy ${table}_pgcopy from stdin with (format csv)`)),
          )
          let out = ''
          await pipeline(
            client.query(copyTo(`copy (select sum(n), count(*) from ${table}_pgcopy) to stdout with (format csv)`)),
            new Writable({
              write(chunk: Buffer, _encoding, done) {
                out += chunk.toString()
                done()
              },
            }),
          )
          return out.trim() === '4498500,3000' ? true : `copied and summed: ${out.trim()}`
        } finally {
          client.release()
        }
      },
    ],
  ]
}

function kyselyChecks(pool: pg.Pool, app: number, table: string): Check[] {
  interface Db {
    [name: string]: { id: number; name: string; tags: string[] }
  }
  const db = new Kysely<Db>({ dialect: new PostgresDialect({ pool }) })
  const name = `${table}_kysely`
  return [
    [
      'kysely',
      async () => {
        await db.schema
          .createTable(name)
          .addColumn('id', 'integer', (c) => c.primaryKey())
          .addColumn('name', 'text')
          .addColumn('tags', ksql`text[]`)
          .execute()
        await db.transaction().execute(async (trx) => {
          for (let i = 0; i < 20; i++)
            await trx
              .insertInto(name)
              .values({ id: i, name: `app ${app} row ${i}`, tags: [`t${i % 3}`] })
              .execute()
        })
        const rows = await db
          .selectFrom(name)
          .select(['id', 'name'])
          .where('tags', '@>', ksql<string[]>`array['t1']`)
          .orderBy('id')
          .execute()
        const ids = rows.map((r) => r.id)
        return JSON.stringify(ids) === JSON.stringify([1, 4, 7, 10, 13, 16, 19]) && rows[0]?.name === `app ${app} row 1`
          ? true
          : `kysely rows ${JSON.stringify(rows)}`
      },
    ],
  ]
}

async function runChecks(tally: Tally, checks: Check[], deadlineMs: number): Promise<void> {
  for (const [label, run] of checks) {
    const verdict = await attempt(tally, async () => {
      const result = await withDeadline(run(), deadlineMs, label)
      return result === true ? true : `${label}: ${result}`
    })
    if (verdict === 'stalled') return
  }
}

/** `deadlineMs` bounds each check (DEADLINE_MS by default). */
export async function drivers(url: string, options: RunOptions = {}): Promise<Outcome> {
  const tally = createTally()
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5_000 })
  pool.on('error', (error) => recordFailure(tally, error))
  const tracked = trackPool(pool)
  const ends: Array<() => Promise<void>> = []
  try {
    await withDeadline(
      pool.query(
        `drop table if exists ${Array.from({ length: APPS }, (_, a) => `drivers_${a}, drivers_${a}_copy, drivers_${a}_pgcopy, drivers_${a}_kysely`).join(', ')}`,
      ),
      5_000,
      'cleanup',
    )
    await Promise.all(
      Array.from({ length: APPS }, async (_, app) => {
        const table = `drivers_${app}`
        const js = postgresJsChecks(url, app, table)
        ends.push(js.end)
        await runChecks(
          tally,
          [...js.checks, ...nodePostgresChecks(pool, app, table), ...kyselyChecks(pool, app, table)],
          options.deadlineMs ?? DEADLINE_MS,
        )
      }),
    )
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    // postgres.js's end() does not reject: it waits for the close, or destroys the sockets after its timeout.
    await Promise.all(ends.map((end) => end()))
    await tracked.end()
  }
  return verdictOf(tally)
}

export const driversScenario: Scenario = { name: 'drivers', run: (url, options) => drivers(url, options) }
