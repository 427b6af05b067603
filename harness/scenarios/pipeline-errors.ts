// Errors inside pipelines, under load: six postgres.js clients (prepare: false, so each query goes as
// Parse/Describe/Flush, then Bind/Execute/Sync) each send 40 queries without waiting, every fifth of which fails
// (division by zero). Each failing query must get exactly its own error (22012), and every other query its own
// value, also the ones right after an error: the server must discard only up to that query's Sync and answer one
// ReadyForQuery per Sync, for every client.
import postgres from 'postgres'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const CLIENTS = 6
const QUERIES = 40

export async function pipelineErrors(url: string): Promise<Outcome> {
  const tally = createTally()
  const clients = Array.from({ length: CLIENTS }, () =>
    postgres(url, { max: 1, prepare: false, onnotice: () => {}, connect_timeout: 5 }),
  )
  try {
    await Promise.all(
      clients.map(async (sql, c) => {
        await withDeadline(sql`select 1`.execute(), 5_000, 'connect')
        const pending = Array.from({ length: QUERIES }, (_, i) => {
          const fails = i % 5 === 4
          const query = fails ? sql`select ${i}::int / 0 as v` : sql`select ${i}::int * ${c + 1} as v`
          return attempt(tally, async () => {
            const outcome = await withDeadline(
              query.execute().then(
                (rows) => ({ rows }),
                (error: { code?: string }) => ({ error }),
              ),
              10_000,
              `client ${c} query ${i}`,
            )
            if (fails)
              return 'error' in outcome && outcome.error.code === '22012'
                ? true
                : `client ${c} query ${i}: expected 22012, got ${JSON.stringify(outcome)}`
            return 'rows' in outcome && outcome.rows[0]?.v === i * (c + 1)
              ? true
              : `client ${c} query ${i}: ${JSON.stringify(outcome)}`
          })
        })
        await Promise.all(pending)
      }),
    )
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    // postgres.js's end() does not reject: after 2 s it destroys the sockets.
    await Promise.all(clients.map((sql) => sql.end({ timeout: 2 })))
  }
  return verdictOf(tally)
}

export const pipelineErrorsScenario: Scenario = { name: 'pipeline-errors', run: (url) => pipelineErrors(url) }
