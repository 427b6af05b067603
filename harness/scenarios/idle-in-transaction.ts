// A client that holds the session and goes quiet must not block everyone: with idleInTransactionTimeoutMs set,
// the holder gets FATAL 25P03 and loses its connection, its work is rolled back, and the bystander's query runs.
import { randomUUID } from 'node:crypto'
import { connectRaw, withDeadline, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'
import { attempt, closeAll, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 200

export type Holder =
  /** BEGIN; insert; then silence (Postgres's own idle_in_transaction_session_timeout case). */
  | 'transaction'
  /** Parse/Bind/Execute(insert) + Flush with no Sync; then silence. The session is held mid-pipeline. */
  | 'pipeline'

export interface IdleInTransactionOptions {
  holder?: Holder
  /** The timeout the server was started with; waits are bounded by a multiple of it. */
  timeoutMs?: number
}

const sameSummary = (got: wire.Summary, rows: string[][]): true | string =>
  got.errors.length === 0 && got.status === 'I' && JSON.stringify(got.rows) === JSON.stringify(rows)
    ? true
    : `expected rows ${JSON.stringify(rows)} and status I, got ${JSON.stringify({ rows: got.rows, status: got.status, errors: got.errors })}`

export async function idleInTransaction(url: string, options: IdleInTransactionOptions = {}): Promise<Outcome> {
  const { holder = 'transaction', timeoutMs = IDLE_IN_TRANSACTION_TIMEOUT_MS } = options
  // Long enough for the timeout to fire on a loaded 2-core machine; short enough that a stall costs little.
  const deadlineMs = Math.max(2_000, timeoutMs * 10)
  const tally = createTally()
  const clients: RawClient[] = []
  const table = `idle_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const details: Record<string, unknown> = { holder }
  try {
    const b = await connectRaw(url, { deadlineMs })
    clients.push(b)
    const a = await connectRaw(url, { deadlineMs })
    clients.push(a)
    const created = await b.query(`create table ${table} (id int)`)
    if (created.errors.length > 0)
      throw Object.assign(new Error(created.errors[0]!.message), { code: created.errors[0]!.code })

    if (holder === 'transaction') {
      const begun = await a.query(`begin; insert into ${table} values (1)`)
      if (begun.status !== 'T') throw new Error(`holder not in a transaction: ${JSON.stringify(begun)}`)
    } else {
      await a.send(wire.parse('', `insert into ${table} values (1)`), wire.bind('', ''), wire.execute(''), wire.flush())
      await a.next('CommandComplete')
    }

    const started = Date.now()
    const bystander = attempt(tally, async () => {
      const result = sameSummary(await b.query('select 1 as one'), [['1']])
      details.bystanderMs = Date.now() - started
      return result
    })
    const holderKicked = attempt(tally, async () => {
      const error = wire.decodeError((await a.next('ErrorResponse')).body)
      details.holderError = error
      return error.severity === 'FATAL' && error.code === '25P03'
        ? true
        : `holder got ${error.severity} ${error.code} ${error.message}`
    })
    // After a stall the connections' replies are out of step with our requests: stop here.
    if ((await Promise.all([bystander, holderKicked])).includes('stalled')) return verdictOf(tally, details)
    await attempt(tally, async () => {
      await withDeadline(a.closed, deadlineMs, 'holder connection close')
      return true
    })
    await attempt(tally, async () => sameSummary(await b.query(`select count(*) from ${table}`), [['0']]))
    return verdictOf(tally, details)
  } catch (error) {
    recordFailure(tally, error)
    return verdictOf(tally, details)
  } finally {
    // On a server without the timeout the holder still blocks the bystander: drop it first so B can be ended.
    for (const c of clients.slice(1)) c.destroy()
    await closeAll(clients.map((c) => () => c.end()))
  }
}

export const idleInTransactionScenario: Scenario = {
  name: 'idle-in-transaction',
  server: { idleInTransactionTimeoutMs: IDLE_IN_TRANSACTION_TIMEOUT_MS },
  run: (url) => idleInTransaction(url),
}

export const idleInPipelineScenario: Scenario = {
  name: 'idle-in-pipeline',
  server: { idleInTransactionTimeoutMs: IDLE_IN_TRANSACTION_TIMEOUT_MS },
  run: (url) => idleInTransaction(url, { holder: 'pipeline' }),
}
