// Per-client session settings: what a client is told, and what is left for the next
// client after a SET, a rolled-back SET, a disconnect, or a refused startup value. Real PGlite, raw frames.
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import postgres from 'postgres'
import { describe, expect, it, onTestFinished } from 'vitest'
import { scratchRoot } from '../helpers/db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect } = useDevDbs()

const SHOW =
  "select current_setting('search_path') || ' | ' || current_setting('TimeZone') || ' | ' || current_setting('application_name') as s"

async function show(client: RawClient): Promise<string | null | undefined> {
  const reply = await client.query(SHOW)
  expect(reply.errors).toEqual([])
  return reply.rows[0]?.[0]
}

describe('session settings per client', () => {
  it("a client's startup settings apply to it alone, and it is told the reported ones before its first answer", async () => {
    const dev = await start()
    const plain = await connect(dev.url)
    const tuned = await connect(dev.url, {
      application_name: 'tuned',
      TimeZone: 'Asia/Tokyo',
      options: '-c search_path=pg_catalog',
    })
    // Connecting never needs the session: the plain client's default values came with the startup reply.
    expect(tuned.parameters.TimeZone).toBe(plain.parameters.TimeZone)

    await tuned.send(wire.query(SHOW))
    const messages = await tuned.until('ReadyForQuery')
    const statuses = messages.filter((m) => m.code === 'S').map((m) => wire.decodeParameterStatus(m.body))
    expect(statuses).toEqual(
      expect.arrayContaining([
        ['TimeZone', 'Asia/Tokyo'],
        ['application_name', 'tuned'],
      ]),
    )
    // Before the RowDescription: the client knows its settings before any answer that depends on them.
    expect(messages.findIndex((m) => m.code === 'S')).toBeLessThan(messages.findIndex((m) => m.code === 'T'))
    expect(wire.summarize(messages).rows).toEqual([['pg_catalog | Asia/Tokyo | tuned']])

    expect(await show(plain)).toBe('"$user", public | UTC | ')
    expect(await show(tuned)).toBe('pg_catalog | Asia/Tokyo | tuned')
    expect(await show(plain)).toBe('"$user", public | UTC | ')
  })

  it("a client's default search_path is Postgres's (not PGlite's `public`), and pg_settings says where it comes from", async () => {
    const dev = await start()
    const sql = "select setting, source, reset_val from pg_settings where name = 'search_path'"
    const ours = (await (await connect(dev.url)).query(sql)).rows
    expect(ours).toEqual([['"$user", public', 'default', '"$user", public']])
    // The suite starts a PostgreSQL 15 for the run unless PG_ORACLE_URL=none (test/oracles.ts): the same answer there.
    const oracleUrl = process.env['PG_ORACLE_URL']
    if (!oracleUrl) return
    const oracle = await connectRaw(oracleUrl)
    onTestFinished(() => oracle.destroy())
    expect((await oracle.query(sql)).rows).toEqual(ours)
  })

  it('ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET apply to clients that connect later, as on Postgres', async () => {
    const dev = await start()
    const admin = await connect(dev.url)
    const before = await connect(dev.url)
    expect(await show(before)).toBe('"$user", public | UTC | ')
    const altered = await admin.query(
      "alter database postgres set timezone = 'Asia/Tokyo'; alter database postgres set search_path = pg_catalog, public; alter role postgres in database postgres set work_mem = '7MB'",
    )
    expect(altered.errors).toEqual([])
    const workMem = async (client: RawClient) => (await client.query("select current_setting('work_mem')")).rows[0]?.[0]

    // A client that connects now gets them, told of the reported one before its first answer; earlier ones keep theirs.
    const later = await connect(dev.url)
    await later.send(wire.query(SHOW))
    const messages = await later.until('ReadyForQuery')
    expect(messages.filter((m) => m.code === 'S').map((m) => wire.decodeParameterStatus(m.body))).toContainEqual([
      'TimeZone',
      'Asia/Tokyo',
    ])
    expect(wire.summarize(messages).rows).toEqual([['pg_catalog, public | Asia/Tokyo | ']])
    expect(await workMem(later)).toBe('7MB')
    expect(await show(before)).toBe('"$user", public | UTC | ')
    expect(await show(admin)).toBe('"$user", public | UTC | ')
    // The startup packet's own settings win over the database's, one equal to the server's default too.
    const own = await connect(dev.url, { TimeZone: 'Europe/Paris' })
    expect(await show(own)).toBe('pg_catalog, public | Europe/Paris | ')
    const utc = await connect(dev.url, { TimeZone: 'UTC' })
    expect(await show(utc)).toBe('pg_catalog, public | UTC | ')

    expect(
      (await admin.query('alter database postgres reset all; alter role postgres in database postgres reset all'))
        .errors,
    ).toEqual([])
    const last = await connect(dev.url)
    expect(await show(last)).toBe('"$user", public | UTC | ')
    expect(await workMem(last)).toBe(await workMem(admin))
    expect(await show(later)).toBe('pg_catalog, public | Asia/Tokyo | ')
  })

  it("ALTER DATABASE of another database sets its next clients' settings; one it cannot apply is a WARNING, not a refusal", async () => {
    const dev = await start()
    const admin = await connect(dev.url)
    expect((await admin.query('create database other')).errors).toEqual([])
    const early = await connect(dev.url, { database: 'other' })
    expect(await show(early)).toBe('"$user", public | UTC | ')
    expect((await admin.query("alter database other set timezone = 'Asia/Tokyo'")).errors).toEqual([])
    expect(await show(await connect(dev.url, { database: 'other' }))).toBe('"$user", public | Asia/Tokyo | ')
    expect(await show(admin)).toBe('"$user", public | UTC | ')

    // A value Postgres refuses, written into the catalog directly (as a dropped extension's can be left): it warns at connect.
    // The others still apply.
    const stored = "array['TimeZone=Asia/Tokyo', 'statement_timeout=soon']"
    expect(
      (
        await early.query(
          `alter database other set statement_timeout = '1s'; update pg_catalog.pg_db_role_setting set setconfig = ${stored} where setdatabase <> 0`,
        )
      ).errors,
    ).toEqual([])
    const warned = await connect(dev.url, { database: 'other' })
    await warned.send(wire.query(SHOW))
    const messages = await warned.until('ReadyForQuery')
    const notices = messages.filter((m) => m.code === 'N').map((m) => wire.decodeError(m.body))
    expect(notices).toEqual([
      expect.objectContaining({ severity: 'WARNING', message: expect.stringMatching(/statement_timeout/) }),
    ])
    expect(wire.summarize(messages).rows).toEqual([['"$user", public | Asia/Tokyo | ']])
  })

  it('a SET stays with its client across other clients turns; a rolled-back SET is gone; a departed client leaves nothing', async () => {
    const dev = await start()
    const a = await connect(dev.url)
    const b = await connect(dev.url)
    expect((await a.query("set timezone = 'America/New_York'; set application_name = 'a'")).errors).toEqual([])
    expect(await show(b)).toBe('"$user", public | UTC | ')
    expect(await show(a)).toBe('"$user", public | America/New_York | a')

    expect((await a.query('begin; set search_path = pg_catalog; rollback')).status).toBe('I')
    expect(await show(b)).toBe('"$user", public | UTC | ')
    expect(await show(a)).toBe('"$user", public | America/New_York | a')

    // SET LOCAL lasts for its transaction only, and other clients wait for that transaction anyway.
    const local = await a.query("begin; set local timezone = 'Asia/Tokyo'; " + SHOW + '; commit')
    expect(local.rows).toEqual([['"$user", public | Asia/Tokyo | a']])
    expect(await show(a)).toBe('"$user", public | America/New_York | a')

    expect((await b.query('set search_path = pg_catalog')).errors).toEqual([])
    b.destroy()
    await withDeadline(b.closed, 3_000, 'b closed')
    const c = await connect(dev.url)
    expect(await show(c)).toBe('"$user", public | UTC | ')

    // RESET ALL returns the client to the defaults, and only that client.
    expect((await a.query('reset all')).errors).toEqual([])
    expect(await show(a)).toBe('"$user", public | UTC | ')
  })

  it('a setting changed by set_config() stays with its client, as a SET does: by Query, by a prepared statement run again, in a DO block', async () => {
    const dev = await start()
    const a = await connect(dev.url)
    const b = await connect(dev.url)
    const workMem = async (client: RawClient): Promise<string | null | undefined> => {
      const reply = await client.query("select current_setting('work_mem')")
      expect(reply.errors).toEqual([])
      return reply.rows[0]?.[0]
    }
    const initial = await workMem(b)
    // pg_dump begins its session so: `SELECT pg_catalog.set_config('search_path', '', false)`.
    expect(
      (
        await a.query(
          "select pg_catalog.set_config('work_mem', '7MB', false), pg_catalog.set_config('search_path', '', false)",
        )
      ).errors,
    ).toEqual([])
    expect(await workMem(b)).toBe(initial)
    expect((await b.query("select current_setting('search_path')")).rows).toEqual([['"$user", public']])
    expect(await workMem(a)).toBe('7MB')

    // A named statement made in one unit and run in later ones, after the other client's turns.
    await b.send(wire.parse('set_mem', "select set_config('work_mem', $1, false)"), wire.sync())
    expect(wire.summarize(await b.until('ReadyForQuery')).errors).toEqual([])
    for (const value of ['9MB', '10MB']) {
      await b.send(wire.bind('', 'set_mem', [value]), wire.execute(''), wire.sync())
      expect(wire.summarize(await b.until('ReadyForQuery')).errors).toEqual([])
      expect(await workMem(a)).toBe('7MB')
      expect(await workMem(b)).toBe(value)
    }

    // A SQL PREPARE that calls it: each EXECUTE may change the setting.
    expect((await a.query("prepare set_mem_sql as select set_config('work_mem', $1, false)")).errors).toEqual([])
    expect((await a.query("execute set_mem_sql('8MB')")).errors).toEqual([])
    expect(await workMem(b)).toBe('10MB')
    expect(await workMem(a)).toBe('8MB')

    expect(
      (await a.query("do $$ begin perform set_config /* a comment */ ('work_mem', '11MB', false); end $$")).errors,
    ).toEqual([])
    expect(await workMem(b)).toBe('10MB')
    expect(await workMem(a)).toBe('11MB')
    // Local to its transaction: gone with it, for its client and the others.
    expect((await a.query("begin; select set_config('work_mem', '12MB', true); commit")).errors).toEqual([])
    expect(await workMem(a)).toBe('11MB')
    expect(await workMem(b)).toBe('10MB')
  })

  it('a startup value Postgres refuses closes that connection with its error as FATAL at its first query; others carry on', async () => {
    const dev = await start()
    const other = await connect(dev.url)
    const bad = await connect(dev.url, { DateStyle: 'garbage' })
    await bad.send(wire.query('select 1'))
    const error = await bad.next('ErrorResponse')
    expect(wire.decodeError(error.body)).toMatchObject({
      severity: 'FATAL',
      code: '22023',
      message: 'invalid value for parameter "DateStyle": "garbage"',
    })
    await withDeadline(bad.closed, 3_000, 'refused client closed')
    expect(await show(other)).toBe('"$user", public | UTC | ')
  })

  it("SET ROLE and SET SESSION AUTHORIZATION are their client's alone; RESET SESSION AUTHORIZATION and DISCARD ALL put it back", async () => {
    const dev = await start()
    const [a, b] = [await connect(dev.url), await connect(dev.url)]
    expect((await a.query('create role settings_r1; create role settings_r2')).errors).toEqual([])
    const who = async (client: RawClient) => (await client.query('select current_user, session_user')).rows[0]

    expect((await a.query('set role settings_r1')).errors).toEqual([])
    expect(await who(b)).toEqual(['postgres', 'postgres'])
    expect(await who(a)).toEqual(['settings_r1', 'postgres'])
    // Another client's object is made by that client's role, as on Postgres.
    expect((await b.query('create table settings_owned (id int)')).errors).toEqual([])
    expect((await a.query("select tableowner from pg_tables where tablename = 'settings_owned'")).rows).toEqual([
      ['postgres'],
    ])

    expect((await a.query('reset role; set session authorization settings_r2')).errors).toEqual([])
    expect(await who(b)).toEqual(['postgres', 'postgres'])
    expect(await who(a)).toEqual(['settings_r2', 'settings_r2'])
    const reset = await a.query('reset session authorization')
    expect(reset.errors).toEqual([])
    expect(await who(a)).toEqual(['postgres', 'postgres'])

    expect((await a.query('set session authorization settings_r2')).errors).toEqual([])
    expect((await a.query('set session authorization default')).errors).toEqual([])
    expect(await who(a)).toEqual(['postgres', 'postgres'])

    // DISCARD ALL puts the user back first, as Postgres's does: a temporary table made before SET ROLE goes too.
    expect((await b.query('create temp table settings_scratch (id int); set role settings_r1')).errors).toEqual([])
    const discard = await b.query('discard all')
    expect(discard.errors).toEqual([])
    expect(discard.trace).not.toContain('NoticeResponse')
    expect(await who(a)).toEqual(['postgres', 'postgres'])
    expect(await who(b)).toEqual(['postgres', 'postgres'])
    expect((await b.query('select count(*) from settings_scratch')).errors.map((e) => e.code)).toEqual(['42P01'])
    // A client that leaves as another user leaves nothing behind.
    expect((await b.query('set session authorization settings_r2')).errors).toEqual([])
    b.destroy()
    await withDeadline(b.closed, 3_000, 'b closed')
    const c = await connect(dev.url)
    expect(await who(c)).toEqual(['postgres', 'postgres'])
    expect((await c.query('create table settings_after (id int)')).errors).toEqual([])
  })
})

