// One test worker of the CI-shaped suite, a child process as a test runner's worker is (scripts/bench/ci.ts forks
// them): on 'go' it connects to its own database through a pool of four, runs the tests, checks every sum, and
// reports its own timings over IPC.

import pg from 'pg'
import postgres from 'postgres'
import { WrongResultError, templateOf, type DriverName } from './drivers.ts'
import { StalledError, withDeadline } from './procs.ts'

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
  | { type: 'done'; firstQueryMs: number; testsMs: number; slowestTestMs: number }
  | { type: 'failed'; verdict: Exclude<CiVerdict, 'ok'>; detail: string }

export const POOL_SIZE = 4
const USERS = 8
/** 8 users and 32 posts: 40 rows a test. */
const POSTS_PER_USER = 4
const READERS = 5
const TRANSFERS = 3
const START_BALANCE = 100
/** A step (a handful of statements) that takes this long is a stall, reported with its name. */
const STEP_DEADLINE_MS = 30_000
const CONNECT_TIMEOUT_S = 10

type Row = Record<string, unknown>
type Query = (text: string, params?: ReadonlyArray<string | number>) => Promise<Row[]>

interface Pool {
  query: Query
  /** BEGIN, fn, COMMIT on one connection of the pool. */
  transaction(fn: (query: Query) => Promise<void>): Promise<void>
  end(): Promise<void>
  /** A notice or an idle connection's error since the last call: on one database of one worker there should be none. */
  takeProblem(): Error | null
}

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
  pool.on('connect', (client) => client.on('notice', (n) => (problem ??= new WrongResultError(`unexpected notice: ${n.severity ?? ''} ${n.message}`))))
  const query: Query = async (text, params = []) => (await pool.query(text, params as Array<string | number>)).rows as Row[]
  return {
    query,
    async transaction(fn) {
      const client = await pool.connect()
      try {
        await client.query('begin')
        await fn(async (text, params = []) => (await client.query(text, params as Array<string | number>)).rows as Row[])
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

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

function expect(what: string, got: unknown, wanted: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(wanted)) throw new WrongResultError(`${what}: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(got)}`)
}

let currentStep = 'connecting'

async function step<T>(name: string, run: () => Promise<T>): Promise<T> {
  currentStep = name
  return withDeadline(run(), STEP_DEADLINE_MS, name)
}

/** Test n: empty both tables, insert 40 rows, read five users' posts at once, three transfers at once, check the sums. */
async function runTest(pool: Pool, n: number): Promise<void> {
  const t = `test ${n}`
  const users = range(USERS, 1)
  const amountOf = (user: number, post: number) => n * 100 + user * 10 + post
  await step(`${t}: empty the tables`, () => pool.query('truncate ci_posts, ci_users restart identity'))
  await step(`${t}: insert users`, () =>
    Promise.all(users.map((u) => pool.query('insert into ci_users (id, name, balance) values ($1, $2, $3)', [u, `user ${u}`, START_BALANCE]))))
  await step(`${t}: insert posts`, () =>
    Promise.all(users.flatMap((u) => range(POSTS_PER_USER).map((p) =>
      pool.query('insert into ci_posts (user_id, title, amount) values ($1, $2, $3)', [u, `post ${p} of user ${u}`, amountOf(u, p)])))))
  await step(`${t}: read five users' posts at once`, async () => {
    const readers = range(READERS, 1)
    const results = await Promise.all(readers.map((u) => pool.query('select amount from ci_posts where user_id = $1 order by amount', [u])))
    for (const [i, rows] of results.entries()) expect(`posts of user ${readers[i]}`, rows.map((r) => r.amount), range(POSTS_PER_USER).map((p) => amountOf(readers[i]!, p)))
  })
  // Every transfer locks user 1, so the three queue on its row lock; ids in order, so they cannot deadlock.
  const transfers = range(TRANSFERS).map((i) => ({ to: 2 + i, amount: i + 1 }))
  await step(`${t}: three transfers with FOR UPDATE at once`, () =>
    Promise.all(transfers.map(({ to, amount }) => pool.transaction(async (query) => {
      const locked = await query('select id, balance from ci_users where id in ($1, $2) order by id for update', [1, to])
      expect(`rows locked for a transfer to user ${to}`, locked.length, 2)
      await query('update ci_users set balance = balance - $1 where id = $2', [amount, 1])
      await query('update ci_users set balance = balance + $1 where id = $2', [amount, to])
    }))))
  await step(`${t}: check the sums`, async () => {
    const [balances, posts] = await Promise.all([
      pool.query('select sum(balance)::int as total, count(*)::int as users, sum(balance) filter (where id = 1)::int as first from ci_users'),
      pool.query('select sum(amount)::int as total, count(*)::int as posts from ci_posts'),
    ])
    const moved = transfers.reduce((sum, { amount }) => sum + amount, 0)
    expect('users: total balance, count, balance of user 1', balances[0], { total: USERS * START_BALANCE, users: USERS, first: START_BALANCE - moved })
    const postTotal = users.reduce((sum, u) => sum + range(POSTS_PER_USER).reduce((s, p) => s + amountOf(u, p), 0), 0)
    expect('posts: total amount, count', posts[0], { total: postTotal, posts: USERS * POSTS_PER_USER })
  })
  const problem = pool.takeProblem()
  if (problem) throw problem
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
  if (config.create) await step('CREATE DATABASE', () => createDatabase(config))
  const pool = (opened.pool = config.driver === 'postgres.js' ? openPostgresJs(config.url) : openNodePostgres(config.url))
  await step('first query', () => pool.query('select 1'))
  const firstQueryMs = performance.now() - go
  let slowestTestMs = 0
  for (const n of range(config.tests, 1)) {
    const started = performance.now()
    await runTest(pool, n)
    slowestTestMs = Math.max(slowestTestMs, performance.now() - started)
  }
  return { type: 'done', firstQueryMs, testsMs: performance.now() - go - firstQueryMs, slowestTestMs }
}

function failure(error: unknown): WorkerMessage {
  const verdict = error instanceof WrongResultError ? 'wrong' : error instanceof StalledError ? 'stalled' : 'error'
  const code = (error as { code?: unknown })?.code
  const message = error instanceof Error ? error.message : String(error)
  // A stall's message already names the step.
  const where = message.startsWith(currentStep) ? '' : `${currentStep}: `
  return { type: 'failed', verdict, detail: `${where}${typeof code === 'string' ? `${code} ` : ''}${message}` }
}

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())))
}

if (!process.send) throw new Error('ci-worker.ts runs as a child of scripts/bench/ci.ts (an IPC channel is needed)')
const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig
// Listening before 'loaded' goes out: the bench answers it with 'go' at once.
const go = new Promise<void>((resolve, reject) =>
  process.once('message', (message: { type?: string }) => (message.type === 'go' ? resolve() : reject(new Error(`unexpected message ${JSON.stringify(message)}`)))))
await send({ type: 'loaded' })
await go
const message = await run(config).catch(failure)
await send(message)
// After a green run the pool is closed as a test file closes it; that is not part of the suite's time.
if (message.type === 'done' && opened.pool) await withDeadline(opened.pool.end(), 5_000, 'closing the pool')
process.exit()
