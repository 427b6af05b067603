// drizzle-kit, the migration tool of the example app, against the server while the app's pool is busy: `migrate`
// applies this repo's migrations/ (recorded in drizzle.__drizzle_migrations), `push` creates a table from a schema
// file, `pull` introspects the database into a schema file. Meanwhile the app (drizzle-orm on postgres.js) runs
// checked transactions.
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { count, eq, TransactionRollbackError } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import { integer, pgTable, serial } from 'drizzle-orm/pg-core'
import pg from 'pg'
import postgres from 'postgres'
import { trackPool } from '../pg.ts'
import { runProcess } from '../process.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const DRIZZLE_KIT = join(REPO, 'node_modules', 'drizzle-kit', 'bin.cjs')
const PUSH_CONFIG = 'harness/clients/drizzle-push.config.ts'

const busyTable = pgTable('drizzle_busy', { id: serial('id').primaryKey(), worker: integer('worker').notNull() })

const drizzleKit = (args: string[], env: NodeJS.ProcessEnv) =>
  runProcess(process.execPath, [DRIZZLE_KIT, ...args], { env, deadlineMs: 60_000, cwd: REPO })

export async function drizzleKitScenario(url: string): Promise<Outcome> {
  const tally = createTally()
  const pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 5_000 })
  pool.on('error', (error) => recordFailure(tally, error))
  const tracked = trackPool(pool)
  const sql = postgres(url, { max: 4, onnotice: () => {}, connect_timeout: 5 })
  const db = drizzle(sql)
  const out = await mkdtemp(join(tmpdir(), 'pglite-drizzle-pull-'))
  let busy = true
  try {
    await withDeadline(
      pool.query(
        'drop table if exists drizzle_busy, drizzle_pushed; create table drizzle_busy (id serial primary key, worker int not null)',
      ),
      5_000,
      'setup',
    )
    // The app: drizzle-orm on a postgres.js pool (prepared statements, pipelining), transactions that insert a row
    // and check it, every other one rolled back, until the tool runs are over; then the rows each worker
    // committed must all be there, and no other.
    const committed = [0, 0, 0, 0]
    const app = Promise.all(
      committed.map(async (_, worker) => {
        for (let i = 0; busy && i < 2_000; i++) {
          const isKept = i % 2 === 0
          const verdict = await attempt(tally, async () => {
            let seen: number | undefined
            const work = db.transaction(async (tx) => {
              await tx.insert(busyTable).values({ worker })
              seen = (await tx.select({ n: count() }).from(busyTable).where(eq(busyTable.worker, worker)))[0]?.n
              if (!isKept) tx.rollback()
            })
            await withDeadline(
              work.catch((error: unknown) =>
                error instanceof TransactionRollbackError ? undefined : Promise.reject(error),
              ),
              5_000,
              `worker ${worker} transaction`,
            )
            if (isKept) committed[worker]!++
            return seen === committed[worker]! + (isKept ? 0 : 1)
              ? true
              : `worker ${worker} saw ${seen} of its rows inside its transaction`
          })
          if (verdict !== 'ok') return
        }
      }),
    )
    const env = { DATABASE_URL: url, DRIZZLE_PULL_OUT: out }
    await attempt(tally, async () => {
      const run = await drizzleKit(['migrate'], env)
      const journal = JSON.parse(await readFile(join(REPO, 'migrations', 'meta', '_journal.json'), 'utf8')) as {
        entries: unknown[]
      }
      const { rows } = await withDeadline(
        pool.query<{ n: number; tables: number }>(
          `select (select count(*)::int from drizzle.__drizzle_migrations) as n,
                (select count(*)::int from pg_tables where schemaname = 'public' and tablename in ('customers', 'products', 'orders', 'order_items')) as tables`,
        ),
        5_000,
        'after migrate',
      )
      return run.code === 0 && rows[0]?.n === journal.entries.length && rows[0].tables === 4
        ? true
        : `migrate: exit ${run.code} ${run.stderr.trim().split('\n').pop()}, ${JSON.stringify(rows[0])}`
    })
    await attempt(tally, async () => {
      const run = await drizzleKit(['push', '--force', '--config', PUSH_CONFIG], {
        ...env,
        DRIZZLE_TABLES: 'drizzle_pushed',
      })
      const { rows } = await withDeadline(
        pool.query<{ c: string }>(
          "select string_agg(column_name || ':' || data_type, ',' order by ordinal_position) as c from information_schema.columns where table_name = 'drizzle_pushed'",
        ),
        5_000,
        'after push',
      )
      const want = 'id:integer,label:text,meta:jsonb,created_at:timestamp with time zone'
      return run.code === 0 && rows[0]?.c === want
        ? true
        : `push: exit ${run.code} ${run.stderr.trim().split('\n').pop()}, columns ${rows[0]?.c}`
    })
    await attempt(tally, async () => {
      const run = await drizzleKit(['pull', '--config', PUSH_CONFIG], env)
      const schema = await readFile(join(out, 'schema.ts'), 'utf8').catch(() => '')
      const tables = ['customers', 'orders', 'drizzle_pushed'].filter((t) => !schema.includes(`pgTable("${t}"`))
      return run.code === 0 && tables.length === 0
        ? true
        : `pull: exit ${run.code} ${run.stderr.trim().split('\n').pop()}, missing ${tables.join(', ')}`
    })
    busy = false
    await withDeadline(app, 20_000, 'the app pool')
    await attempt(tally, async () => {
      const { rows } = await withDeadline(
        pool.query<{ worker: number; n: number }>(
          'select worker, count(*)::int as n from drizzle_busy group by worker order by worker',
        ),
        5_000,
        'final count',
      )
      const got = committed.map((_, worker) => rows.find((r) => r.worker === worker)?.n ?? 0)
      return JSON.stringify(got) === JSON.stringify(committed)
        ? true
        : `committed ${JSON.stringify(committed)}, table has ${JSON.stringify(got)}`
    })
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    busy = false
    await sql.end({ timeout: 2 }) // does not reject: after 2 s it destroys the sockets
    await tracked.end()
    await rm(out, { recursive: true, force: true })
  }
  return verdictOf(tally)
}

export const drizzleKitToolScenario: Scenario = { name: 'drizzle-kit', run: (url) => drizzleKitScenario(url) }
