// DISCARD ALL / DEALLOCATE from one client must not reach another. Connection poolers and frameworks send
// DISCARD ALL when they hand a connection back; on one shared session it would deallocate every client's prepared
// statements, reset everyone's settings and end everyone's LISTENs. Here B keeps a named statement, a TimeZone and
// a LISTEN while A prepares, sets and listens too and then sends DISCARD ALL and DEALLOCATE ALL; B checks all
// three after each, and A checks that its own are gone.
import pg from 'pg'
import { endClient } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

export async function pgDiscardAll(url: string, options: { queryDeadlineMs?: number } = {}): Promise<Outcome> {
  const { queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const clients: pg.Client[] = []
  const connect = async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    client.on('error', (error) => recordFailure(tally, error))
    await withDeadline(client.connect(), queryDeadlineMs, 'connect')
    clients.push(client)
    return client
  }
  const q = <R extends pg.QueryResultRow>(client: pg.Client, query: string | pg.QueryConfig) =>
    withDeadline(client.query<R>(query), queryDeadlineMs, typeof query === 'string' ? query : query.text)
  try {
    const [a, b] = await Promise.all([connect(), connect()])
    const bNotified: string[] = []
    b.on('notification', (n) => bNotified.push(n.payload ?? ''))
    await q(b, "set timezone = 'Asia/Tokyo'; listen jobs")
    await q(b, { name: 'b_double', text: 'select $1::int * 2 as v', values: [1] })
    await q(a, "set timezone = 'America/New_York'; listen jobs")
    await q(a, { name: 'a_triple', text: 'select $1::int * 3 as v', values: [1] })

    let round = 0
    const bStillHasEverything = async (after: string) => {
      round++
      await attempt(tally, async () => {
        // node-postgres prepared b_double once; from now on it only sends Bind/Execute for it.
        const { rows } = await q<{ v: number }>(b, {
          name: 'b_double',
          text: 'select $1::int * 2 as v',
          values: [round],
        })
        return rows[0]?.v === round * 2 ? true : `after ${after}: B's statement b_double gave ${JSON.stringify(rows)}`
      })
      await attempt(tally, async () => {
        const { rows } = await q<{ tz: string }>(b, "select current_setting('TimeZone') as tz")
        return rows[0]?.tz === 'Asia/Tokyo' ? true : `after ${after}: B's TimeZone is ${rows[0]?.tz}`
      })
      await attempt(tally, async () => {
        bNotified.length = 0
        await q(a, `notify jobs, 'round ${round}'`)
        await q(b, 'select 1') // B reads every notification sent before this answer
        return bNotified.includes(`round ${round}`)
          ? true
          : `after ${after}: B got no notification (got ${JSON.stringify(bNotified)})`
      })
    }

    await q(a, 'DISCARD ALL')
    await bStillHasEverything('A: DISCARD ALL')
    await attempt(tally, async () => {
      const { rows } = await q<{ tz: string; is_default: boolean }>(
        a,
        "select setting as tz, setting = reset_val as is_default from pg_settings where name = 'TimeZone'",
      )
      return rows[0]?.is_default === true ? true : `after DISCARD ALL, A's TimeZone is ${rows[0]?.tz}, not the default`
    })
    await attempt(tally, async () => {
      // node-postgres still believes a_triple is prepared and sends only Bind/Execute, as it would to Postgres,
      // which answers 26000 after a DISCARD ALL: A's statement is really gone, under A's own name.
      const error = await q(a, { name: 'a_triple', text: 'select $1::int * 3 as v', values: [2] }).then(
        () => null,
        (e: unknown) => e as { code?: string; message?: string },
      )
      return error?.code === '26000' && error.message === 'prepared statement "a_triple" does not exist'
        ? true
        : `A after DISCARD ALL: ${JSON.stringify(error)}`
    })
    await q(a, { name: 'a_more', text: 'select $1::int as v', values: [1] })
    await q(a, 'DEALLOCATE ALL')
    await bStillHasEverything('A: DEALLOCATE ALL')
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await Promise.all(clients.map((client) => endClient(client)))
  }
  return verdictOf(tally)
}

export const pgDiscardAllScenario: Scenario = { name: 'pg-discard-all', run: (url) => pgDiscardAll(url) }
