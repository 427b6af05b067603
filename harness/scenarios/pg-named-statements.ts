// node-postgres named prepared statements: every client prepares the same names ("total", "label") for its own
// SQL, as unrelated services do, and reuses them. On one shared session the second Parse of a name fails (42P05)
// or a client binds another client's statement and gets its answer. Each value is checked.
import pg from 'pg'
import { endClient } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

export interface PgNamedStatementsOptions {
  clients?: number
  iterations?: number
  queryDeadlineMs?: number
}

export async function pgNamedStatements(url: string, options: PgNamedStatementsOptions = {}): Promise<Outcome> {
  const { clients = 6, iterations = 15, queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const connected: pg.Client[] = []
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
        client.on('error', (error) => recordFailure(tally, error))
        await withDeadline(client.connect(), queryDeadlineMs, 'connect')
        connected.push(client)
        const factor = c + 2
        const run = async <Row>(config: pg.QueryConfig) =>
          (
            await withDeadline(
              client.query<Row & pg.QueryResultRow>(config),
              queryDeadlineMs,
              `${config.name} (client ${c})`,
            )
          ).rows
        for (let i = 0; i < iterations; i++) {
          const total = await attempt(tally, async () => {
            // Same name on every client, different SQL and result shape per client.
            const rows = await run<{ v: number }>({
              name: 'total',
              text: `select $1::int * ${factor} as v`,
              values: [i],
            })
            return rows.length === 1 && rows[0]!.v === i * factor
              ? true
              : `client ${c} total(${i}): ${JSON.stringify(rows)}`
          })
          const label = await attempt(tally, async () => {
            const rows = await run<{ who: string }>({
              name: 'label',
              text: `select 'client ${c}:' || $1::text as who`,
              values: [String(i)],
            })
            return rows.length === 1 && rows[0]!.who === `client ${c}:${i}`
              ? true
              : `client ${c} label(${i}): ${JSON.stringify(rows)}`
          })
          if (total === 'stalled' || label === 'stalled') return
        }
      }),
    )
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await Promise.all(connected.map((client) => endClient(client)))
  }
  return verdictOf(tally)
}

export const pgNamedStatementsScenario: Scenario = { name: 'pg-named-statements', run: (url) => pgNamedStatements(url) }
