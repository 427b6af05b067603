// pg_terminate_backend answers its caller before the client it ends is told (FATAL 57P01) and closed, as PostgreSQL
// does (in 26 of 30 rounds here; the signaled backend races the caller's answer there). A pool relies on it: kysely's
// "kill session" releases the connection it ended once the control query answers, and node-postgres' pool listens for
// a connection's error only while it is idle, so an end that comes first is an unhandled 'error' event.
import pg from 'pg'
import { describe, expect, it, onTestFinished } from 'vitest'
import { withDeadline } from '../../harness/raw-client.ts'
import { startForTest } from '../helpers/dev-db.ts'

/** What a pooled connection, ended from a control connection as kysely ends it, sees, in order. */
async function killSession(
  url: string,
  how: 'running, pid in the SQL' | 'idle, pid as a parameter',
): Promise<string[]> {
  const events: string[] = []
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  pool.on('error', (error) => events.push(`pool error: ${error.message}`))
  onTestFinished(() => pool.end())
  const victim = await pool.connect()
  const pid = Number((await victim.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid)
  const ended = new Promise<void>((resolve) => victim.once('end', resolve)).then(() => events.push('end'))
  // Stands in for the crash: pg-pool leaves a checked-out connection with no 'error' listener.
  const checkedOut = (error: Error) => events.push(`error while checked out: ${error.message}`)
  victim.on('error', checkedOut)
  const control = new pg.Client({ connectionString: url })
  await control.connect()
  onTestFinished(() => control.end())
  let query: Promise<unknown> = Promise.resolve()
  if (how.startsWith('running')) {
    query = victim.query('select pg_sleep(10)').then(
      () => events.push('query ended'),
      (error: { code?: string }) => events.push(`query: ${error.code}`),
    )
    await control.query(`select pg_terminate_backend(${pid})`)
  } else {
    await control.query('select pg_terminate_backend($1)', [pid])
  }
  events.push('answer')
  victim.off('error', checkedOut)
  victim.release()
  await withDeadline(Promise.all([query, ended]), 5_000, 'the ended connection closes')
  return events
}

describe('pg_terminate_backend', () => {
  it.each(['running, pid in the SQL', 'idle, pid as a parameter'] as const)(
    'answers its caller first; the client it ends (%s) is told and closed after, so a pool can release it first',
    async (how) => {
      const { url } = await startForTest({})
      // The pool reports the FATAL of an idle connection, or the end of one whose query it failed.
      const expected = how.startsWith('running')
        ? ['answer', 'query: 57P01', 'pool error: Connection terminated unexpectedly', 'end']
        : ['answer', 'pool error: terminating connection due to administrator command', 'end']
      for (let round = 0; round < 3; round++) expect(await killSession(url, how), `round ${round}`).toEqual(expected)
    },
  )
})
