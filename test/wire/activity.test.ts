// pg_stat_activity shows every client of the server as Postgres shows its backends: its last statement's text (which
// pg-boss matches to find its listener), its state, what it waits for and when its statement and transaction began.
// The same steps run against PostgreSQL 15 when PG_ORACLE_URL is set. A client idle in a transaction holds its
// database's one session, so here those clients are in databases of their own; on PostgreSQL they share one.
import { describe, expect, it } from 'vitest'
import type { RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import { startForTest, useDevDbs } from '../helpers/dev-db.ts'

const { connect } = useDevDbs()

/** The server's URL, and the database where a client may sit in its transaction (`name` on ours). */
type Serve = () => Promise<{ url: string; ownDatabase: (name: string) => string }>
// In memory: a new database is the spare, loaded ahead, where one on disk is a copy of the template's files.
const targets: Array<[string, Serve]> = [
  ['pglite-dev-db', async () => ({ url: (await startForTest({})).url, ownDatabase: (name) => name })],
]
const oracleUrl = process.env.PG_ORACLE_URL
if (oracleUrl)
  targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => ({ url: oracleUrl, ownDatabase: () => 'postgres' })])

const reply = async (client: RawClient): Promise<wire.Summary> => wire.summarize(await client.until('ReadyForQuery'))

/** The columns compared, for the clients `pids`, in that order. */
const ROWS = `select pid, state, query, backend_type, wait_event_type, wait_event, xact_start is not null as in_xact,
  query_start is not null as has_query_start, state_change >= query_start as changed_after_start,
  coalesce(xact_start <= query_start, true) as xact_first, octet_length(query) as bytes
  from pg_stat_activity where pid = any($1::int[]) order by array_position($1::int[], pid)`

describe.each(targets)('pg_stat_activity: %s', (_, serve) => {
  it("shows each client's last statement, its state, what it waits for and when it began", async () => {
    const { url, ownDatabase } = await serve()
    const channel = `activity_${process.pid}_${Date.now()}`
    const listener = await connect(url)
    expect((await listener.query(`LISTEN "${channel}"`)).errors).toEqual([])
    // A named statement made once, then only bound: its text is the Parse's.
    const prepared = await connect(url)
    await prepared.send(
      wire.parse('s1', 'select $1::int + 1'),
      wire.bind('', 's1', ['1']),
      wire.execute(''),
      wire.sync(),
    )
    expect((await reply(prepared)).errors).toEqual([])
    await prepared.send(wire.bind('', 's1', ['2']), wire.execute(''), wire.sync())
    expect((await reply(prepared)).rows).toEqual([['3']])
    const long = await connect(url)
    expect((await long.query(`select '${'é'.repeat(700)}'`)).errors).toEqual([])
    // The first statement in a database of its own waits for it to be made.
    const made = { deadlineMs: 30_000 }
    const inTransaction = await connect(url, { database: ownDatabase('activity_t') })
    expect((await inTransaction.query('begin', made)).status).toBe('T')
    expect((await inTransaction.query('select 1')).status).toBe('T')
    const aborted = await connect(url, { database: ownDatabase('activity_e') })
    expect((await aborted.query('begin', made)).status).toBe('T')
    expect((await aborted.query('select 1/0')).status).toBe('E')

    const reader = await connect(url)
    const clients = [listener, prepared, long, inTransaction, aborted, reader]
    const pids = `{${clients.map((client) => client.backendKey!.pid).join(',')}}`
    const seen = await reader.extended(ROWS, [pids])
    expect(seen.errors).toEqual([])
    const rows = seen.rows.map(([pid, ...rest]) => [Number(pid), ...rest])
    const [l, p, g, t, e, r] = clients.map((client) => client.backendKey!.pid)
    const idle = ['client backend', 'Client', 'ClientRead']
    expect(rows).toEqual([
      [l, 'idle', `LISTEN "${channel}"`, ...idle, 'f', 't', 't', 't', `${`LISTEN "${channel}"`.length}`],
      [p, 'idle', 'select $1::int + 1', ...idle, 'f', 't', 't', 't', '18'],
      // Cut to 1023 bytes, at the start of a character.
      [g, 'idle', `select '${'é'.repeat(507)}`, ...idle, 'f', 't', 't', 't', '1022'],
      [t, 'idle in transaction', 'select 1', ...idle, 't', 't', 't', 't', '8'],
      [e, 'idle in transaction (aborted)', 'select 1/0', ...idle, 'f', 't', 't', 't', '10'],
      [r, 'active', ROWS, 'client backend', null, null, 't', 't', 't', 't', `${Buffer.byteLength(ROWS)}`],
    ])
    // pg-boss finds its listener by the text of its LISTEN, to end it.
    const found = await reader.query(`select pid from pg_stat_activity where query = 'LISTEN "${channel}"'`)
    expect(found.rows).toEqual([[`${l}`]])
  })
})
