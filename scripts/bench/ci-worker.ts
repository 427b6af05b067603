// One test worker of the CI-shaped suite, a child process as a test runner's worker is (scripts/bench/ci.ts forks
// them): on 'go' it connects to its own database through a pool of four, runs the tests, checks every sum, and
// reports its own timings over IPC.

import pg from 'pg'
import postgres from 'postgres'
import { WrongResultError, templateOf, type DriverName } from './drivers.ts'
import { StalledError, withDeadline } from './procs.ts'
import { POOL_SIZE, currentStep, range, runTest, step, type Pool, type Query, type Row } from './ci-tests.ts'

export interface WorkerConfig {
  /** This worker's database. */
  url: string
  /** PostgreSQL's first run: `CREATE DATABASE database TEMPLATE template` through adminUrl before connecting. */
  create?: { adminUrl: string; database: string; template: string }
  driver: DriverName
  tests: number
}

export type CiVerdict = 'ok' | 'wrong' | 'error' | 'stalled'

export type WorkerMessage =
  | { type: 'loaded' }
  /** firstQueryMs: from 'go' to its first query answered (database made, if made, and connected). */
  | { type: 'done'; firstQueryMs: number; testsMs: number; slowestTestMs: number; cpuMs: number }
  | { type: 'failed'; verdict: Exclude<CiVerdict, 'ok'>; detail: string }

const CONNECT_TIMEOUT_S = 10

function openPostgresJs(url: string): Pool {
  let problem: Error | null = null
  const sql = postgres(url, {
    max: POOL_SIZE,
    prepare: true,
    idle_timeout: 0,
    connect_timeout: CONNECT_TIMEOUT_S,
    fetch_types: false,
    onnotice: (n) => (problem ??= new WrongResultError(`unexpected notice: ${n.severity} ${n.message}`)),
  })
  return {
    query: (text, params = []) => sql(templateOf(text), ...params) as unknown as Promise<Row[]>,
    async transaction(fn) {
      await sql.begin((tx) => fn((text, params = []) => tx(templateOf(text), ...params) as unknown as Promise<Row[]>))
    },
    end: () => sql.end({ timeout: 1 }),
    takeProblem() {
      const taken = problem
      problem = null
      return taken
    },
  }
}

function openNodePostgres(url: string): Pool {
  let problem: Error | null = null
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: CONNECT_TIMEOUT_S * 1000 })
  pool.on('error', (error) => (problem ??= error))
  pool.on('connect', (client) =>
    client.on(
      'notice',
      (n) => (problem ??= new WrongResultError(`unexpected notice: ${n.severity ?? ''} ${n.message}`)),
    ),
  )
  const query: Query = async (text, params = []) =>
    (await pool.query(text, params as Array<string | number>)).rows as Row[]
  return {
    query,
    async transaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('begin')
        await fn(
          async (text, params = []) => (await client.query(text, params as Array<string | number>)).rows as Row[],
        )
        await client.query('commit')
        client.release()
      } catch (error) {
        // The connection may be mid-transaction: the pool drops it rather than handing it on.
        client.release(error as Error)
        throw error
      }
    },
    end: () => pool.end(),
    takeProblem() {
      const taken = problem
      problem = null
      return taken
    },
  }
}

async function createDatabase(config: WorkerConfig): Promise<void> {
  const { adminUrl, database, template } = config.create!
  const text = `create database "${database}" template "${template}"`
  if (config.driver === 'postgres.js') {
    const sql = postgres(adminUrl, { max: 1, connect_timeout: CONNECT_TIMEOUT_S, fetch_types: false })
    await sql.unsafe(text)
    await sql.end({ timeout: 1 })
  } else {
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_S * 1000 })
    await client.connect()
    await client.query(text)
    await client.end()
  }
}

/** Open once the first run starts, so that a green run can close it after its report. */
const opened: { pool: Pool | null } = { pool: null }

async function run(config: WorkerConfig): Promise<WorkerMessage> {
  const go = performance.now()
  const cpu = process.cpuUsage()
  if (config.create) await step('CREATE DATABASE', () => createDatabase(config))
  const pool = (opened.pool =
    config.driver === 'postgres.js' ? openPostgresJs(config.url) : openNodePostgres(config.url))
  await step('first query', () => pool.query('select 1'))
  const firstQueryMs = performance.now() - go
  let slowestTestMs = 0
  for (const n of range(config.tests, 1)) {
    const started = performance.now()
    await runTest(pool, n)
    slowestTestMs = Math.max(slowestTestMs, performance.now() - started)
  }
  const { user, system } = process.cpuUsage(cpu)
  return {
    type: 'done',
    firstQueryMs,
    testsMs: performance.now() - go - firstQueryMs,
    slowestTestMs,
    cpuMs: (user + system) / 1000,
  }
}

function failure(error: unknown): WorkerMessage {
  const verdict = error instanceof WrongResultError ? 'wrong' : error instanceof StalledError ? 'stalled' : 'error'
  const code = (error as { code?: unknown })?.code
  const message = error instanceof Error ? error.message : String(error)
  // A stall's message already names the step.
  const step = currentStep()
  const where = message.startsWith(step) ? '' : `${step}: `
  return { type: 'failed', verdict, detail: `${where}${typeof code === 'string' ? `${code} ` : ''}${message}` }
}

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve, reject) =>
    process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())),
  )
}

if (!process.send) throw new Error('ci-worker.ts runs as a child of scripts/bench/ci.ts (an IPC channel is needed)')
const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig
// Listening before 'loaded' goes out: the bench answers it with 'go' at once.
const go = new Promise<void>((resolve, reject) =>
  process.once('message', (message: { type?: string }) =>
    message.type === 'go' ? resolve() : reject(new Error(`unexpected message ${JSON.stringify(message)}`)),
  ),
)
await send({ type: 'loaded' })
await go
const message = await run(config).catch(failure)
await send(message)
// After a green run the pool is closed as a test file closes it; that is not part of the suite's time.
if (message.type === 'done' && opened.pool) await withDeadline(opened.pool.end(), 5_000, 'closing the pool')
process.exit()
