// How the databases' engines are made: each opened with its extension bundles, in a worker thread of its own or in
// the server's thread; a new one built at the migrated state, from the migrated template or by initdb and the
// migrations, and in memory loaded one ahead (the spare). Also read here, once: the baseline a reset puts back.

import type { PGlite } from '@electric-sql/pglite'
import { mkdir } from 'node:fs/promises'
import type { Logger } from '../log.ts'
import { applyMigrations } from './migrate.ts'
import { holdsDatabase, seedDataDir, templateBlob, type Template } from './template.ts'
import { readBaseline, type Baseline } from './baseline.ts'
import { DbThread } from './engine/thread.ts'
import { openPGlite } from './engine/pglite.ts'
import { installedNotLoaded, loadExtensions, type LoadedExtensions } from './extensions.ts'

/** An open database: in a worker thread of its own, or (threads: false) in the server's thread. */
export type Instance = PGlite | DbThread

/**
 * Where a database's files come from as it opens: its data dir, a copy of its files (into a new data dir, or in
 * memory), or (null) a new initdb.
 */
type Where = { dataDir: string; loadDataDir?: Blob } | { loadDataDir: Blob } | null

/** The database of a new cluster (initdb's, and so the migrated template's). */
const CLUSTER_DATABASE = 'postgres'

export interface BuildOptions {
  /** The migrated template new databases copy (null: each one runs initdb and the migrations), looked up when first needed. */
  template: () => Promise<Template | null>
  migrations: string | null
  /** Postgres start parameters for every database. */
  startParams: string[]
  /** Extensions every database loads. */
  extensions: LoadedExtensions
  /**
   * false: every database runs in the server's thread, where a running statement holds up everything (and cannot be
   * stopped). Default true: each in a worker thread of its own.
   */
  threads?: boolean
  log: Logger
}

export class DatabaseBuilder {
  readonly #options: BuildOptions
  /** In memory with a template: the next new database, loaded ahead so that creating one takes no wait; null if it failed. */
  #spare: { thread: boolean; db: Promise<Instance | null> } | null = null
  /** The migrated state's fingerprint, rows and sequences, read once from a fresh database (see baseline.ts). */
  #baseline: Promise<Baseline | null> | null = null
  /** Bundles a database loads beyond those every database loads (a CREATE EXTENSION asked for them), by name. */
  readonly #extraExtensions = new Map<string, readonly string[]>()
  /** The server is stopping: no spare is loaded any more. */
  #stopped = false

  constructor(options: BuildOptions) {
    this.#options = options
  }

  /** Whether databases run in worker threads. */
  get threads(): boolean {
    return this.#options.threads !== false
  }

  /** The bundles database `name` loads. */
  extensionsOf(name: string): readonly string[] {
    const extra = this.#extraExtensions.get(name)
    return extra ? [...this.#options.extensions.names, ...extra] : this.#options.extensions.names
  }

  /** Database `name` loads `bundles` too from now on, each time it opens. */
  addExtensions(name: string, bundles: readonly string[]): void {
    this.#extraExtensions.set(name, [...(this.#extraExtensions.get(name) ?? []), ...bundles])
  }

  /**
   * Open database `name` at `where` with its bundles, in a worker thread or in this one. Each database is a cluster
   * of its own, whose database carries the name clients know it by (current_database(), information_schema and
   * pg_database agree): `inside` is the name its files give it (a template's or a new initdb's `postgres`, another
   * database's when copied from it), which is changed to `name` now; '' keeps it.
   */
  async open(name: string, where: Where, thread: boolean, inside = name): Promise<Instance> {
    const { startParams } = this.#options
    const names = this.extensionsOf(name)
    const database = inside || CLUSTER_DATABASE
    const db = thread
      ? await DbThread.create({ ...where, startParams, extensions: [...names], database })
      : await openPGlite({ ...where, startParams, extensions: (await loadExtensions(names)).extensions, database })
    if (name !== '' && name !== database) await renameDatabase(db, database, name)
    return db
  }

  /** Resolves once the spare (the next new in-memory database) has loaded, or at once if none is loading. */
  async spareLoaded(): Promise<void> {
    await this.#spare?.db
  }

  /** The server is stopping: no spare is loaded from now on. */
  stop(): void {
    this.#stopped = true
  }

  /** The spare, if one loaded and nobody took it; the caller closes it. */
  async takeSpare(): Promise<Instance | null> {
    const spare = this.#spare
    this.#spare = null
    return spare ? await spare.db : null
  }

  /** The baseline (read when the first in-memory database was made, or now from a fresh copy); null if none can be read. */
  baseline(): Promise<Baseline | null> {
    this.#baseline ??= (async () => {
      const db = await this.build(null, false)
      try {
        return await readBaseline(db)
      } finally {
        await db.close()
      }
    })().catch((error: unknown) => this.#noBaseline(error))
    return this.#baseline
  }

