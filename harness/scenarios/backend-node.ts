// Each client its own backend, as the Node drivers meet it: four migration runners started together guard their work
// with pg_advisory_lock, as node-pg-migrate, Prisma and golang-migrate do (on one shared backend every runner gets
// the lock and they race: relation already exists); pg_backend_pid() is node-postgres' processID; postgres.js
// reconnects after pg_terminate_backend of its own connection; a pid no backend has is not signaled (false); PREPARE TRANSACTION and COMMIT PREPARED from another
// client work; application_name is reported at startup.
import pg from 'pg'
import postgres from 'postgres'
import { endClient } from '../pg.ts'
import { connectRaw, withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const RUNNERS = 4
const DEADLINE_MS = 10_000
const LOCK_KEY = 727073

/** One runner: take the lock, apply the migration unless another did, record it, let go. */
async function migrate(client: pg.Client, table: string, ledger: string): Promise<'applied' | 'skipped'> {
  const q = (text: string) => withDeadline(client.query(text), DEADLINE_MS, text)
  await q(`select pg_advisory_lock(${LOCK_KEY})`)
  try {
    const { rows } = await q(`select count(*)::int as n from ${ledger} where name = '0001_init'`)
    if (rows[0].n > 0) return 'skipped'
    await q(`create table ${table} (id int primary key)`)
    await q(`insert into ${ledger} (name) values ('0001_init')`)
    return 'applied'
  } finally {
    await q(`select pg_advisory_unlock(${LOCK_KEY})`)
  }
}

export async function backendNode(url: string): Promise<Outcome> {
  const tally = createTally()
  const clients: pg.Client[] = []
  const connect = async (options: pg.ClientConfig = {}) => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, ...options })
    client.on('error', () => {})
    clients.push(client)
    await withDeadline(client.connect(), DEADLINE_MS, 'connect')
    return client
  }
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5, fetch_types: false })
  try {
    const setup = await connect()
    const suffix = `${process.pid}_${Date.now() % 100_000}`
    const table = `runner_made_${suffix}`
    const ledger = `runner_ledger_${suffix}`
    await setup.query(`create table ${ledger} (name text primary key)`)
    const runners = await Promise.all(Array.from({ length: RUNNERS }, () => connect()))
    await attempt(tally, async () => {
      const outcomes = await Promise.allSettled(runners.map((runner) => migrate(runner, table, ledger)))
      const errors = outcomes
        .filter((o) => o.status === 'rejected')
        .map((o) => (o.reason as { code?: string }).code ?? String(o.reason))
      const applied = outcomes.filter((o) => o.status === 'fulfilled' && o.value === 'applied').length
      return errors.length === 0 && applied === 1
        ? true
        : `${RUNNERS} runners: applied ${applied} times, errors ${JSON.stringify(errors)}`
    })
    await setup.query(`drop table if exists ${table}; drop table ${ledger}`)

    await attempt(tally, async () => {
      const pids: unknown[] = []
      const told: unknown[] = []
      for (const runner of runners.slice(0, 2) as Array<pg.Client & { processID?: number }>) {
        // Unaliased, the column is named after the function (code reads rows[0].pg_backend_pid).
        pids.push((await runner.query('select pg_backend_pid()')).rows[0].pg_backend_pid)
        told.push(runner.processID)
      }
      return JSON.stringify(pids) === JSON.stringify(told)
        ? true
        : `pg_backend_pid() ${JSON.stringify(pids)}, processID ${JSON.stringify(told)}`
    })

    await attempt(tally, async () => {
      // A pid no backend has: false, with Postgres's WARNING, in a simple Query as in an extended one.
      const runner = runners[0]!
      const warnings: string[] = []
      const onNotice = (notice: { severity?: string; message?: string }) =>
        void warnings.push(`${notice.severity} ${notice.message}`)
      runner.on('notice', onNotice)
      try {
        const simple = (await runner.query('select pg_cancel_backend(1)')).rows[0].pg_cancel_backend
        const extended = (await runner.query('select pg_terminate_backend($1::int)', [1])).rows[0].pg_terminate_backend
        const warned = warnings.filter((w) => w === 'WARNING PID 1 is not a PostgreSQL backend process').length
        return simple === false && extended === false && warned === 2
          ? true
          : `pg_cancel_backend(1) ${simple}, pg_terminate_backend($1 = 1) ${extended}, notices ${JSON.stringify(warnings)}`
      } finally {
        runner.off('notice', onNotice)
      }
    })

    await attempt(tally, async () => {
      // postgres.js sees its connection end (CONNECTION_CLOSED), may then be handed the FATAL 57P01, then reconnects.
      const ended = await withDeadline(
        sql`select pg_terminate_backend(pg_backend_pid())`.then(
          () => 'no error',
          (error: { code?: string }) => error.code ?? 'error',
        ),
        DEADLINE_MS,
        'terminate self',
      )
      const seen: string[] = []
      for (let tries = 0; tries < 3; tries++) {
        const rows = await withDeadline(
          sql`select 41 + 1 as n`,
          DEADLINE_MS,
          'postgres.js after its connection was ended',
        ).catch((error: { code?: string }) => void seen.push(error.code ?? 'error'))
        if (rows)
          return ended !== 'no error' && rows.at(-1)?.['n'] === 42
            ? true
            : `terminate: ${ended}; then ${JSON.stringify(rows)}`
      }
      return `terminate: ${ended}; then ${seen.join(', ')}`
    })

    await attempt(tally, async () => {
      // Two-phase commit: one client prepares its transaction, another commits it (the server allows prepared transactions).
      const [a, b] = [runners[2], runners[3]]
      if (!a || !b) return 'no runners'
      const gid = `gid_${suffix}`
      await a.query(`create table ${table}_2pc (id int)`)
      await a.query('begin')
      await a.query(`insert into ${table}_2pc values (1)`)
      await a.query(`prepare transaction '${gid}'`)
      const before = (await b.query(`select count(*)::int as n from ${table}_2pc`)).rows[0].n
      await b.query(`commit prepared '${gid}'`)
      const after = (await a.query(`select count(*)::int as n from ${table}_2pc`)).rows[0].n
      await a.query(`drop table ${table}_2pc`)
      return before === 0 && after === 1 ? true : `before COMMIT PREPARED ${before} rows, after ${after}`
    })

    await attempt(tally, async () => {
      // Reported with the client's value among the startup messages, before any query.
      const raw = await connectRaw(url, {
        params: {
          user: 'postgres',
          database: new URL(url).pathname.slice(1) || 'postgres',
          application_name: 'runner-app',
        },
      })
      try {
        const reported = raw.parameters['application_name']
        const shown = (await raw.query('show application_name')).rows[0]?.[0]
        return reported === 'runner-app' && shown === 'runner-app'
          ? true
          : `reported at startup ${JSON.stringify(reported)}, shown ${JSON.stringify(shown)}`
      } finally {
        await raw.end()
      }
    })
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await Promise.all(clients.map((client) => endClient(client)))
    await sql.end({ timeout: 2 })
  }
  return verdictOf(tally)
}

export const backendNodeScenario: Scenario = { name: 'backend-node', run: backendNode }
