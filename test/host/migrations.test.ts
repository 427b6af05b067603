// applyMigrations against real PGlite instances: this repo's migrations/, restarts, a broken file, bad folders,
// and drizzle-orm's own migrator as the judge of bookkeeping compatibility.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import { drizzle } from 'drizzle-orm/pglite'
import { migrate } from 'drizzle-orm/pglite/migrator'
import { readMigrationFiles } from 'drizzle-orm/migrator'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { DevServerError } from '../../src/errors.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { applyMigrations } from '../../src/databases/migrate.ts'
import journal from '../../migrations/meta/_journal.json' with { type: 'json' }

const REPO_MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))
const JOURNAL_TAGS = journal.entries.map((e) => e.tag)
// initdb alone takes 2–4 s; one instance per describe keeps the file at a few of them.
const PGLITE_TIMEOUT_MS = 30_000

function captureLogs() {
  const records: LogRecord[] = []
  return { records, log: createLogger({ level: 'info', sink: (r) => records.push(r) }) }
}

async function bookkeeping(db: PGlite): Promise<Array<{ hash: string; created_at: number }>> {
  const { rows } = await db.query<{ hash: string; created_at: unknown }>(
    'SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id',
  )
  return rows.map((r) => ({ hash: r.hash, created_at: Number(r.created_at) }))
}

async function relationExists(db: PGlite, name: string): Promise<boolean> {
  const { rows } = await db.query<{ oid: string | null }>('SELECT to_regclass($1)::text AS oid', [name])
  return rows[0]?.oid != null
}

/** Writes a drizzle-kit-shaped folder: meta/_journal.json plus one .sql file per entry. */
async function writeMigrationsDir(
  dir: string,
  files: Array<{ tag: string; when: number; sql: string }>,
): Promise<void> {
  await mkdir(path.join(dir, 'meta'), { recursive: true })
  const entries = files.map((f, idx) => ({ idx, version: '7', when: f.when, tag: f.tag, breakpoints: true }))
  await writeFile(
    path.join(dir, 'meta', '_journal.json'),
    JSON.stringify({ version: '7', dialect: 'postgresql', entries }),
  )
  for (const f of files) await writeFile(path.join(dir, `${f.tag}.sql`), f.sql)
}

async function expectMigrationError(promise: Promise<unknown>): Promise<DevServerError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(DevServerError)
  expect((error as DevServerError).code).toBe('ERR_MIGRATION')
  return error as DevServerError
}

