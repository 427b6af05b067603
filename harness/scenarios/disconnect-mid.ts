// Clients that vanish while holding the session: A after an insert executed with no Sync, A2 inside BEGIN after an
// insert, A3 after Parse/Bind. Postgres aborts the transaction of a client that disconnects, so after each one the
// bystander sees an empty table, outside any transaction, and its own unnamed statement works.
import { randomUUID } from 'node:crypto'
import { BackendError, connectRaw, withDeadline, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'
import { attempt, closeAll, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const DEADLINE_MS = 3_000

function expectRows(summary: wire.Summary, fields: string[], rows: string[][]): true | string {
  if (summary.errors[0]) throw new BackendError(summary.errors[0])
  const got = { fields: summary.fields, rows: summary.rows, status: summary.status }
  const want = { fields, rows, status: 'I' }
  return JSON.stringify(got) === JSON.stringify(want)
    ? true
    : `expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`
}

export async function disconnectMid(url: string): Promise<Outcome> {
  const tally = createTally()
  const clients: RawClient[] = []
  const table = `disconnect_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const connect = async () => {
    const client = await connectRaw(url, { deadlineMs: DEADLINE_MS })
    clients.push(client)
    return client
  }
  /** The holder sets itself up, then drops its socket without Terminate; the bystander checks the aftermath. */
  const vanishing = async (who: string, hold: (client: RawClient) => Promise<void>, b: RawClient) => {
    const client = await connect()
    await hold(client)
    client.destroy()
    await withDeadline(client.closed, DEADLINE_MS, `${who} socket close`)
    return attempt(tally, async () => {
      const rows = expectRows(await b.query(`select id from ${table} order by id`), ['id'], [])
      return rows === true ? true : `after ${who} vanished: ${rows}`
    })
  }
  try {
    const b = await connect()
    const created = await b.query(`create table ${table} (id int)`)
    if (created.errors[0]) throw new BackendError(created.errors[0])

    const steps = [
      await vanishing(
        'A (insert executed, no Sync)',
        async (a) => {
          await a.send(
            wire.parse('', `insert into ${table} values (1)`),
            wire.bind('', ''),
            wire.execute(''),
            wire.flush(),
          )
          await a.next('CommandComplete')
        },
        b,
      ),
      await vanishing(
        'A2 (BEGIN; insert)',
        async (a2) => {
          const begun = await a2.query(`begin; insert into ${table} values (2)`)
          if (begun.status !== 'T') throw new Error(`A2 not in a transaction: ${JSON.stringify(begun)}`)
        },
        b,
      ),
      await vanishing(
        'A3 (Parse/Bind, no Sync)',
        async (a3) => {
          await a3.send(wire.parse('', 'select 3 as three'), wire.bind('', ''), wire.flush())
          await a3.next('BindComplete')
        },
        b,
      ),
    ]
    if (!steps.includes('stalled'))
      await attempt(tally, async () => expectRows(await b.extended('select $1::int as v', ['7']), ['v'], [['7']]))
    return verdictOf(tally)
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally)
  } finally {
    await closeAll(clients.map((c) => () => c.end()))
  }
}

export const disconnectMidScenario: Scenario = { name: 'disconnect-mid', run: disconnectMid }
