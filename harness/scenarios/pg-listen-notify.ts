// LISTEN/NOTIFY with node-postgres clients sharing the server. A listens on "orders", B on "orders" and "Audit"
// (quoted, case kept), C listens on nothing and D only sends. Every notification must reach exactly the clients
// listening on its channel, whoever sent it and however (NOTIFY, pg_notify(), at COMMIT of a transaction), and
// UNLISTEN and disconnect must stop delivery. Steps are ordered on replies: a client that answers a query after a
// NOTIFY has completed has read every notification sent to it before that answer.
import pg from 'pg'
import { endClient } from '../pg.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

interface Listener {
  name: string
  client: pg.Client
  got: string[]
}

export async function pgListenNotify(url: string, options: { queryDeadlineMs?: number } = {}): Promise<Outcome> {
  const { queryDeadlineMs = 5_000 } = options
  const tally = createTally()
  const clients: pg.Client[] = []
  const connect = async (name: string): Promise<Listener> => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    client.on('error', (error) => recordFailure(tally, error))
    await withDeadline(client.connect(), queryDeadlineMs, `connect ${name}`)
    clients.push(client)
    const listener: Listener = { name, client, got: [] }
    client.on('notification', (n) => listener.got.push(`${n.channel}:${n.payload ?? ''}`))
    return listener
  }
  const q = (l: Listener, text: string) => withDeadline(l.client.query(text), queryDeadlineMs, `${l.name}: ${text}`)
  try {
    const [a, b, c, d] = (await Promise.all(['A', 'B', 'C', 'D'].map(connect))) as [
      Listener,
      Listener,
      Listener,
      Listener,
    ]
    const everyone = [a, b, c, d]
    /** Run `send` on D, let every client answer one query, then check who got what since the last check. */
    const step = async (label: string, send: () => Promise<unknown>, expected: Record<string, string[]>) => {
      for (const l of everyone) l.got.length = 0
      await send()
      await Promise.all(everyone.map((l) => q(l, 'select 1')))
      for (const l of everyone) {
        await attempt(tally, async () => {
          const want = expected[l.name] ?? []
          const got = [...l.got].sort()
          return JSON.stringify(got) === JSON.stringify([...want].sort())
            ? true
            : `${label}: ${l.name} expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`
        })
      }
    }

    await q(a, 'LISTEN orders')
    await q(b, 'listen ORDERS; LISTEN "Audit"')
    await step('NOTIFY', () => q(d, "NOTIFY orders, 'o1'"), { A: ['orders:o1'], B: ['orders:o1'] })
    await step('pg_notify', () => q(d, "select pg_notify('Audit', 'a1')"), { B: ['Audit:a1'] })
    await step(
      'at COMMIT',
      async () => {
        await q(d, 'BEGIN')
        await q(d, "NOTIFY orders, 'o2'")
        await q(d, 'NOTIFY "Audit", \'a2\'')
        await q(d, 'COMMIT')
      },
      { A: ['orders:o2'], B: ['orders:o2', 'Audit:a2'] },
    )
    await step(
      'rolled back',
      async () => {
        await q(d, 'BEGIN')
        await q(d, "NOTIFY orders, 'never'")
        await q(d, 'ROLLBACK')
      },
      {},
    )
    // A listener's own NOTIFY reaches itself too, as in Postgres.
    await step('self', () => q(b, "NOTIFY orders, 'from B'"), { A: ['orders:from B'], B: ['orders:from B'] })
    // A stops; B still gets "orders" although A's UNLISTEN made the one session stop listening there.
    await q(a, 'UNLISTEN orders')
    await step('after UNLISTEN', () => q(c, "NOTIFY orders, 'o3'"), { B: ['orders:o3'] })
    // B goes away: nobody gets anything.
    clients.splice(clients.indexOf(b.client), 1)
    await endClient(b.client)
    everyone.splice(everyone.indexOf(b), 1)
    await step('after disconnect', () => q(d, "NOTIFY orders, 'o4'; NOTIFY \"Audit\", 'a4'"), {})
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await Promise.all(clients.map((client) => endClient(client)))
  }
  return verdictOf(tally)
}

export const pgListenNotifyScenario: Scenario = { name: 'pg-listen-notify', run: (url) => pgListenNotify(url) }
