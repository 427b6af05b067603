// Session settings stay with the client that made them. Each node-postgres client has its own search_path,
// TimeZone and DateStyle, some from SET and some from the startup packet (`options=-c ...`), as services, psql
// sessions and migration tools each do; every client checks after every round that it still sees its own values
// and nobody else's, while the others keep changing theirs.
import pg from 'pg'
import { endClient } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

export interface PgSessionSettingsOptions {
  clients?: number
  rounds?: number
  queryDeadlineMs?: number
}

const ZONES = ['UTC', 'Asia/Tokyo', 'America/New_York', 'Europe/Berlin', 'Australia/Sydney', 'America/Sao_Paulo']

interface Expected {
  search_path: string
  TimeZone: string
  DateStyle: string
}

export async function pgSessionSettings(url: string, options: PgSessionSettingsOptions = {}): Promise<Outcome> {
  const { clients = 6, rounds = 10, queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const connected: pg.Client[] = []
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        // Even clients ask for theirs at startup; odd ones SET it after connecting.
        const schema = `s${c}, public`
        const zone = ZONES[c % ZONES.length]!
        const atStartup = c % 2 === 0
        const client = new pg.Client({
          connectionString: url,
          connectionTimeoutMillis: 5_000,
          ...(atStartup ? { options: `-c search_path=s${c},\\ public -c TimeZone=${zone}` } : {}),
        })
        client.on('error', (error) => recordFailure(tally, error))
        await withDeadline(client.connect(), queryDeadlineMs, 'connect')
        connected.push(client)
        const query = async <Row extends pg.QueryResultRow>(text: string) =>
          (await withDeadline(client.query<Row>(text), queryDeadlineMs, `${text} (client ${c})`)).rows
        if (!atStartup) await query(`set search_path = s${c}, public; set timezone = '${zone}'`)
        const expected: Expected = { search_path: schema, TimeZone: zone, DateStyle: 'ISO, MDY' }
        for (let round = 0; round < rounds; round++) {
          // Every other round, this client changes its DateStyle: the others must not see it.
          if (round % 2 === 1) {
            expected.DateStyle = c % 2 === 0 && round % 4 === 1 ? 'SQL, DMY' : 'ISO, MDY'
            await query(`set datestyle = '${expected.DateStyle}'`)
          }
          const outcome = await attempt(tally, async () => {
            const rows = await query<{ search_path: string; tz: string; ds: string }>(
              `select current_setting('search_path') as search_path, current_setting('TimeZone') as tz, current_setting('DateStyle') as ds`,
            )
            const got = rows[0]
            if (
              got?.search_path === expected.search_path &&
              got.tz === expected.TimeZone &&
              got.ds === expected.DateStyle
            )
              return true
            return `client ${c} round ${round}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(got)}`
          })
          if (outcome === 'stalled') return
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

export const pgSessionSettingsScenario: Scenario = { name: 'pg-session-settings', run: (url) => pgSessionSettings(url) }