describe('this repo migrations on a fresh in-memory database', { timeout: PGLITE_TIMEOUT_MS }, () => {
  let db: PGlite
  beforeAll(async () => {
    db = await PGlite.create()
  }, PGLITE_TIMEOUT_MS)
  afterAll(async () => {
    await db?.close()
  })

  test('applies every journal entry and creates the schema', async () => {
    const { records, log } = captureLogs()
    const result = await applyMigrations(db, REPO_MIGRATIONS, log)
    expect(result).toEqual({ applied: JOURNAL_TAGS, skipped: 0 })

    const tables = await db.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    )
    expect(tables.rows.map((r) => r.table_name)).toEqual(['customers', 'order_items', 'orders', 'products'])

    const labels = await db.query<{ enumlabel: string }>(
      "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'order_status' ORDER BY e.enumsortorder",
    )
    expect(labels.rows.map((r) => r.enumlabel)).toEqual(['pending', 'paid', 'shipped', 'cancelled'])

    const indexes = await db.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname IN ('orders_customer_placed_idx', 'order_items_order_idx') ORDER BY 1",
    )
    expect(indexes.rows.map((r) => r.indexname)).toEqual(['order_items_order_idx', 'orders_customer_placed_idx'])

    const cascade = await db.query<{ confdeltype: string }>(
      "SELECT confdeltype FROM pg_constraint WHERE conname = 'order_items_order_id_orders_id_fk'",
    )
    expect(cascade.rows).toEqual([{ confdeltype: 'c' }])

    const columns = await db.query<{
      data_type: string
      numeric_precision: number | null
      numeric_scale: number | null
    }>(
      "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns WHERE table_name = 'orders' AND column_name IN ('total', 'placed_at', 'metadata', 'id') ORDER BY column_name",
    )
    expect(columns.rows).toEqual([
      { data_type: 'uuid', numeric_precision: null, numeric_scale: null },
      { data_type: 'jsonb', numeric_precision: null, numeric_scale: null },
      { data_type: 'timestamp with time zone', numeric_precision: null, numeric_scale: null },
      { data_type: 'numeric', numeric_precision: 12, numeric_scale: 2 },
    ])

    // drizzle-orm's own reader is the oracle for the hash and created_at it would record.
    const expected = readMigrationFiles({ migrationsFolder: REPO_MIGRATIONS }).map((m) => ({
      hash: m.hash,
      created_at: m.folderMillis,
    }))
    expect(await bookkeeping(db)).toEqual(expected)

    const applied = records.filter((r) => r.msg === 'migration applied')
    expect(applied.map((r) => r.fields['file'])).toEqual(
      JOURNAL_TAGS.map((tag) => path.join(REPO_MIGRATIONS, `${tag}.sql`)),
    )
    expect(applied.every((r) => r.level === 'info' && typeof r.fields['ms'] === 'number')).toBe(true)
    expect(records.at(-1)).toMatchObject({
      level: 'info',
      msg: 'migrations done',
      fields: { applied: JOURNAL_TAGS.length, skipped: 0 },
    })
  })

  test('a second run applies nothing', async () => {
    const before = await bookkeeping(db)
    const { records, log } = captureLogs()
    expect(await applyMigrations(db, REPO_MIGRATIONS, log)).toEqual({ applied: [], skipped: JOURNAL_TAGS.length })
    expect(await bookkeeping(db)).toEqual(before)
    expect(records.filter((r) => r.msg === 'migration applied')).toEqual([])
    expect(records.filter((r) => r.level === 'warn')).toEqual([])
  })

  test("drizzle-orm's migrator sees everything as applied", async () => {
    const before = await bookkeeping(db)
    await migrate(drizzle(db), { migrationsFolder: REPO_MIGRATIONS })
    expect(await bookkeeping(db)).toEqual(before)
  })
})

describe('restart on the same data dir', { timeout: PGLITE_TIMEOUT_MS }, () => {
  let dataDir: string
  let db: PGlite | undefined
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-migrate-'))
  })
  afterAll(async () => {
    await db?.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  test('applies nothing twice and keeps the data', async () => {
    const { log } = captureLogs()
    db = await PGlite.create({ dataDir })
    expect((await applyMigrations(db, REPO_MIGRATIONS, log)).applied).toEqual(JOURNAL_TAGS)
    await db.query("INSERT INTO customers (email, name) VALUES ('ada@example.com', 'Ada')")
    const before = await bookkeeping(db)
    await db.close()

    db = await PGlite.create({ dataDir })
    expect(await applyMigrations(db, REPO_MIGRATIONS, log)).toEqual({ applied: [], skipped: JOURNAL_TAGS.length })
    expect(await bookkeeping(db)).toEqual(before)
    const customers = await db.query<{ email: string }>('SELECT email FROM customers')
    expect(customers.rows).toEqual([{ email: 'ada@example.com' }])
  })
})

