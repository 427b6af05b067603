// DISCARD ALL, DISCARD TEMP, DEALLOCATE ALL and CLOSE ALL wherever a client sends them (a prepared one's Execute, as Npgsql and
// pgjdbc send a pool reset; one statement among several in a Query; a whole Query led by a comment) act on that
// client alone: another client's temporary table, cursor WITH HOLD and SQL PREPARE survive, as another backend's do
// on PostgreSQL; where PostgreSQL refuses (DISCARD ALL in a transaction block or a pipeline), the client gets its
// error. Each scenario runs against PostgreSQL 15 too when PG_ORACLE_URL is set (`.ci/run` sets it). (The lone
// simple-Query DISCARD ALL: harness/scenarios/pg-discard-all.ts in concurrency-*.test.ts.)
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import type { RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect } = useDevDbs()
const oracleUrl = process.env.PG_ORACLE_URL
/** The version PGlite is, whose words for a statement refused in a pipeline differ from 15's. */
const oracle18Url = process.env.PG_ORACLE_18_URL

/** A client's state that a backend keeps for it alone; both clients make it under the same names. */
async function makeState(client: RawClient): Promise<void> {
  for (const sql of [
    'CREATE TEMP TABLE t AS SELECT 1 AS x',
    'DECLARE c CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g',
    'PREPARE p AS SELECT 7',
    "SET work_mem = '3333kB'",
  ]) {
    expect((await client.query(sql)).errors, sql).toEqual([])
  }
}

/** What is left of makeState's state: the value each piece gives, or the SQLSTATE of its error. */
async function stateOf(client: RawClient): Promise<Record<string, string>> {
  const value = (reply: wire.Summary): string => reply.errors[0]?.code ?? String(reply.rows[0]?.[0])
  return {
    temp: value(await client.query('SELECT x FROM t')),
    cursor: value(await client.query('FETCH 1 FROM c')),
    prepared: value(await client.query('EXECUTE p')),
    workMem: value(await client.query('SHOW work_mem')),
  }
}

const KEPT = { temp: '1', cursor: '1', prepared: '7', workMem: '3333kB' }
/** After DISCARD ALL. */
const DISCARDED = { temp: '42P01', cursor: '34000', prepared: '26000', workMem: '4MB' }

/** The messages `how` sends `sql` as, with the replies up to each ReadyForQuery, summarized. */
async function send(client: RawClient, how: Send, sql: string): Promise<wire.Summary> {
  if (how === 'extended') {
    await client.send(wire.parse('', sql), wire.bind('', ''), wire.execute(''), wire.sync())
    return wire.summarize(await client.until('ReadyForQuery'))
  }
  return client.query(how === 'after select' ? `select 1; ${sql}` : sql)
}

type Send = 'extended' | 'after select' | 'query'

interface Outcome {
  /** The discarding client's reply. */
  reply: { commands: string[]; errors: string[]; status: string | undefined }
  own: Record<string, string>
  other: Record<string, string>
}

/** Client A sends `sql` as `how` says while client B has the same state; what A got, and what is left of each. */
async function discardBeside(url: string, how: Send, sql: string, before: string[] = []): Promise<Outcome> {
  const a = await connect(url)
  const b = await connect(url)
  await makeState(b)
  await makeState(a)
  for (const statement of before) expect((await a.query(statement)).errors, statement).toEqual([])
  const reply = await send(a, how, sql)
  if (reply.status === 'T' || reply.status === 'E') await a.query('ROLLBACK')
  return {
    reply: {
      commands: reply.commands,
      errors: reply.errors.map((e) => `${e.code} ${e.message}`),
      status: reply.status,
    },
    other: await stateOf(b),
    own: await stateOf(a),
  }
}

