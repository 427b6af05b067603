// Applies drizzle-kit output (meta/_journal.json + NNNN_tag.sql) to a database (PGlite, in process or in a thread) before clients use it.
// Bookkeeping is drizzle-orm's own, so `drizzle-kit migrate` or drizzle's migrator later sees these files as applied.
import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import type { SqlDb, SqlRunner } from '../engine/sql-db.ts'
import { DevServerError } from '../errors.ts'
import { extensionHint } from '../engine/extensions.ts'
import type { Logger } from '../log.ts'
import { reportSlowStep, type ProgressOptions } from './progress.ts'

/**
 * drizzle-orm's defaults (pg-core dialect `migrate()`, 0.45): the same schema, table, DDL and separator, or
 * drizzle would not recognise what we recorded.
 */
const Drizzle = {
  table: '"drizzle"."__drizzle_migrations"',
  createBookkeeping: `
    CREATE SCHEMA IF NOT EXISTS "drizzle";
    CREATE TABLE IF NOT EXISTS "drizzle"."__drizzle_migrations" (
      id SERIAL PRIMARY KEY,
      hash text NOT NULL,
      created_at bigint
    );`,
  breakpoint: '--> statement-breakpoint',
} as const

interface Migration {
  tag: string
  /** Path shown in logs and errors: migrationsDir as given, joined with `${tag}.sql`. */
  file: string
  /** The journal entry's `when` (ms); drizzle stores it as created_at and compares only this, never hashes. */
  when: number
  hash: string
  statements: string[]
}

export interface MigrationResult {
  /** Tags (`0000_init`) applied by this call, in journal order. */
  applied: string[]
  /** Journal entries not applied because they are not newer than the last recorded migration. */
  skipped: number
}

/**
 * Applies every journal entry newer than the last recorded one. Call it before the server listens: PGlite's
 * `runExclusive` does not hold the transaction lock. Throws DevServerError('ERR_MIGRATION').
 */
export async function applyMigrations(
  db: SqlDb,
  migrationsDir: string,
  log: Logger,
  progress: ProgressOptions = {},
): Promise<MigrationResult> {
  const started = performance.now()
  const migrations = await readMigrations(migrationsDir)
  try {
    await db.exec(Drizzle.createBookkeeping)
  } catch (error) {
    throw new DevServerError('ERR_MIGRATION', `cannot create ${Drizzle.table}: ${describeDbError(error)}`, {
      cause: error,
    })
  }
  const recorded = await readRecorded(db)

  const applied: string[] = []
  for (const [index, migration] of migrations.entries()) {
    // drizzle's rule, kept exactly: pending iff newer than the last created_at read before applying anything.
    if (recorded.lastCreatedAt !== undefined && !(recorded.lastCreatedAt < migration.when)) {
      if (!recorded.hashes.has(migration.hash)) {
        // drizzle skips these silently; an out-of-order merge or an edited applied file would go unnoticed.
        log.warn('migration skipped: not newer than the last applied one, and its hash is not recorded', {
          file: migration.file,
        })
      }
      continue
    }
    const step = `applying migration ${migration.file} (${index + 1} of ${migrations.length})`
    await reportSlowStep(log, step, () => applyOne(db, migration, log), progress)
    applied.push(migration.tag)
  }
  const skipped = migrations.length - applied.length
  log.info('migrations done', { dir: migrationsDir, applied: applied.length, skipped, ms: elapsed(started) })
  return { applied, skipped }
}

/*
 * One transaction per file, holding its statements and its bookkeeping row. drizzle wraps all pending files in one
 * transaction instead; per file, a broken 0001 leaves 0000 applied and recorded, which is the state a developer gets
 * by running `drizzle-kit migrate` after each `generate`, and on restart only the fixed file runs again. Either way a
 * file is never half applied, and its row exists exactly when its statements committed.
 */
async function applyOne(db: SqlDb, migration: Migration, log: Logger): Promise<void> {
  const started = performance.now()
  let step = 0
  try {
    await db.transaction(async (tx) => {
      for (const statement of migration.statements) {
        step += 1
        // exec (simple query protocol), like drizzle-kit migrate over node-postgres; drizzle's PGlite migrator uses
        // the extended protocol, which would reject a chunk holding two statements.
        await tx.exec(statement)
      }
      step += 1
      await tx.query(`INSERT INTO ${Drizzle.table} ("hash", "created_at") VALUES ($1, $2)`, [
        migration.hash,
        migration.when,
      ])
    })
  } catch (error) {
    const where =
      step > migration.statements.length
        ? `while recording it in ${Drizzle.table}`
        : `at statement ${step} of ${migration.statements.length}`
    const message = `migration ${migration.file} failed ${where}: ${describeDbError(error)}${extensionHint(error, migration.statements[step - 1])}`
    throw new DevServerError('ERR_MIGRATION', message, { cause: error })
  }
  log.info('migration applied', { file: migration.file, ms: elapsed(started) })
}

