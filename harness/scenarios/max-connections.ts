// Past maxConnections a client must get a Postgres reply it understands: ErrorResponse FATAL 53300
// "sorry, too many clients already" after its startup packet, then the close. Admitted clients keep working.
import { BackendError, connectRaw, withDeadline, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'
import { attempt, closeAll, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

export const MAX_CONNECTIONS = 2
const DEADLINE_MS = 3_000

export async function maxConnections(url: string, options: { limit?: number } = {}): Promise<Outcome> {
  const { limit = MAX_CONNECTIONS } = options
  const tally = createTally()
  const clients: RawClient[] = []
  const details: Record<string, unknown> = {}
  try {
    for (let i = 0; i < limit; i++) clients.push(await connectRaw(url, { deadlineMs: DEADLINE_MS }))

    const extra = await connectRaw(url, { startup: false, deadlineMs: DEADLINE_MS })
    clients.push(extra)
    await attempt(tally, async () => {
      try {
        await extra.send(wire.startup({ user: 'postgres', database: 'postgres' }))
        const error = wire.decodeError((await extra.next('ErrorResponse')).body)
        details.refusal = error
        const isExpected =
          error.severity === 'FATAL' && error.code === '53300' && error.message === 'sorry, too many clients already'
        return isExpected ? true : `refused with ${error.severity} ${error.code} ${error.message}`
      } finally {
        const received = extra.received()
        details.received = { bytes: received.length, text: received.subarray(0, 60).toString('latin1') }
      }
    })
    await attempt(tally, async () => {
      await withDeadline(extra.closed, DEADLINE_MS, 'refused connection close')
      return true
    })
    for (const [i, client] of clients.slice(0, limit).entries()) {
      await attempt(tally, async () => {
        const result = await client.query(`select ${i} as i`)
        if (result.errors[0]) throw new BackendError(result.errors[0])
        return JSON.stringify(result.rows) === JSON.stringify([[String(i)]])
          ? true
          : `admitted client ${i} got ${JSON.stringify(result.rows)}`
      })
    }
    return verdictOf(tally, details)
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally, details)
  } finally {
    await closeAll(clients.map((c) => () => c.end()))
  }
}

export const maxConnectionsScenario: Scenario = {
  name: 'max-connections',
  server: { maxConnections: MAX_CONNECTIONS },
  run: (url) => maxConnections(url),
}
