// Resetting a database in place, in milliseconds: when its schema is still the migrated one, emptying its tables
// and putting back the rows and sequence positions the migrated template has is the same as a fresh copy. Anything
// else (a table created or altered, a function replaced) is seen by the schema fingerprint, and the caller then
// swaps in a fresh copy instead.

import { createHash } from 'node:crypto'
import type { SqlRunner } from '../engine/sql-db.ts'

/** What a database at the migrated state holds, to compare against and to restore. */
export interface Baseline {
  fingerprint: string
  /** Every user table, qualified and quoted, to empty. */
  tables: string[]
  /** The tables that have rows in the template, with those rows (binary COPY). */
  rows: Array<{ table: string; data: Blob }>
  sequences: Array<{ sequence: string; lastValue: string; isCalled: boolean }>
}

const NOT_TEMP = `n.nspname not like 'pg\\_temp\\_%' and n.nspname not like 'pg\\_toast\\_temp\\_%'`

/**
 * A cheap fingerprint of the user-made catalog rows a migration or a test's DDL would change (relations and their
 * columns, defaults, constraints, indexes, functions, types, schemas, triggers, enum values, extensions, rules,
 * policies): how many there are and the transaction ids that wrote them. Any DDL writes catalog rows with a new
 * transaction id; DELETE, COPY and setval write none. Temporary tables count too (a reset with one open makes a
 * fresh copy). Should some change slip past it (a rename), the reset itself fails and a fresh copy is made.
 */
/** [catalog, its key column]: rows with a key of 16384 or more (FirstNormalObjectId) are made by users, not initdb. */
const USER_CATALOG_ROWS: ReadonlyArray<[string, string]> = [
  ['pg_class', 'oid'],
  ['pg_attribute', 'attrelid'],
  ['pg_attrdef', 'oid'],
  ['pg_constraint', 'oid'],
  ['pg_index', 'indexrelid'],
  ['pg_proc', 'oid'],
  ['pg_type', 'oid'],
  ['pg_namespace', 'oid'],
  ['pg_trigger', 'oid'],
  ['pg_enum', 'oid'],
  ['pg_extension', 'oid'],
  ['pg_rewrite', 'oid'],
  ['pg_policy', 'oid'],
]

const FINGERPRINT_SQL = `
select count(*)::text || ':' || coalesce(sum(x::text::int8), 0)::text || ':' || coalesce(max(x::text::int8), 0)::text as fingerprint from (
  ${USER_CATALOG_ROWS.map(([catalog, key]) => `select xmin as x from pg_catalog.${catalog} where ${key} >= 16384`).join('\n  union all ')}
) s`

const TABLES_SQL = `
select pg_catalog.format('%I.%I', n.nspname, c.relname) as name, c.relkind
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.relkind in ('r', 'p', 'S') and c.relpersistence <> 't' and c.oid >= 16384 and ${NOT_TEMP}
  order by 1`

export async function fingerprint(db: SqlRunner): Promise<string> {
  const result = await db.query<{ fingerprint: string }>(FINGERPRINT_SQL)
  return result.rows[0]!.fingerprint
}

/** Read the baseline from a database at the migrated state (it is only read). */
export async function readBaseline(db: SqlRunner): Promise<Baseline> {
  const relations = (await db.query<{ name: string; relkind: string }>(TABLES_SQL)).rows
  const baseline: Baseline = { fingerprint: await fingerprint(db), tables: [], rows: [], sequences: [] }
  for (const { name, relkind } of relations) {
    if (relkind === 'S') {
      const state = (
        await db.query<{ last_value: string; is_called: boolean }>(`select last_value::text, is_called from ${name}`)
      ).rows[0]!
      baseline.sequences.push({ sequence: name, lastValue: state.last_value, isCalled: state.is_called })
      continue
    }
    baseline.tables.push(name)
    if (relkind !== 'r') continue
    const hasRows = (await db.query<{ has: boolean }>(`select exists (select from only ${name}) as has`)).rows[0]!.has
    if (!hasRows) continue
    const copied = await db.query(`copy ${name} to '/dev/blob' with (format binary)`)
    if (copied.blob) baseline.rows.push({ table: name, data: copied.blob })
  }
  return baseline
}

/** How a kept baseline was read: a changed query here, or the version bumped for a change in readBaseline, makes kept ones stale. */
const KEPT_FORMAT = createHash('sha256').update(`1\0${FINGERPRINT_SQL}\0${TABLES_SQL}`).digest('hex').slice(0, 16)

/** The baseline as text, to keep beside the template it was read from (the rows in base64). */
export async function baselineText(baseline: Baseline): Promise<string> {
  const rows = await Promise.all(
    baseline.rows.map(async ({ table, data }) => ({
      table,
      data: Buffer.from(await data.arrayBuffer()).toString('base64'),
    })),
  )
  return JSON.stringify({ format: KEPT_FORMAT, ...baseline, rows })
}

/** A baseline from baselineText's text; null if it was kept by another reading of it. */
export function parseBaseline(text: string): Baseline | null {
  const kept = JSON.parse(text) as Omit<Baseline, 'rows'> & {
    format?: string
    rows: Array<{ table: string; data: string }>
  }
  if (kept.format !== KEPT_FORMAT) return null
  if (
    typeof kept.fingerprint !== 'string' ||
    !Array.isArray(kept.tables) ||
    !Array.isArray(kept.rows) ||
    !Array.isArray(kept.sequences)
  ) {
    throw new Error('not a baseline')
  }
  const rows = kept.rows.map(({ table, data }) => ({ table, data: new Blob([Buffer.from(data, 'base64')]) }))
  return { fingerprint: kept.fingerprint, tables: kept.tables, rows, sequences: kept.sequences }
}

/**
 * Put `db` back to `baseline` in one transaction, if its schema is still the baseline's: true if done, false if
 * the schema changed (the caller makes a fresh copy instead). Temporary tables are dropped too.
 */
export async function resetInPlace(db: SqlRunner, baseline: Baseline): Promise<boolean> {
  if ((await fingerprint(db)) !== baseline.fingerprint) return false
  // Triggers and foreign-key checks stay quiet while the template's rows go back (replica role), as in a restore.
  await db.exec('begin; set local session_replication_role = replica')
  try {
    // DELETE, not TRUNCATE: TRUNCATE writes new files and catalog rows for every table, DELETE of a few rows costs
    // next to nothing, and sequences are set back below anyway.
    if (baseline.tables.length > 0) await db.exec(baseline.tables.map((table) => `delete from ${table}`).join('; '))
    for (const { table, data } of baseline.rows)
      await db.query(`copy ${table} from '/dev/blob' with (format binary)`, [], { blob: data })
    for (const { sequence, lastValue, isCalled } of baseline.sequences)
      await db.query('select pg_catalog.setval($1::regclass, $2::bigint, $3)', [sequence, lastValue, isCalled])
    await db.exec('commit')
  } catch (error) {
    await db.exec('rollback')
    throw error
  }
  await db.exec('discard temp')
  return true
}