// postgres.js takes the first application_name it is told (its "responds with server parameters" test).
const startupTargets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
if (process.env.PG_ORACLE_URL)
  startupTargets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => process.env.PG_ORACLE_URL!])

describe.each(startupTargets)('application_name at startup: %s', (_, serve) => {
  it("is reported once, with the client's value, before ReadyForQuery", async () => {
    const url = await serve()
    const client = await connectRaw(url, { startup: false })
    onTestFinished(() => client.destroy())
    await client.send(wire.startup({ user: 'postgres', database: 'postgres', application_name: 'reported-once' }))
    const messages = await client.until('ReadyForQuery')
    const names = messages
      .filter((m) => m.code === 'S')
      .map((m) => wire.decodeParameterStatus(m.body))
      .filter(([name]) => name === 'application_name')
    expect(names).toEqual([['application_name', 'reported-once']])

    const told: string[] = []
    const sql = postgres(url, {
      max: 1,
      onnotice: () => {},
      onparameter: (name, value) => void (name === 'application_name' && told.push(value)),
    })
    onTestFinished(() => sql.end())
    await sql`select 1`
    expect(told[0]).toBe('postgres.js')
  })

  it("a plain query's reply carries no ParameterStatus, the first query of a database's first client included", async () => {
    const url = await serve()
    // A database of its own on pglite-dev-db (made for this client); the oracle's main database.
    const database = url === process.env.PG_ORACLE_URL ? 'postgres' : 'first_reply'
    const client = await connectRaw(url, { params: { user: 'postgres', database } })
    onTestFinished(() => client.destroy())
    for (let i = 0; i < 2; i++) {
      await client.send(wire.query('select 1'))
      expect((await client.until('ReadyForQuery')).map((m) => m.code).join(''), `query ${i + 1}`).toBe('TDCZ')
    }
  })
})

