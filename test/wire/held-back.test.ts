// A client owes itself no reply until it sends Sync or Flush: messages it sent without either wait on the server's
// side, and the session stays free for others, as on PostgreSQL, where they would occupy only that client's backend.
// The same steps run against real PostgreSQL when PG_ORACLE_URL is set.
import { describe, expect, it } from 'vitest'
import { withDeadline } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import { useDevDbs } from '../helpers/dev-db.ts'

const { start, connect } = useDevDbs()

/** Far below the queue timeout and the idle-transaction wait: another client's query is not held up. */
const PROMPT_MS = 2_000

const targets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
const oracleUrl = process.env.PG_ORACLE_URL
if (oracleUrl) targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => oracleUrl])

describe.each(targets)('messages sent without Sync or Flush: %s', (_, serve) => {
  it("Parse and Bind alone hold nobody up; the client's Execute and Sync then run them", async () => {
    const url = await serve()
    const [stalled, other] = await Promise.all([connect(url), connect(url)])
    await stalled.send(wire.parse('', "select 'A-stalled' as who"), wire.bind('', ''))

    await other.send(wire.parse('', 'select $1::int as n'), wire.bind('', '', ['7']), wire.execute(''), wire.sync())
    const answer = wire.summarize(
      await withDeadline(other.until('ReadyForQuery'), PROMPT_MS, "the other client's query"),
    )
    expect(answer).toMatchObject({ rows: [['7']], errors: [], status: 'I' })

    await stalled.send(wire.execute(''), wire.sync())
    expect(wire.summarize(await stalled.until('ReadyForQuery'))).toMatchObject({
      rows: [['A-stalled']],
      errors: [],
      status: 'I',
    })
  })

  it('an error in held-back messages is answered at their Sync, and only to their client', async () => {
    const url = await serve()
    const [stalled, other] = await Promise.all([connect(url), connect(url)])
    await stalled.send(wire.parse('', 'select * from no_such_table_held_back'))
    expect((await other.query('select 1')).rows).toEqual([['1']])
    await stalled.send(wire.bind('', ''), wire.execute(''), wire.sync())
    const reply = wire.summarize(await stalled.until('ReadyForQuery'))
    expect([reply.errors.map((e) => e.code), reply.status]).toEqual([['42P01'], 'I'])
  })
})