  #noBaseline(error: unknown): null {
    this.#options.log.warn('cannot reset databases in place; each reset makes a fresh copy', { error })
    return null
  }

  /**
   * A new in-memory database at the migrated state, in a thread or not: the spare if one of that kind is ready, and
   * the next spare starts loading.
   */
  async fresh(thread: boolean, name: string): Promise<Instance> {
    if (!(await this.#options.template())) return this.build(null, thread, name)
    // Taken before the next await: two databases created at once must never get the same spare.
    const spare = this.#spare?.thread === thread ? this.#spare : null
    if (spare) this.#spare = null
    const db = (await spare?.db) ?? (await this.build(null, thread))
    // Still at the migrated state and not yet anyone's: the moment to read what a reset puts back.
    this.#baseline ??= readBaseline(db).catch((error: unknown) => this.#noBaseline(error))
    await this.#baseline
    if (name !== CLUSTER_DATABASE) await renameDatabase(db, CLUSTER_DATABASE, name)
    if (this.#spare === null && !this.#stopped) {
      // A spare that fails to load is not an error yet: the next database is built without it.
      const db = this.build(null, this.threads).catch((error: unknown) => {
        this.#options.log.warn('a database loaded ahead failed; the next one is built when asked for', { error })
        return null
      })
      this.#spare = { thread: this.threads, db }
    }
    return db
  }

  /**
   * Open a database in `dir` (null: memory) at the migrated state, in a worker thread or in this one: from the
   * template, or initdb and the migrations.
   */
  async build(dir: string | null, thread: boolean, name = ''): Promise<Instance> {
    const { migrations } = this.#options
    const template = await this.#options.template()
    // New files (the template's, or initdb's) name their database postgres.
    const open = (where: Where, inside = CLUSTER_DATABASE): Promise<Instance> => this.open(name, where, thread, name === '' ? '' : inside)
    if (dir !== null) {
      await mkdir(dir, { recursive: true })
      const fresh = !(await holdsDatabase(dir))
      if (fresh && template) await seedDataDir(dir, template)
      let db = fresh ? await open({ dataDir: dir }) : await this.#openKept(name, dir, thread)
      // Kept from an earlier run, it may have had CREATE EXTENSION run on it: its bundles are loaded.
      const missing = fresh ? [] : await installedNotLoaded(db, this.extensionsOf(name))
      if (missing.length > 0) {
        this.addExtensions(name, missing)
        await db.close()
        db = await open({ dataDir: dir }, name)
      }
      // Kept from an earlier run, it may lack migrations added since, as the main database would.
      return this.#migrated(db, (!fresh || !template) && migrations !== null)
    }
    if (template) return open({ loadDataDir: await templateBlob(template) })
    return this.#migrated(await open(null), migrations !== null)
  }

  /**
   * A data dir kept from an earlier run, whose database carries its name; or `postgres`, if an older pglite-dev-db
   * made it (PGlite cannot start on a database its files lack, and says only that it failed): renamed now.
   */
  async #openKept(name: string, dir: string, thread: boolean): Promise<Instance> {
    const inside = name || CLUSTER_DATABASE
    try {
      return await this.open(name, { dataDir: dir }, thread, inside)
    } catch (error) {
      if (inside === CLUSTER_DATABASE) throw error
      try {
        return await this.open(name, { dataDir: dir }, thread, CLUSTER_DATABASE)
      } catch {
        throw error
      }
    }
  }

  /** `db` with the migrations applied (when `apply`); closed if they fail, so nothing keeps its thread or data dir. */
  async #migrated(db: Instance, apply: boolean): Promise<Instance> {
    if (!apply) return db
    try {
      await applyMigrations(db, this.#options.migrations!, this.#options.log)
      return db
    } catch (error) {
      await db.close().catch((closeError: unknown) => this.#options.log.warn('a database whose migrations failed did not close cleanly', { error: closeError }))
      throw error
    }
  }
}

/**
 * Give the database `from` of `db`'s cluster the name `to`. ALTER DATABASE ... RENAME refuses the database one is
 * connected to, and PGlite's one backend always is; what it would change is this row (a database's files are
 * named by its oid), so the row is changed directly. A database already named `to` (template1, when a client names
 * its database so) gives its name up first. A copy of a template is no template, as CREATE DATABASE makes it.
 */
export async function renameDatabase(db: Instance, from: string, to: string): Promise<void> {
  const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`
  await db.exec(
    `UPDATE pg_catalog.pg_database SET datname = ${literal('pglite_dev_db_')} || datname WHERE datname = ${literal(to)} AND datname <> ${literal(from)}; ` +
      `UPDATE pg_catalog.pg_database SET datname = ${literal(to)}, datistemplate = false WHERE datname = ${literal(from)}`,
  )
}