// PGlite (PostgreSQL 18) sends search_path again, unchanged, after each statement that narrows it while it runs;
// PostgreSQL reports a setting only when its value changed. Each repeat would also cost a read-back of the settings.
const reportTargets: Array<[string, () => Promise<string>]> = [
  ['pglite-dev-db', async () => (await start()).url],
  ["pglite-dev-db, databases in the server's thread", async () => (await start({ databaseThreads: false })).url],
  // A traced connection's replies go through the server's thread, as a TLS one's do.
  [
    'pglite-dev-db, traced',
    async () => {
      const dir = await mkdtemp(path.join(await scratchRoot(), 'reports-trace-'))
      onTestFinished(() => rm(dir, { recursive: true, force: true }))
      return (await start({ trace: path.join(dir, 'trace.jsonl') })).url
    },
  ],
]
for (const [label, oracleUrl] of [
  ['postgres 15 oracle (PG_ORACLE_URL)', process.env.PG_ORACLE_URL],
  ['postgres 18 oracle (PG_ORACLE_18_URL)', process.env.PG_ORACLE_18_URL],
] as const)
  if (oracleUrl) reportTargets.push([label, async () => oracleUrl])

describe.each(reportTargets)('ParameterStatus only when a value changes: %s', (_, serve) => {
  it('TRUNCATE, CREATE INDEX, ANALYZE, VACUUM and a function with SET report nothing; a new value is reported', async () => {
    const client = await connectRaw(await serve())
    onTestFinished(() => client.destroy())
    const reports = async (sql: string) => {
      await client.send(wire.query(sql))
      const messages = await client.until('ReadyForQuery')
      expect(
        messages.filter((m) => m.code === 'E').map((m) => wire.decodeError(m.body).message),
        sql,
      ).toEqual([])
      return messages.filter((m) => m.code === 'S').map((m) => wire.decodeParameterStatus(m.body))
    }
    // The first report may come: a server whose databases run in its thread forgets what PGlite reported each time
    // PGlite's own query API runs (startDevDb's start does), which reads the output itself.
    await reports(
      'drop table if exists reports_t, reports_u; drop function if exists reports_f(); ' +
        'create table reports_t (id serial primary key, x int)',
    )
    const statements = [
      'create table reports_u (id serial primary key)',
      'truncate reports_t',
      'truncate reports_t restart identity',
      'create index on reports_t (x)',
      'analyze reports_t',
      'vacuum reports_t',
      "create function reports_f() returns int language sql set search_path = pg_catalog as 'select 1'",
      'select reports_f()',
      'begin; truncate reports_t; commit',
    ]
    for (const sql of statements) expect(await reports(sql), sql).toEqual([])
    expect(await reports("select set_config('application_name', 'reports', false)")).toEqual([
      ['application_name', 'reports'],
    ])
    expect(await reports("select set_config('application_name', 'reports', false)")).toEqual([])
    expect(await reports('truncate reports_t')).toEqual([])
    await reports('drop table reports_t, reports_u; drop function reports_f()')
  })

  it('clients with search_paths of their own, taking turns with TRUNCATE: each told its own value, once', async () => {
    const url = await serve()
    const setup = await connectRaw(url)
    onTestFinished(() => setup.destroy())
    const schemas = [1, 2, 3].map((n) => `turns_${n}`)
    const made = await setup.query(
      schemas
        .map(
          (s) =>
            `drop schema if exists ${s} cascade; create schema ${s}; create table ${s}.t (id serial primary key, n int)`,
        )
        .join('; '),
    )
    expect(made.errors).toEqual([])
    const version = Number((await setup.query('show server_version_num')).rows[0]![0])
    const clients = await Promise.all(schemas.map(() => connectRaw(url)))
    onTestFinished(() => clients.forEach((c) => c.destroy()))
    const run = async (client: RawClient, sql: string) => {
      await client.send(wire.query(sql))
      const messages = await client.until('ReadyForQuery')
      const { rows, errors } = wire.summarize(messages)
      expect(
        errors.map((e) => e.message),
        sql,
      ).toEqual([])
      return { rows, told: messages.filter((m) => m.code === 'S').map((m) => wire.decodeParameterStatus(m.body)) }
    }
    // PostgreSQL reports search_path from 18 on (pglite-dev-db is 18): each client its own value.
    for (const [i, client] of clients.entries())
      expect((await run(client, `set search_path = ${schemas[i]}`)).told).toEqual(
        version >= 180000 ? [['search_path', schemas[i]]] : [],
      )
    // The clients' statements interleave: each resolves t in its own schema, and none brings a report.
    await Promise.all(
      clients.map(async (client, i) => {
        for (let round = 0; round < 5; round++) {
          for (const sql of ['truncate t restart identity', `insert into t (n) values (${i + 1})`])
            expect((await run(client, sql)).told, sql).toEqual([])
          expect(await run(client, 'select n from t')).toEqual({ rows: [[String(i + 1)]], told: [] })
        }
      }),
    )
    expect((await setup.query(schemas.map((s) => `drop schema ${s} cascade`).join('; '))).errors).toEqual([])
  })
})