/** Every scenario: [title, how it is sent, SQL, statements before it, what must come of it]. */
const scenarios: Array<[string, Send, string, string[], Outcome]> = [
  [
    'DISCARD ALL by Parse/Bind/Execute/Sync (Npgsql, pgjdbc): the sender is reset, the other keeps its table, cursor, PREPARE, settings',
    'extended',
    'DISCARD ALL',
    [],
    { reply: { commands: ['DISCARD ALL'], errors: [], status: 'I' }, own: DISCARDED, other: KEPT },
  ],
  [
    'DISCARD ALL led by a comment, as a simple Query: the same',
    'query',
    '/* pool reset */ DISCARD ALL;;',
    [],
    { reply: { commands: ['DISCARD ALL'], errors: [], status: 'I' }, own: DISCARDED, other: KEPT },
  ],
  [
    "DISCARD ALL after another statement in one Query: 25001 as PostgreSQL's, nothing discarded",
    'after select',
    'DISCARD ALL',
    [],
    {
      reply: {
        commands: ['SELECT 1'],
        errors: ['25001 DISCARD ALL cannot run inside a transaction block'],
        status: 'I',
      },
      own: KEPT,
      other: KEPT,
    },
  ],
  [
    "DISCARD ALL by Parse/Bind/Execute inside BEGIN: 25001 as PostgreSQL's, nothing discarded",
    'extended',
    'DISCARD ALL',
    ['BEGIN'],
    {
      reply: { commands: [], errors: ['25001 DISCARD ALL cannot run inside a transaction block'], status: 'E' },
      own: KEPT,
      other: KEPT,
    },
  ],
  [
    "DISCARD TEMP by Parse/Bind/Execute: the sender's temporary table only",
    'extended',
    'DISCARD TEMP',
    [],
    { reply: { commands: ['DISCARD TEMP'], errors: [], status: 'I' }, own: { ...KEPT, temp: '42P01' }, other: KEPT },
  ],
  [
    "DISCARD TEMP after another statement in one Query: the sender's temporary table only",
    'after select',
    'DISCARD TEMPORARY',
    [],
    {
      reply: { commands: ['SELECT 1', 'DISCARD TEMP'], errors: [], status: 'I' },
      own: { ...KEPT, temp: '42P01' },
      other: KEPT,
    },
  ],
  [
    "DEALLOCATE ALL by Parse/Bind/Execute: the sender's statements only",
    'extended',
    'DEALLOCATE ALL',
    [],
    {
      reply: { commands: ['DEALLOCATE ALL'], errors: [], status: 'I' },
      own: { ...KEPT, prepared: '26000' },
      other: KEPT,
    },
  ],
  [
    "DEALLOCATE ALL after another statement in one Query: the sender's statements only",
    'after select',
    'DEALLOCATE ALL',
    [],
    {
      reply: { commands: ['SELECT 1', 'DEALLOCATE ALL'], errors: [], status: 'I' },
      own: { ...KEPT, prepared: '26000' },
      other: KEPT,
    },
  ],
  [
    "CLOSE ALL as a simple Query: the sender's cursors only",
    'query',
    'CLOSE ALL',
    [],
    {
      reply: { commands: ['CLOSE CURSOR ALL'], errors: [], status: 'I' },
      own: { ...KEPT, cursor: '34000' },
      other: KEPT,
    },
  ],
  [
    "asyncpg's pool reset, CLOSE ALL among other statements: the sender's cursors and settings only",
    'query',
    'SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;',
    [],
    {
      reply: { commands: ['SELECT 1', 'CLOSE CURSOR ALL', 'UNLISTEN', 'RESET'], errors: [], status: 'I' },
      own: { ...KEPT, cursor: '34000', workMem: '4MB' },
      other: KEPT,
    },
  ],
]

describe('DISCARD sent other than alone as a simple Query acts on its sender only', () => {
  it.each(scenarios)('%s', async (_, how, sql, before, expected) => {
    const dev = await start()
    expect(await discardBeside(dev.url, how, sql, before)).toEqual(expected)
  })

  it.runIf(oracleUrl).each(scenarios)('PostgreSQL 15 (PG_ORACLE_URL): %s', async (_, how, sql, before, expected) => {
    expect(await discardBeside(oracleUrl!, how, sql, before)).toEqual(expected)
  })
})

/** A pipeline that ran `first`, then DISCARD ALL (`how`: prepared, or a Query), then another statement, one Sync. */
async function discardInPipeline(
  url: string,
  first: string,
  how: 'prepared' | 'query',
): Promise<{ errors: string[]; commands: string[]; rows: unknown[]; status: string | undefined; after: unknown[] }> {
  const client = await connect(url)
  const extended = (sql: string) => [wire.parse('', sql), wire.bind('', ''), wire.execute('')]
  await client.send(
    ...extended(first),
    ...(how === 'prepared' ? extended('DISCARD ALL') : [wire.query('DISCARD ALL')]),
    ...extended('select 2'),
    wire.sync(),
  )
  const replies = await client.until('ReadyForQuery')
  // A Query ends with its own ReadyForQuery; the rest of the pipeline then runs up to its Sync.
  const all = how === 'query' ? [...replies, ...(await client.until('ReadyForQuery'))] : replies
  const reply = wire.summarize(all)
  const status = wire.summarize(replies).status
  if (status !== 'I') await client.query('rollback')
  return {
    errors: reply.errors.map((e) => `${e.code} ${e.message}`),
    commands: reply.commands,
    rows: reply.rows,
    status,
    after: (await client.query('select 3')).rows,
  }
}

