// Postgres extensions PGlite ships as bundles: a name from --extensions becomes the extension object PGlite.create
// loads. A bundle must be loaded at every start of a database that uses it (the served one, the template build, a
// snapshot load), or CREATE EXTENSION says 0A000 and a table using its types says 58P01.

import type { Extension, Extensions } from '@electric-sql/pglite'
import type { SqlRunner } from './sql-db.ts'
import { DevServerError } from '../errors.ts'

interface Bundle {
  /** Module specifier to import. */
  module: string
  /** The export holding the extension object. */
  exportName: string
  /** Extensions its CREATE EXTENSION needs first (CASCADE creates them, but their bundles must be loaded too). */
  requires?: readonly string[]
}

const contrib = (name: string, exportName = name): Bundle => ({
  module: `@electric-sql/pglite/contrib/${exportName}`,
  exportName,
})
const separate = (pkg: string, exportName: string): Bundle => ({ module: `@electric-sql/pglite-${pkg}`, exportName })

/**
 * Keyed by the name CREATE EXTENSION takes. Contrib modules come inside @electric-sql/pglite; pgvector is its own
 * package (a dependency here); the others are peers of @electric-sql/pglite-socket, which npm installs with it.
 * auto_explain is left out: it has no CREATE EXTENSION, and PGlite's bundle of it is not checked here.
 */
const BUNDLES: Readonly<Record<string, Bundle>> = {
  vector: separate('pgvector', 'vector'),
  ...Object.fromEntries(
    [
      'amcheck',
      'bloom',
      'btree_gin',
      'btree_gist',
      'citext',
      'cube',
      'dict_int',
      'dict_xsyn',
      'file_fdw',
      'fuzzystrmatch',
      'hstore',
      'intarray',
      'isn',
      'lo',
      'ltree',
      'moddatetime',
      'pageinspect',
      'pg_buffercache',
      'pg_freespacemap',
      'pg_stat_statements',
      'pg_surgery',
      'pg_trgm',
      'pg_visibility',
      'pg_walinspect',
      'pgcrypto',
      'seg',
      'tablefunc',
      'tcn',
      'tsm_system_rows',
      'tsm_system_time',
      'unaccent',
    ].map((name) => [name, contrib(name)]),
  ),
  'uuid-ossp': contrib('uuid-ossp', 'uuid_ossp'),
  earthdistance: { ...contrib('earthdistance'), requires: ['cube'] },
  age: separate('age', 'age'),
  pg_hashids: separate('pg_hashids', 'pg_hashids'),
  pg_ivm: separate('pg_ivm', 'pg_ivm'),
  pg_textsearch: separate('pg_textsearch', 'pg_textsearch'),
  pg_uuidv7: separate('pg_uuidv7', 'pg_uuidv7'),
  pgtap: separate('pgtap', 'pgtap'),
}

/** Other spellings people use for the same extension. */
const ALIASES: Readonly<Record<string, string>> = { pgvector: 'vector', uuid_ossp: 'uuid-ossp' }

export const AVAILABLE_EXTENSIONS: readonly string[] = Object.keys(BUNDLES).sort()

export interface LoadedExtensions {
  /** Canonical names, sorted, with what they require: part of the template key. */
  names: readonly string[]
  /** For PGlite.create({ extensions }). */
  extensions: Extensions
}

export const NO_EXTENSIONS: LoadedExtensions = Object.freeze({ names: [], extensions: {} })

/** The canonical name, or null when PGlite ships no such extension. */
export function canonicalExtension(name: string): string | null {
  const lower = name.trim().toLowerCase()
  const canonical = ALIASES[lower] ?? lower
  return Object.hasOwn(BUNDLES, canonical) ? canonical : null
}

/** Canonical names (sorted, with what they require) for `names`; ERR_CONFIG listing the available ones on an unknown name. */
export function resolveExtensionNames(names: readonly string[]): string[] {
  const resolved = new Set<string>()
  for (const name of names) {
    const canonical = canonicalExtension(name)
    if (canonical === null) {
      throw new DevServerError(
        'ERR_CONFIG',
        `unknown extension '${name}'; PGlite ships: ${AVAILABLE_EXTENSIONS.join(', ')}`,
      )
    }
    for (const required of BUNDLES[canonical]!.requires ?? []) resolved.add(required)
    resolved.add(canonical)
  }
  return [...resolved].sort()
}

