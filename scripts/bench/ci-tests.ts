// One test of the CI-shaped suite (scripts/bench/ci.ts), on any pool: a worker process's driver pool (ci-worker.ts)
// or one PGlite in this process (the engine alone, openInProcessRaw).

import type { PGlite } from '@electric-sql/pglite'
import { WrongResultError } from './drivers.ts'
import { withDeadline } from './procs.ts'
import { encodeBindExecute, encodePrepare, readRows, type Columns } from './wire.ts'

export const POOL_SIZE = 4
const USERS = 8
/** 8 users and 32 posts: 40 rows a test. */
const POSTS_PER_USER = 4
const READERS = 5
const TRANSFERS = 3
const START_BALANCE = 100
/** A step (a handful of statements) that takes this long is a stall, reported with its name. */
const STEP_DEADLINE_MS = 30_000

export type Row = Record<string, unknown>
export type Query = (text: string, params?: ReadonlyArray<string | number>) => Promise<Row[]>

export interface Pool {
  query: Query
  /** BEGIN, fn, COMMIT on one connection of the pool. */
  transaction(fn: (query: Query) => Promise<void>): Promise<void>
  end(): Promise<void>
  /** A notice or an idle connection's error since the last call: on one database of one worker there should be none. */
  takeProblem(): Error | null
}

export const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i)

function expect(what: string, got: unknown, wanted: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(wanted))
    throw new WrongResultError(`${what}: expected ${JSON.stringify(wanted)}, got ${JSON.stringify(got)}`)
}

let stepNow = 'connecting'

/** The step running now, or the last one (a failure names it). */
export const currentStep = (): string => stepNow

export async function step<T>(name: string, run: () => Promise<T>): Promise<T> {
  stepNow = name
  return withDeadline(run(), STEP_DEADLINE_MS, name)
}

/** Test n: empty both tables, insert 40 rows, read five users' posts at once, three transfers at once, check the sums. */
export async function runTest(pool: Pool, n: number): Promise<void> {
  const t = `test ${n}`
  const users = range(USERS, 1)
  const amountOf = (user: number, post: number) => n * 100 + user * 10 + post
  await step(`${t}: empty the tables`, () => pool.query('truncate ci_posts, ci_users restart identity'))
  await step(`${t}: insert users`, () =>
    Promise.all(
      users.map((u) =>
        pool.query('insert into ci_users (id, name, balance) values ($1, $2, $3)', [u, `user ${u}`, START_BALANCE]),
      ),
    ),
  )
  await step(`${t}: insert posts`, () =>
    Promise.all(
      users.flatMap((u) =>
        range(POSTS_PER_USER).map((p) =>
          pool.query('insert into ci_posts (user_id, title, amount) values ($1, $2, $3)', [
            u,
            `post ${p} of user ${u}`,
            amountOf(u, p),
          ]),
        ),
      ),
    ),
  )
  await step(`${t}: read five users' posts at once`, async () => {
    const readers = range(READERS, 1)
    const results = await Promise.all(
      readers.map((u) => pool.query('select amount from ci_posts where user_id = $1 order by amount', [u])),
    )
    for (const [i, rows] of results.entries())
      expect(
        `posts of user ${readers[i]}`,
        rows.map((r) => r.amount),
        range(POSTS_PER_USER).map((p) => amountOf(readers[i]!, p)),
      )
  })
  // Every transfer locks user 1, so the three queue on its row lock; ids in order, so they cannot deadlock.
  const transfers = range(TRANSFERS).map((i) => ({ to: 2 + i, amount: i + 1 }))
  await step(`${t}: three transfers with FOR UPDATE at once`, () =>
    Promise.all(
      transfers.map(({ to, amount }) =>
        pool.transaction(async (query) => {
          const locked = await query('select id, balance from ci_users where id in ($1, $2) order by id for update', [
            1,
            to,
          ])
          expect(`rows locked for a transfer to user ${to}`, locked.length, 2)
          await query('update ci_users set balance = balance - $1 where id = $2', [amount, 1])
          await query('update ci_users set balance = balance + $1 where id = $2', [amount, to])
        }),
      ),
    ),
  )
  await step(`${t}: check the sums`, async () => {
    const [balances, posts] = await Promise.all([
      pool.query(
        'select sum(balance)::int as total, count(*)::int as users, sum(balance) filter (where id = 1)::int as first from ci_users',
      ),
      pool.query('select sum(amount)::int as total, count(*)::int as posts from ci_posts'),
    ])
    const moved = transfers.reduce((sum, { amount }) => sum + amount, 0)
    expect('users: total balance, count, balance of user 1', balances[0], {
      total: USERS * START_BALANCE,
      users: USERS,
      first: START_BALANCE - moved,
    })
    const postTotal = users.reduce((sum, u) => sum + range(POSTS_PER_USER).reduce((s, p) => s + amountOf(u, p), 0), 0)
    expect('posts: total amount, count', posts[0], { total: postTotal, posts: USERS * POSTS_PER_USER })
  })
  const problem = pool.takeProblem()
  if (problem) throw problem
}

/**
 * A pool over one PGlite in this process that sends PGlite only the protocol bytes a preparing driver's server would
 * pass on: each statement parsed once under a name, then Bind/Execute/Sync. Its statements and transactions queue on
 * the one session in turn. What the engine alone spends on the tests, without db.query's parsing in JavaScript.
 */
export function openInProcessRaw(db: PGlite): Pool {
  const prepared = new Map<string, { name: string; columns: Columns | null }>()
  let turn: Promise<unknown> = Promise.resolve()
  const inTurn = <T>(run: () => Promise<T>): Promise<T> => {
    const result = turn.then(run)
    // The caller gets the failure; the next in turn runs either way.
    turn = result.then(
      () => undefined,
      () => undefined,
    )
    return result
  }
  const send = async (text: string, params: ReadonlyArray<string | number> = []): Promise<Row[]> => {
    let statement = prepared.get(text)
    if (!statement) {
      const name = `s${prepared.size + 1}`
      statement = { name, columns: readRows(await db.execProtocolRaw(encodePrepare(name, text)), null).columns }
      prepared.set(text, statement)
    }
    return readRows(await db.execProtocolRaw(encodeBindExecute(statement.name, params.map(String))), statement.columns)
      .rows
  }
  return {
    query: (text, params) => inTurn(() => send(text, params)),
    transaction: (fn) =>
      inTurn(async () => {
        await send('begin')
        try {
          await fn(send)
          await send('commit')
        } catch (error) {
          await send('rollback')
          throw error
        }
      }),
    end: async () => {},
    takeProblem: () => null,
  }
}
