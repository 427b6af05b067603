// pg_dump 18 (harness/clients/pg-dump.ts: the WASM build of @electric-sql/pglite-tools speaking over TCP) dumps a schema
// with types, constraints, an identity and a serial column, a sequence, indexes, a view and rows, while other
// clients keep writing to another table by its unqualified name. psql restores the dump into a fresh schema (the
// dump with dump_src renamed: a fresh database would test CREATE DATABASE too, which the stock server and the
// socket server alone lack), and the restored schema must match the original: columns, constraints, indexes, view,
// sequence state and every row. The writers' rounds after the dump show whether pg_dump's session settings
// (search_path '') reached them.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { LIBPQ_ENV, runProcess } from '../process.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario, type Tally } from './outcome.ts'

const PG_DUMP = fileURLToPath(new URL('../clients/pg-dump.ts', import.meta.url))
const SOURCE_SCHEMA = 'dump_src'
/** The restore's schema: the dump with every `dump_src` renamed (no row holds that text). */
const COPY_SCHEMA = 'dump_copy'
const WRITERS = 3
/** A bound that the writers never reach: the dump and the restore end by their process deadlines first. */
const MAX_WRITER_ROUNDS = 100_000
const PROCESS_DEADLINE_MS = 60_000
const QUERY_TIMEOUT_MS = 30_000

const SETUP = `
drop schema if exists dump_src cascade;
create schema dump_src;
create type dump_src.mood as enum ('sad', 'ok', 'happy');
create table dump_src.customers (
  id bigserial primary key,
  email text not null unique,
  born date,
  balance numeric(12, 2) not null default 0 check (balance >= 0),
  ratio double precision,
  tags text[],
  profile jsonb,
  mood dump_src.mood,
  created timestamptz not null default now()
);
create table dump_src.orders (
  id int generated always as identity primary key,
  customer_id bigint not null references dump_src.customers (id) on delete cascade,
  amount numeric(10, 2) not null,
  note text,
  raw bytea
);
create index orders_customer_idx on dump_src.orders (customer_id);
create index orders_big_idx on dump_src.orders (amount) where amount > 50;
create sequence dump_src.tickets start 100 increment 5;
select nextval('dump_src.tickets') from generate_series(1, 3);
create view dump_src.big_orders as
  select c.email, o.amount from dump_src.orders o join dump_src.customers c on c.id = o.customer_id where o.amount > 50;
insert into dump_src.customers (email, born, balance, ratio, tags, profile, mood, created)
  select 'user' || g || '@example.com', date '1970-01-01' + g * 97, g * 1.25, g / 7.0, array['t' || g % 3, 'it''s'],
         jsonb_build_object('n', g, 'quote', E'line\\nbreak "q"', 'uni', 'Grüße ✓'),
         (array['sad', 'ok', 'happy'])[g % 3 + 1]::dump_src.mood, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
  from generate_series(1, 200) g;
update dump_src.customers set tags = null, profile = null, mood = null where id % 17 = 0;
insert into dump_src.orders (customer_id, amount, note, raw)
  select g % 200 + 1, (g * 37 % 10000) / 100.0, case when g % 5 = 0 then null else E'note\\t' || g || ' ''x''' end,
         decode(md5(g::text), 'hex')
  from generate_series(1, 500) g;
drop table if exists dump_busy;
create table dump_busy (writer int not null, n int not null);
`

/** One query per aspect of a schema, read the same way from the original and the restored one. */
const shapeQueries = (schema: string): Record<string, string> => ({
  columns: `select table_name, column_name, data_type, is_nullable, column_default, is_identity, identity_generation
    from information_schema.columns where table_schema = '${schema}' order by table_name, ordinal_position`,
  constraints: `select conrelid::regclass::text, conname, pg_get_constraintdef(oid) from pg_constraint
    where connamespace = '${schema}'::regnamespace order by 2`,
  indexes: `select indexname, indexdef from pg_indexes where schemaname = '${schema}' order by 1`,
  views: `select viewname, pg_get_viewdef(format('%I.%I', schemaname, viewname)::regclass) from pg_views where schemaname = '${schema}'`,
  sequences: `select sequencename, last_value, increment_by, start_value from pg_sequences where schemaname = '${schema}' order by 1`,
  enum: `select enumlabel from pg_enum where enumtypid = '${schema}.mood'::regtype order by enumsortorder`,
  customers: `select count(*), md5(string_agg(c::text, E'\\n' order by id)) from ${schema}.customers c`,
  orders: `select count(*), md5(string_agg(o::text, E'\\n' order by id)) from ${schema}.orders o`,
  big_orders: `select count(*), md5(string_agg(b::text, E'\\n' order by email, amount)) from ${schema}.big_orders b`,
})

/**
 * pg_dump 18 writes SETs of settings older servers lack (transaction_timeout is PostgreSQL 17+): psql would print an
 * error for each and go on, as a person restoring would see. Only such lines are left out (the scenario's details
 * list them); every other statement must succeed, under ON_ERROR_STOP.
 */
const SET_LINE = /^SET ([a-z_]+) = /

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: url,
    query_timeout: QUERY_TIMEOUT_MS,
    connectionTimeoutMillis: QUERY_TIMEOUT_MS,
  })
  await client.connect()
  return client
}