/** Imports the bundles for `names`. ERR_CONFIG on an unknown name or a package that is not installed. */
export async function loadExtensions(names: readonly string[]): Promise<LoadedExtensions> {
  const resolved = resolveExtensionNames(names)
  if (resolved.length === 0) return NO_EXTENSIONS
  const extensions: Extensions = {}
  for (const name of resolved) {
    const bundle = BUNDLES[name]!
    let module: Record<string, unknown>
    try {
      module = (await import(bundle.module)) as Record<string, unknown>
    } catch (error) {
      throw new DevServerError(
        'ERR_CONFIG',
        `extension '${name}' needs the package ${bundle.module}, which cannot be loaded (npm install it): ${(error as Error).message}`,
        { cause: error },
      )
    }
    const extension = module[bundle.exportName] as Extension | undefined
    if (extension === undefined)
      throw new DevServerError(
        'ERR_CONFIG',
        `extension '${name}': ${bundle.module} has no export '${bundle.exportName}'`,
      )
    // PGlite keys the bundle by this name; the SQL name ("uuid-ossp") is not a valid identifier for every key use.
    extensions[bundle.exportName] = extension
  }
  return { names: resolved, extensions }
}

/**
 * The bundles a database needs that `loaded` lacks: a database that had CREATE EXTENSION run on it (a data dir, a
 * snapshot) needs that bundle at every start, or the first query touching the extension's types or functions fails
 * with 58P01. Its opener reopens it with them.
 */
export async function installedNotLoaded(db: SqlRunner, loaded: readonly string[]): Promise<string[]> {
  const { rows } = await db.query<{ extname: string }>('SELECT extname FROM pg_catalog.pg_extension ORDER BY extname')
  return rows.map((row) => row.extname).filter((name) => Object.hasOwn(BUNDLES, name) && !loaded.includes(name))
}

/**
 * The bundles to load for CREATE EXTENSION of `sqlName` besides `loaded`: the extension and what it requires; null
 * when PGlite does not ship it or it is loaded already.
 */
export function bundlesFor(sqlName: string, loaded: readonly string[]): string[] | null {
  const canonical = canonicalExtension(sqlName)
  if (canonical === null || loaded.includes(canonical)) return null
  return resolveExtensionNames([canonical]).filter((name) => !loaded.includes(name))
}

/** `CREATE EXTENSION [IF NOT EXISTS] name` or `"name"`; the schema-qualified forms are not extension names. */
const CREATE_EXTENSION = /\bcreate\s+extension\s+(?:if\s+not\s+exists\s+)?(?:"([^"]+)"|([A-Za-z_][\w-]*))/gi

/**
 * What to tell a person whose migration statement failed because a bundle is not loaded. 0A000 on a CREATE
 * EXTENSION ("extension is not available") names the extensions the statement creates; 58P01 (undefined_file) is a
 * library PGlite could not open, which for a bundled extension means it was not loaded. Empty when neither applies.
 */
export function extensionHint(error: unknown, statement: string | undefined): string {
  const code = (error as { code?: unknown } | null)?.code
  if (code === '0A000' && statement !== undefined) {
    const names = [...statement.matchAll(CREATE_EXTENSION)].map((match) => (match[1] ?? match[2]!).toLowerCase())
    if (names.length === 0) return ''
    const unknown = names.filter((name) => canonicalExtension(name) === null)
    if (unknown.length > 0)
      return `; PGlite does not ship ${unknown.join(', ')} (it ships: ${AVAILABLE_EXTENSIONS.join(', ')})`
    return `; the extension must be loaded at start: add --extensions ${resolveExtensionNames(names).join(',')}`
  }
  if (code === '58P01')
    return '; a library of an extension is not loaded: add --extensions with every extension the database uses'
  return ''
}
