// Deterministic interleaving with raw frames: A parks mid-pipeline (Parse + Flush) holding the unnamed statement,
// B sends a whole Parse/Bind/Describe/Execute/Sync, then A finishes. Each must get its own column and value.
// `details.order` is when each finished: real Postgres may finish B first, and so does ours (A holds only a prepared
// statement, so it gives the session up while B waits); a server that holds the session for A finishes A first.
import { connectRaw, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'
import { closeAll, createTally, recordFailure, recordWrong, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const DEADLINE_MS = 3_000

function check(who: string, summary: wire.Summary, column: string, value: string): true | string {
  if (summary.errors.length > 0) {
    const e = summary.errors[0]!
    throw Object.assign(new Error(`${who}: ${e.message}`), { code: e.code })
  }
  const got = { fields: summary.fields, rows: summary.rows, status: summary.status }
  const want = { fields: [column], rows: [[value]], status: 'I' }
  return JSON.stringify(got) === JSON.stringify(want)
    ? true
    : `${who} expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`
}

export async function interleaveRaw(url: string): Promise<Outcome> {
  const tally = createTally()
  const clients: RawClient[] = []
  const order: string[] = []
  try {
    const a = await connectRaw(url, { deadlineMs: DEADLINE_MS })
    clients.push(a)
    const b = await connectRaw(url, { deadlineMs: DEADLINE_MS })
    clients.push(b)

    await a.send(wire.parse('', 'select 1 as a'), wire.flush())
    await a.next('ParseComplete')

    // B's wait starts before A resumes.
    await b.send(
      wire.parse('', 'select 2 as b'),
      wire.bind('', ''),
      wire.describe('P', ''),
      wire.execute(''),
      wire.sync(),
    )
    const bDone = b.until('ReadyForQuery').then((m) => (order.push('B'), wire.summarize(m)))
    await a.send(wire.bind('', ''), wire.describe('P', ''), wire.execute(''), wire.sync())
    const aDone = a.until('ReadyForQuery').then((m) => (order.push('A'), wire.summarize(m)))

    const results = await Promise.allSettled([aDone, bDone])
    for (const [who, result, column, value] of [
      ['A', results[0], 'a', '1'],
      ['B', results[1], 'b', '2'],
    ] as const) {
      tally.queries++
      try {
        if (result.status === 'rejected') throw result.reason
        const verdict = check(who, result.value, column, value)
        if (verdict === true) tally.ok++
        else recordWrong(tally, verdict)
      } catch (error) {
        recordFailure(tally, error)
      }
    }
    return verdictOf(tally, { order })
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally, { order })
  } finally {
    await closeAll(clients.map((c) => () => c.end()))
  }
}

export const interleaveRawScenario: Scenario = { name: 'interleave-raw', run: interleaveRaw }