describe('failures', { timeout: PGLITE_TIMEOUT_MS }, () => {
  let db: PGlite
  let tmp: string
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-migrations-'))
    db = await PGlite.create()
  }, PGLITE_TIMEOUT_MS)
  afterAll(async () => {
    await db?.close()
    await rm(tmp, { recursive: true, force: true })
  })

  test('a broken file rolls back alone and names the file and the Postgres error', async () => {
    const dir = path.join(tmp, 'broken')
    const good = { tag: '0000_good', when: 1_000, sql: 'CREATE TABLE good (id integer PRIMARY KEY);' }
    await writeMigrationsDir(dir, [
      good,
      {
        tag: '0001_bad',
        when: 2_000,
        sql: 'CREATE TABLE half_done (id integer);\n--> statement-breakpoint\nINSERT INTO no_such_table VALUES (1);',
      },
    ])
    const { log } = captureLogs()

    const error = await expectMigrationError(applyMigrations(db, dir, log))
    expect(error.message).toContain(path.join(dir, '0001_bad.sql'))
    expect(error.message).toContain('statement 2 of 2')
    expect(error.message).toContain('relation "no_such_table" does not exist')
    expect(error.message).toContain('SQLSTATE 42P01')
    expect((error.cause as { code?: unknown }).code).toBe('42P01')

    expect(await relationExists(db, 'good')).toBe(true)
    expect(await relationExists(db, 'half_done')).toBe(false)
    expect((await bookkeeping(db)).map((r) => r.created_at)).toEqual([1_000])

    // After the fix, a rerun applies only the fixed file.
    await writeFile(path.join(dir, '0001_bad.sql'), 'CREATE TABLE half_done (id integer);')
    expect(await applyMigrations(db, dir, log)).toEqual({ applied: ['0001_bad'], skipped: 1 })
    expect((await bookkeeping(db)).map((r) => r.created_at)).toEqual([1_000, 2_000])
  })

  test('an entry older than the last applied one is skipped like drizzle does, with a warning', async () => {
    const dir = path.join(tmp, 'out-of-order')
    const late = { tag: '0001_late', when: 10_000, sql: 'CREATE TABLE late_t (id integer);' }
    await writeMigrationsDir(dir, [late])
    expect((await applyMigrations(db, dir, captureLogs().log)).applied).toEqual(['0001_late'])

    // A branch merged after 0001 was applied brings an entry with an older `when`.
    const merged = { tag: '0000_merged', when: 9_000, sql: 'CREATE TABLE merged_t (id integer);' }
    await writeMigrationsDir(dir, [merged, late])
    const { records, log } = captureLogs()
    expect(await applyMigrations(db, dir, log)).toEqual({ applied: [], skipped: 2 })
    expect(await relationExists(db, 'merged_t')).toBe(false)
    const warnings = records.filter((r) => r.level === 'warn')
    expect(warnings.map((r) => r.fields['file'])).toEqual([path.join(dir, '0000_merged.sql')])
  })

  test('a journal with no entries is fine', async () => {
    const dir = path.join(tmp, 'empty')
    await writeMigrationsDir(dir, [])
    expect(await applyMigrations(db, dir, captureLogs().log)).toEqual({ applied: [], skipped: 0 })
  })

  test('a missing folder is ERR_MIGRATION', async () => {
    const missing = path.join(tmp, 'does-not-exist')
    const error = await expectMigrationError(applyMigrations(db, missing, captureLogs().log))
    expect(error.message).toContain(missing)
    expect((error.cause as { code?: unknown }).code).toBe('ENOENT')
  })

  test('a folder without meta/_journal.json is ERR_MIGRATION', async () => {
    const dir = path.join(tmp, 'no-journal')
    await mkdir(dir)
    await writeFile(path.join(dir, '0000_x.sql'), 'SELECT 1;')
    const error = await expectMigrationError(applyMigrations(db, dir, captureLogs().log))
    expect(error.message).toContain(path.join(dir, 'meta', '_journal.json'))
  })

  test('a journal entry without its .sql file is ERR_MIGRATION and applies nothing', async () => {
    const dir = path.join(tmp, 'missing-sql')
    await writeMigrationsDir(dir, [{ tag: '0000_here', when: 5_000, sql: 'CREATE TABLE here_t (id integer);' }])
    await rm(path.join(dir, '0000_here.sql'))
    const error = await expectMigrationError(applyMigrations(db, dir, captureLogs().log))
    expect(error.message).toContain(path.join(dir, '0000_here.sql'))
    expect(await relationExists(db, 'here_t')).toBe(false)
  })
})
