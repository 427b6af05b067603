// postgres.js with `prepare: false` (drizzle's shape): every query is an unnamed statement sent as
// Parse+Describe+Flush, then Bind+Execute+Sync. Several clients alternating 1- and 5-parameter queries
// expose any server that lets another client's Parse in between. Every returned row is checked.
import postgres from 'postgres'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, verdictOf, type Outcome, type Scenario, type Tally } from './outcome.ts'

export interface PostgresJsParamsOptions {
  clients?: number
  iterations?: number
  /** Bound on each query; a query past it counts as stalled and ends that client's run. */
  queryDeadlineMs?: number
}

const same = (got: unknown, want: unknown): true | string =>
  JSON.stringify(got) === JSON.stringify(want) ? true : `expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`

async function worker(url: string, id: number, iterations: number, deadlineMs: number, tally: Tally): Promise<void> {
  const sql = postgres(url, { max: 1, prepare: false, connect_timeout: 5, onnotice: () => undefined })
  const run = (op: () => Promise<true | string>) =>
    attempt(tally, () => withDeadline(op(), deadlineMs, 'postgres.js query'))
  try {
    for (let i = 0; i < iterations; i++) {
      const n = id * 1000 + i
      const steps = [
        async () => same([...(await sql.unsafe('select $1::int as x', [n]))], [{ x: n }]),
        async () =>
          same(
            [
              ...(await sql.unsafe('select $1::int a, $2::int b, $3::int c, $4::int d, $5::int e', [
                n,
                n + 1,
                n + 2,
                n + 3,
                n + 4,
              ])),
            ],
            [{ a: n, b: n + 1, c: n + 2, d: n + 3, e: n + 4 }],
          ),
        async () =>
          same([...(await sql.unsafe('select $1::text as label', [`w${id}-${i}`]))], [{ label: `w${id}-${i}` }]),
      ]
      for (const step of steps) {
        if ((await run(step)) === 'stalled') return
      }
    }
  } finally {
    // A stalled connection would make end() wait for its query; give it a second, then postgres.js destroys it.
    await sql.end({ timeout: 1 })
  }
}

export async function postgresJsParams(url: string, options: PostgresJsParamsOptions = {}): Promise<Outcome> {
  const { clients = 6, iterations = 20, queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  await Promise.all(Array.from({ length: clients }, (_, id) => worker(url, id + 1, iterations, queryDeadlineMs, tally)))
  return verdictOf(tally, { clients, iterations })
}

export const postgresJsParamsScenario: Scenario = { name: 'postgres-js-params', run: (url) => postgresJsParams(url) }