describe('DISCARD ALL after another statement of its pipeline', () => {
  const refused = ['25001 DISCARD ALL cannot run inside a transaction block']
  const cases: Array<[string, 'prepared' | 'query', Awaited<ReturnType<typeof discardInPipeline>>]> = [
    ['select 1', 'prepared', { errors: refused, commands: ['SELECT 1'], rows: [['1']], status: 'I', after: [['3']] }],
    ['begin', 'prepared', { errors: refused, commands: ['BEGIN'], rows: [], status: 'E', after: [['3']] }],
    [
      'select 1',
      'query',
      { errors: refused, commands: ['SELECT 1', 'SELECT 1'], rows: [['1'], ['2']], status: 'I', after: [['3']] },
    ],
    [
      'begin',
      'query',
      {
        errors: [...refused, '25P02 current transaction is aborted, commands ignored until end of transaction block'],
        commands: ['BEGIN'],
        rows: [],
        status: 'E',
        after: [['3']],
      },
    ],
  ]

  it.each(cases)(
    "after %s, %s, is refused with 25001 as PostgreSQL 18's; a block it was in fails",
    async (first, how, expected) => {
      const dev = await start()
      expect(await discardInPipeline(dev.url, first, how)).toEqual(expected)
    },
  )

  it.runIf(oracle18Url).each(cases)(
    'PostgreSQL 18 (PG_ORACLE_18_URL): after %s, %s, the same',
    async (first, how, expected) => {
      expect(await discardInPipeline(oracle18Url!, first, how)).toEqual(expected)
    },
  )
})

/**
 * CLOSE ALL and DEALLOCATE ALL stood in for, where the Query fails before them, makes names after them, or waits for an
 * advisory lock first: what the client holds afterwards, and what another client can see of it once it left.
 */
async function standInEdges(url: string): Promise<Record<string, string>> {
  const value = (reply: wire.Summary): string => reply.errors[0]?.code ?? String(reply.rows[0]?.[0])
  const a = await connect(url)
  const b = await connect(url)
  const out: Record<string, string> = {}
  expect((await a.query('DECLARE c CURSOR WITH HOLD FOR SELECT 1')).errors).toEqual([])
  out.failedBefore = value(await a.query('SELECT 1/0; CLOSE ALL'))
  out.keptAfterFailure = value(await a.query('FETCH c'))
  expect((await a.query('CLOSE ALL; DECLARE c2 CURSOR WITH HOLD FOR SELECT 2')).errors).toEqual([])
  out.declaredAfter = value(await a.query('FETCH c2'))
  out.closedBefore = value(await a.query('FETCH c'))
  expect((await a.query('SELECT 1; DEALLOCATE ALL; PREPARE left_behind AS SELECT 3')).errors).toEqual([])
  out.preparedAfter = value(await a.query('EXECUTE left_behind'))
  await a.end()
  out.leftBehind = value(await b.query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '%left_behind'"))
  // A lock another client holds: the Query waits for it (here until lock_timeout), as PostgreSQL's does.
  const holder = await connect(url)
  expect((await holder.query('SELECT pg_advisory_lock(4343)')).errors).toEqual([])
  expect((await b.query("SET lock_timeout = '300ms'")).errors).toEqual([])
  const waited = await b.query('SELECT pg_advisory_lock(4343); CLOSE ALL')
  out.lockWait = waited.errors.map((e) => `${e.code} ${e.message}`).join()
  return out
}

describe('CLOSE ALL and DEALLOCATE ALL stand-ins, at their edges', () => {
  const expected = {
    failedBefore: '22012',
    keptAfterFailure: '1',
    declaredAfter: '2',
    closedBefore: '34000',
    preparedAfter: '3',
    leftBehind: '0',
    lockWait: '55P03 canceling statement due to lock timeout',
  }

  it('a Query that fails before them closes nothing; names made after them stay; a lock is waited for', async () => {
    const dev = await start()
    expect(await standInEdges(dev.url)).toEqual(expected)
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    expect(await standInEdges(oracleUrl!)).toEqual(expected)
  })
})

describe('a client that leaves while its statement runs', () => {
  // On Postgres another backend never sees its statements. Here they are in the one session: they must be gone before
  // the client that waited for the session runs anything (the departing client's call ends, then its release hands
  // the session on, before its connection's cleanup).
  it('leaves no prepared statement for the client that waited for the session', async () => {
    const dev = await start()
    const holder = await connect(dev.url)
    const a = await connect(dev.url)
    // A startup setting to apply first: b's query cannot share a call with a's (combined-calls.ts).
    const b = await connect(dev.url, { work_mem: '5MB' })
    expect((await a.query('PREPARE mine AS SELECT 1')).errors).toEqual([])
    // The queue is in order: a's statement runs first once the holder commits, while b's query waits behind it.
    expect((await holder.query('BEGIN')).errors).toEqual([])
    // Long enough to leave while it runs, as a client that times out does.
    await a.send(wire.query('SELECT pg_sleep(2)'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 10_000 }).toBe(1)
    const waiting = b.query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '%mine'", {
      deadlineMs: 20_000,
    })
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 10_000 }).toBe(2)
    expect((await holder.query('COMMIT')).errors).toEqual([])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ sessionHeld: true, waitingClients: 1 })
    // A reset, as when its process dies: its statement finishes, as on Postgres, and nothing more of it runs.
    a.socket.resetAndDestroy()
    const seen = await waiting
    expect(seen.errors).toEqual([])
    expect(seen.rows).toEqual([['0']])
  })
})
