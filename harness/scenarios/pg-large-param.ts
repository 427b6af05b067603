// node-postgres clients sending a 4 MB text parameter: the Bind spans many socket reads, so a server that handles
// messages as they complete lets other clients' small queries in between this client's Parse and Bind.
// The server echoes length and md5, which must match what was sent.
import { createHash, randomBytes } from 'node:crypto'
import pg from 'pg'
import { endClient } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario, type Tally } from './outcome.ts'

export interface PgLargeParamOptions {
  clients?: number
  iterations?: number
  paramBytes?: number
  queryDeadlineMs?: number
}

const same = (got: unknown, want: unknown): true | string =>
  JSON.stringify(got) === JSON.stringify(want) ? true : `expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`

async function worker(url: string, id: number, options: Required<PgLargeParamOptions>, tally: Tally): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  // An 'error' event with no listener would crash the run; one between queries is a failure the app would see.
  client.on('error', (error) => recordFailure(tally, error))
  const run = (op: () => Promise<true | string>) =>
    attempt(tally, () => withDeadline(op(), options.queryDeadlineMs, 'node-postgres query'))
  // A failed connect rejects end() too; only a connected client needs (and allows) a clean end.
  let isConnected = false
  try {
    const connected = await run(async () => {
      await client.connect()
      isConnected = true
      return true
    })
    if (connected !== 'ok') return
    for (let i = 0; i < options.iterations; i++) {
      // base64 keeps the text valid UTF-8 and distinct per client and iteration.
      const text = randomBytes(Math.ceil((options.paramBytes * 3) / 4))
        .toString('base64')
        .slice(0, options.paramBytes)
      const hash = createHash('md5').update(text).digest('hex')
      const steps = [
        async () => {
          const { rows } = await client.query('select length($1::text) as len, md5($1::text) as hash', [text])
          return same(rows, [{ len: text.length, hash }])
        },
        async () =>
          same((await client.query('select $1::int + 1 as n', [id * 1000 + i])).rows, [{ n: id * 1000 + i + 1 }]),
        async () =>
          same((await client.query('select $1::text as label, $2::int as k', [`c${id}`, i])).rows, [
            { label: `c${id}`, k: i },
          ]),
      ]
      for (const step of steps) {
        if ((await run(step)) === 'stalled') return
      }
    }
  } finally {
    if (isConnected) await endClient(client)
    else client.connection.stream.destroy()
  }
}

export async function pgLargeParam(url: string, options: PgLargeParamOptions = {}): Promise<Outcome> {
  const resolved: Required<PgLargeParamOptions> = {
    clients: options.clients ?? 4,
    iterations: options.iterations ?? 3,
    paramBytes: options.paramBytes ?? 4 * 1024 * 1024,
    queryDeadlineMs: options.queryDeadlineMs ?? 10_000,
  }
  const tally = createTally()
  await Promise.all(Array.from({ length: resolved.clients }, (_, id) => worker(url, id + 1, resolved, tally)))
  return verdictOf(tally, {
    clients: resolved.clients,
    iterations: resolved.iterations,
    paramBytes: resolved.paramBytes,
  })
}

export const pgLargeParamScenario: Scenario = { name: 'pg-large-param', run: (url) => pgLargeParam(url) }