/** The schema's shape, with its own name written as dump_src so that the two compare equal when they match. */
async function readShape(client: pg.Client, schema: string): Promise<Record<string, string>> {
  const shape: Record<string, string> = {}
  for (const [aspect, text] of Object.entries(shapeQueries(schema))) {
    const { rows } = await client.query({ text, rowMode: 'array' })
    shape[aspect] = JSON.stringify(rows).replaceAll(schema, SOURCE_SCHEMA)
  }
  return shape
}

/**
 * A writer inserts into `dump_busy` by its unqualified name and counts its own rows, round after round, until the dump
 * and restore are over and it has made one more round: one request of the tally, wrong at its first wrong round.
 */
async function writer(
  url: string,
  id: number,
  started: () => void,
  work: { isOver: boolean },
  rounds: number[],
): Promise<true | string> {
  let client: pg.Client | null = null
  try {
    client = await connect(url)
    let after = 0
    for (let n = 1; n <= MAX_WRITER_ROUNDS && after < 1; n++) {
      if (work.isOver) after++
      await client.query('begin')
      await client.query('insert into dump_busy (writer, n) values ($1, $2)', [id, n])
      const { rows } = await client.query<{ count: string }>('select count(*) from dump_busy where writer = $1', [id])
      await client.query('commit')
      rounds[id] = n
      started()
      if (rows[0]?.count !== String(n)) return `writer ${id} round ${n}: counted ${rows[0]?.count}`
    }
    return after === 1 ? true : `writer ${id} stopped after ${MAX_WRITER_ROUNDS} rounds, before the restore was over`
  } finally {
    started()
    await client?.end()
  }
}

export async function pgDumpScenario(url: string): Promise<Outcome> {
  const tally = createTally()
  const details: Record<string, unknown> = {}
  const dir = await mkdtemp(join(tmpdir(), 'pglite-dump-'))
  let admin: pg.Client | null = null
  try {
    admin = await connect(url)
    await admin.query(SETUP)
    const work = { isOver: false }
    const starts: Array<Promise<void>> = []
    const rounds = Array.from({ length: WRITERS }, () => 0)
    const writers = Array.from({ length: WRITERS }, (_, id) => {
      let started: () => void = () => {}
      starts.push(new Promise<void>((resolve) => (started = resolve)))
      return attempt(tally, () => writer(url, id, started, work, rounds))
    })
    try {
      // The dump starts once every writer is at work (or has failed its first round).
      await Promise.all(starts)
      const before = rounds.reduce((a, b) => a + b)
      await dumpAndRestore(tally, url, dir, details)
      const during = rounds.reduce((a, b) => a + b) - before
      details.writerRoundsDuringDumpAndRestore = during
      // The dump is only a check of isolation if other clients worked while it ran.
      await attempt(tally, async () => (during > 0 ? true : 'no writer round completed during the dump and restore'))
    } finally {
      work.isOver = true
      await Promise.all(writers)
      details.writerRounds = rounds
    }
    const original = await readShape(admin, SOURCE_SCHEMA)
    const restored = await readShape(admin, COPY_SCHEMA)
    for (const aspect of Object.keys(original)) {
      await attempt(tally, async () =>
        original[aspect] === restored[aspect]
          ? true
          : `${aspect}: ${original[aspect]!.slice(0, 80)} restored as ${restored[aspect]!.slice(0, 80)}`,
      )
    }
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    await admin?.end()
    await rm(dir, { recursive: true, force: true })
  }
  return verdictOf(tally, details)
}

/** pg_dump -n dump_src, then psql runs the dump with the schema renamed; each step is one request of the tally. */
async function dumpAndRestore(tally: Tally, url: string, dir: string, details: Record<string, unknown>): Promise<void> {
  let dump = ''
  const dumped = await attempt(tally, async () => {
    const out = await runProcess(process.execPath, ['--import', 'tsx', PG_DUMP, url, '-n', SOURCE_SCHEMA], {
      deadlineMs: PROCESS_DEADLINE_MS,
    })
    dump = out.stdout.toString()
    if (out.code !== 0) return `pg_dump: exit ${out.code}: ${out.stderr.trim().split('\n').slice(-2).join(' | ')}`
    return dump.includes(`CREATE TABLE ${SOURCE_SCHEMA}.orders`)
      ? true
      : 'pg_dump: no CREATE TABLE for orders in the dump'
  })
  if (dumped !== 'ok') return
  const known = new Set((await queryOnce(url, 'select name from pg_settings')).map((row) => row[0]))
  const unknown: string[] = []
  const restorable = dump
    .split('\n')
    .filter((line) => {
      const setting = SET_LINE.exec(line)?.[1]
      if (setting === undefined || known.has(setting)) return true
      unknown.push(setting)
      return false
    })
    .join('\n')
    .replaceAll(SOURCE_SCHEMA, COPY_SCHEMA)
  details.settingsLeftOut = unknown
  const file = join(dir, 'dump.sql')
  await writeFile(file, `drop schema if exists ${COPY_SCHEMA} cascade;\n${restorable}`)
  await attempt(tally, async () => {
    const out = await runProcess('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-f', file], {
      env: LIBPQ_ENV,
      deadlineMs: PROCESS_DEADLINE_MS,
    })
    return out.code === 0 ? true : `psql restore: exit ${out.code}: ${out.stderr.trim().split('\n')[0]}`
  })
}

async function queryOnce(url: string, sql: string): Promise<string[][]> {
  const client = await connect(url)
  try {
    return (await client.query<string[]>({ text: sql, rowMode: 'array' })).rows
  } finally {
    await client.end()
  }
}

export const pgDumpRestoreScenario: Scenario = { name: 'pg_dump-restore', run: (url) => pgDumpScenario(url) }