async function readRecorded(db: SqlRunner): Promise<{ lastCreatedAt: number | undefined; hashes: Set<string> }> {
  try {
    // drizzle's query: `order by created_at desc` puts NULLs first, and Number(null) is 0, so a row with a NULL
    // created_at makes every file pending. Mirrored, so both tools always agree on what is pending.
    const last = await db.query<{ created_at: unknown }>(
      `SELECT created_at FROM ${Drizzle.table} ORDER BY created_at DESC LIMIT 1`,
    )
    const all = await db.query<{ hash: string }>(`SELECT hash FROM ${Drizzle.table}`)
    const row = last.rows[0]
    return { lastCreatedAt: row ? Number(row.created_at) : undefined, hashes: new Set(all.rows.map((r) => r.hash)) }
  } catch (error) {
    throw new DevServerError('ERR_MIGRATION', `cannot read ${Drizzle.table}: ${describeDbError(error)}`, {
      cause: error,
    })
  }
}

/** What identifies a migrations folder's content: each file's tag, time and hash, in journal order. ERR_MIGRATION if unreadable. */
export async function migrationsFingerprint(dir: string): Promise<string> {
  return (await readMigrations(dir)).map((m) => `${m.tag} ${m.when} ${m.hash}`).join('\n')
}

async function readMigrations(dir: string): Promise<Migration[]> {
  let isDirectory: boolean
  try {
    isDirectory = (await stat(dir)).isDirectory()
  } catch (error) {
    throw new DevServerError('ERR_MIGRATION', `migrations folder ${dir} is not readable: ${describeFsError(error)}`, {
      cause: error,
    })
  }
  if (!isDirectory) throw new DevServerError('ERR_MIGRATION', `migrations folder ${dir} is not a directory`)

  const journalPath = path.join(dir, 'meta', '_journal.json')
  let journalText: string
  try {
    journalText = await readFile(journalPath, 'utf8')
  } catch (error) {
    const hint = `is ${dir} the "out" folder of drizzle-kit generate?`
    throw new DevServerError(
      'ERR_MIGRATION',
      `cannot read journal ${journalPath} (${hint}): ${describeFsError(error)}`,
      { cause: error },
    )
  }
  let journal: unknown
  try {
    journal = JSON.parse(journalText)
  } catch (error) {
    throw new DevServerError('ERR_MIGRATION', `journal ${journalPath} is not valid JSON`, { cause: error })
  }

  const migrations: Migration[] = []
  for (const entry of journalEntries(journal, journalPath)) {
    const file = path.join(dir, `${entry.tag}.sql`)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (error) {
      const message = `journal ${journalPath} lists ${entry.tag}, but ${file} is not readable: ${describeFsError(error)}`
      throw new DevServerError('ERR_MIGRATION', message, { cause: error })
    }
    // drizzle hashes the decoded string (readFileSync().toString()), not the raw bytes; the two differ for a file
    // that is not valid UTF-8, so hash exactly what drizzle hashes.
    const hash = createHash('sha256').update(text).digest('hex')
    migrations.push({ tag: entry.tag, file, when: entry.when, hash, statements: text.split(Drizzle.breakpoint) })
  }
  return migrations
}

function journalEntries(journal: unknown, journalPath: string): Array<{ tag: string; when: number }> {
  const entries = (journal as { entries?: unknown } | null)?.entries
  if (!Array.isArray(entries)) {
    throw new DevServerError('ERR_MIGRATION', `journal ${journalPath} has no "entries" array`)
  }
  return entries.map((entry: unknown, i) => {
    const { tag, when } = (entry ?? {}) as { tag?: unknown; when?: unknown }
    if (typeof tag !== 'string' || typeof when !== 'number' || !Number.isFinite(when)) {
      const message = `journal ${journalPath}: entry ${i} needs a string "tag" and a numeric "when"`
      throw new DevServerError('ERR_MIGRATION', message)
    }
    return { tag, when }
  })
}

/** Postgres message plus SQLSTATE when the error came from the server (PGlite's DatabaseError carries `code`). */
function describeDbError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? `${error.message} (SQLSTATE ${code})` : error.message
}

function describeFsError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as NodeJS.ErrnoException).code
  return typeof code === 'string' ? code : error.message
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started)
}
