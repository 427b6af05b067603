// The databases of one pglite-dev-db server, each its own PGlite: the main one ("postgres", the data dir or memory)
// and any other a client names, created on first use from the migrated template. With a data dir they are kept
// beside it, in <data dir>-databases/<name>; in memory they go with the server. Work on one name is serialized.
// Each database runs in a worker thread of its own (engine/thread.ts): the server's thread never runs Postgres, so
// it serves sockets, timers and signals while any statement runs, and can stop one.

import { PGlite } from '@electric-sql/pglite'
import { mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.ts'
import { applyMigrations } from './migrate.ts'
import { holdsDatabase, seedDataDir, templateBlob, type Template } from './template.ts'
import type { DatabaseCatalog } from '../socket/session/databases.ts'
import { LOCK_FILE } from './data-dir-lock.ts'
import { readBaseline, resetInPlace, type Baseline } from './baseline.ts'
import { DbThread } from './engine/thread.ts'
import { openPGlite } from './engine/pglite.ts'
import { bundlesFor, installedNotLoaded, loadExtensions, type LoadedExtensions } from './extensions.ts'

export const MAIN_DATABASE = 'postgres'

/** A database that died is reopened: tried again this often, and given up on after this long. */
const RECOVERY_RETRY_MS = 2_000
const RECOVERY_GIVE_UP_MS = 10 * 60_000

export interface DatabasesOptions {
  /** The main database, already open. */
  main: Instance
  /** The main database's data dir; null: every database lives in memory. */
  dataDir: string | null
  /** The migrated template new databases copy (null: each one runs initdb and the migrations), looked up when first needed. */
  template: () => Promise<Template | null>
  migrations: string | null
  /** Postgres start parameters for every database. */
  startParams: string[]
  /** Extensions every database loads. */
  extensions: LoadedExtensions
  /** The main database's, if it loads more (it uses them). */
  mainExtensions?: readonly string[]
  /**
   * false: every database runs in the server's thread, where a running statement holds up everything (and cannot be
   * stopped). Default true: each in a worker thread of its own.
   */
  threads?: boolean
  log: Logger
  /** A database that died was reopened as `db`: its session serves again from it. */
  onRecovered?: (dead: Instance, db: Instance) => void
  /** A database that died could not be reopened. */
  onLost?: (name: string, error: Error) => void
}

/** An open database: in a worker thread of its own, or (threads: false) in the server's thread. */
export type Instance = PGlite | DbThread

export class Databases implements DatabaseCatalog {
  readonly mainName = MAIN_DATABASE
  readonly #options: DatabasesOptions
  #main: Instance
  readonly #open = new Map<string, Instance>()
  /** The tail of the work queued on each name. */
  readonly #work = new Map<string, Promise<unknown>>()
  /** In memory with a template: the next new database, loaded ahead so that creating one takes no wait. */
  #spare: { thread: boolean; db: Promise<Instance> } | null = null
  /** The migrated state's fingerprint, rows and sequences, read once from a fresh database (see baseline.ts). */
  #baseline: Promise<Baseline | null> | null = null
  #closed = false
  /** Replaced in-memory databases still closing; close() waits for them. */
  readonly #closing = new Set<Promise<void>>()
  /** Bundles a database loads beyond those every database loads (a CREATE EXTENSION asked for them), by name. */
  readonly #extraExtensions = new Map<string, readonly string[]>()

  constructor(options: DatabasesOptions) {
    this.#options = options
    this.#main = options.main
    const mainExtra = (options.mainExtensions ?? []).filter((name) => !options.extensions.names.includes(name))
    if (mainExtra.length > 0) this.#extraExtensions.set(MAIN_DATABASE, mainExtra)
    this.#adopt(MAIN_DATABASE, options.main)
  }

  /**
   * CREATE EXTENSION `sqlName` in database `name`, whose bundle it does not load: the database is opened again with it
   * (from its data dir, or in memory from its files as they are now), and that instance returned; its session must
   * serve from it. Null when PGlite does not ship the extension or the database loads it already. The caller holds
   * the database's session at rest.
   */
  loadExtension(name: string, sqlName: string): Promise<Instance | null> {
    return this.#serialize(name, async () => {
      const current = this.#open.get(name)
      const bundles = bundlesFor(sqlName, this.#extensionsOf(name))
      if (!current || bundles === null) return null
      const started = performance.now()
      this.#extraExtensions.set(name, [...(this.#extraExtensions.get(name) ?? []), ...bundles])
      const dir = name === MAIN_DATABASE ? this.#options.dataDir : this.#dirFor(name)
      let db: Instance
      if (dir !== null) {
        await current.close()
        db = await this.#openWith(name, { dataDir: dir }, current instanceof DbThread)
      } else {
        const files = await current.dumpDataDir('none')
        db = await this.#openWith(name, { loadDataDir: files }, current instanceof DbThread)
        this.#closeLater(current, name)
      }
      this.#adopt(name, db)
      this.#options.log.info('extension loaded', { database: name, extensions: bundles.join(','), ms: Math.round(performance.now() - started) })
      return db
    })
  }

  /** The bundles database `name` loads. */
  #extensionsOf(name: string): readonly string[] {
    const extra = this.#extraExtensions.get(name)
    return extra ? [...this.#options.extensions.names, ...extra] : this.#options.extensions.names
  }

  /** Open database `name` at `where` with its bundles, in a worker thread or in this one. */
  async #openWith(name: string, where: { dataDir: string } | { loadDataDir: Blob } | null, thread: boolean): Promise<Instance> {
    const { startParams } = this.#options
    const names = this.#extensionsOf(name)
    if (thread) return DbThread.create({ ...where, startParams, extensions: [...names] })
    return openPGlite({ ...where, startParams, extensions: (await loadExtensions(names)).extensions })
  }

  get main(): Instance {
    return this.#main
  }

  /** Resolves once the spare (the next new in-memory database) has loaded, or at once if none is loading. */
  async spareLoaded(): Promise<void> {
    await this.#spare?.db.catch(() => {})
  }

  instance(name: string): Instance | null {
    return this.#open.get(name) ?? null
  }

  /** Whether `name` is open in a worker thread of its own. */
  inThread(name: string): boolean {
    return this.#open.get(name) instanceof DbThread
  }

  open(name: string): Promise<Instance> {
    return this.#serialize(name, async () => this.#open.get(name) ?? (await this.#openOrCreate(name, 'a client connected to it')).db)
  }

  async exists(name: string): Promise<boolean> {
    if (this.#open.has(name)) return true
    const dir = this.#dirFor(name)
    return dir !== null && (await holdsDatabase(dir))
  }

  create(name: string): Promise<boolean> {
    return this.#serialize(name, async () => {
      if (await this.exists(name)) return false
      await this.#openOrCreate(name, 'CREATE DATABASE')
      return true
    })
  }

  drop(name: string): Promise<boolean> {
    return this.#serialize(name, async () => {
      const existed = await this.exists(name)
      const db = this.#open.get(name)
      this.#open.delete(name)
      if (db && !db.closed) await db.close()
      const dir = this.#dirFor(name)
      if (dir) await rm(dir, { recursive: true, force: true })
      return existed
    })
  }

  /**
   * Back to the migrated state. In place (milliseconds) when the schema is still the migrated one: the same
   * instance is returned. Otherwise a fresh copy replaces it (about as long as creating a database).
   */
  reset(name: string): Promise<Instance> {
    return this.#serialize(name, async () => {
      const old = this.#open.get(name)
      const thread = old instanceof DbThread
      const baseline = old && !old.closed ? await this.#readBaseline() : null
      if (old && baseline) {
        try {
          if (await resetInPlace(old, baseline)) return old
        } catch (error) {
          this.#options.log.warn('could not reset the database in place; using a fresh copy', { database: name, error })
        }
      }
      const dir = name === MAIN_DATABASE ? this.#options.dataDir : this.#dirFor(name)
      let db: Instance
      if (dir === null) {
        db = await this.#fresh(thread)
        // Nothing of it needs to reach a disk: its clients move to the copy now, and it closes meanwhile.
        if (old && !old.closed) this.#closeLater(old, name)
      } else {
        // On disk the files are the database: close it, put the template's files in their place, open again.
        if (old && !old.closed) await old.close()
        await emptyDataDir(dir)
        db = await this.#build(dir, thread, name)
      }
      this.#adopt(name, db)
      return db
    })
  }

  /** The baseline (read when the first in-memory database was made, or now from a fresh copy); null if none can be read. */
  #readBaseline(): Promise<Baseline | null> {
    this.#baseline ??= (async () => {
      const db = await this.#build(null, false)
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
   * Close every database, the main one too, and the spare. A database in a thread that does not close within
   * `deadlineMs` is terminated (see DbThread.close); returns the names of those that did not close cleanly.
   */
  async close(deadlineMs?: number): Promise<string[]> {
    this.#closed = true
    await Promise.allSettled([...this.#work.values()])
    await Promise.all(this.#closing)
    const open: Array<[string, Instance]> = [...this.#open]
    const spare = this.#spare
    this.#spare = null
    const spareDb = spare ? await spare.db.catch(() => null) : null
    if (spareDb) open.push(['(spare)', spareDb])
    const unclean: string[] = []
    await Promise.all(
      open.map(async ([name, db]) => {
        if (db.closed) return
        try {
          await (db instanceof DbThread ? db.close(deadlineMs) : db.close())
        } catch (error) {
          unclean.push(name)
          this.#options.log.error('a database did not close cleanly', { database: name, error })
        }
      }),
    )
    return unclean
  }

  /** `db` is the database `name` from now on; should it die (in its thread), it is reopened. */
  #adopt(name: string, db: Instance): void {
    this.#open.set(name, db)
    if (name === MAIN_DATABASE) this.#main = db
    if (db instanceof DbThread) db.onDeath = (error) => this.#recover(name, db, error)
  }

  /**
   * The last resort, after PGlite died (a FATAL or PANIC, a full disk, a statement that could not be stopped and
   * whose thread was ended): its clients were told; the database is reopened from its data dir (every committed
   * transaction is there), or in memory from what its files still held (as after a crash) or, failing that, the
   * migrated state. While that fails (the disk is still full) it is tried again, for a while.
   */
  #recover(name: string, dead: DbThread, cause: Error): void {
    if (this.#closed) return
    const { log } = this.#options
    log.error('a database stopped unexpectedly; reopening it', { database: name, error: cause })
    const started = performance.now()
    void this.#serialize(name, async () => {
      if (this.#open.get(name) !== dead) return
      const rescued = this.#dirFor(name) === null || (name === MAIN_DATABASE && this.#options.dataDir === null) ? await dead.rescueFiles().catch(() => null) : null
      await dead.close(0).catch(() => {})
      for (let attempt = 1; !this.#closed; attempt++) {
        try {
          const db = await this.#reopen(name, rescued)
          this.#adopt(name, db)
          this.#options.onRecovered?.(dead, db)
          log.info('database reopened', { database: name, ms: Math.round(performance.now() - started), ...(rescued === null && this.#isInMemory(name) ? { lost: 'everything since the migrated state' } : {}) })
          return
        } catch (error) {
          if (performance.now() - started > RECOVERY_GIVE_UP_MS) {
            log.error('cannot reopen the database; giving up', { database: name, error })
            this.#options.onLost?.(name, error as Error)
            return
          }
          if (attempt === 1 || attempt % 15 === 0) log.error('cannot reopen the database yet; trying again every 2 s', { database: name, error })
          await new Promise((resolve) => setTimeout(resolve, RECOVERY_RETRY_MS))
        }
      }
    })
  }

  #isInMemory(name: string): boolean {
    return name === MAIN_DATABASE ? this.#options.dataDir === null : this.#dirFor(name) === null
  }

  async #reopen(name: string, rescued: Blob | null): Promise<Instance> {
    const dir = name === MAIN_DATABASE ? this.#options.dataDir : this.#dirFor(name)
    if (dir !== null) return this.#build(dir, this.#threads, name)
    if (rescued === null) return this.#build(null, this.#threads, name)
    return this.#openWith(name, { loadDataDir: rescued }, true)
  }

  #closeLater(db: Instance, name: string): void {
    const closing = db.close().then(
      () => {},
      (error: unknown) => this.#options.log.warn('a replaced database did not close cleanly', { database: name, error }),
    )
    this.#closing.add(closing)
    void closing.then(() => this.#closing.delete(closing))
  }

  /** `why`: what asked for it, named in the log line of a database created (so a stray `root` can be traced). */
  async #openOrCreate(name: string, why: string): Promise<{ db: Instance; created: boolean }> {
    if (this.#closed) throw new Error('the server is stopping')
    const started = performance.now()
    const thread = this.#threads
    const dir = this.#dirFor(name)
    let created: boolean
    let db: Instance
    if (dir === null) {
      db = await this.#fresh(thread)
      created = true
    } else {
      created = !(await holdsDatabase(dir))
      db = await this.#build(dir, thread, name)
    }
    this.#adopt(name, db)
    const ms = Math.round(performance.now() - started)
    this.#options.log.info(created ? 'database created' : 'database opened', { database: name, ...(created ? { why } : {}), ms, ...(thread ? { thread: true } : {}) })
    return { db, created }
  }

  /** Whether databases run in worker threads. */
  get #threads(): boolean {
    return this.#options.threads !== false
  }

  /**
   * A new in-memory database at the migrated state, in a thread or not: the spare if one of that kind is ready, and
   * the next spare starts loading.
   */
  async #fresh(thread: boolean): Promise<Instance> {
    if (!(await this.#options.template())) return this.#build(null, thread)
    // Taken before the next await: two databases created at once must never get the same spare.
    const spare = this.#spare?.thread === thread ? this.#spare : null
    if (spare) this.#spare = null
    const db = await (spare?.db ?? this.#build(null, thread))
    // Still at the migrated state and not yet anyone's: the moment to read what a reset puts back.
    this.#baseline ??= readBaseline(db).catch((error: unknown) => this.#noBaseline(error))
    await this.#baseline
    if (this.#spare === null && !this.#closed) {
      this.#spare = { thread: this.#threads, db: this.#build(null, this.#threads) }
      // A spare that fails to load is not an error yet: the next database loads without it, and says why then.
      this.#spare.db.catch(() => {})
    }
    return db
  }

  /**
   * Open a database in `dir` (null: memory) at the migrated state, in a worker thread or in this one: from the
   * template, or initdb and the migrations.
   */
  async #build(dir: string | null, thread: boolean, name = ''): Promise<Instance> {
    const { migrations } = this.#options
    const template = await this.#options.template()
    const open = (where: { dataDir: string } | { loadDataDir: Blob } | null): Promise<Instance> => this.#openWith(name, where, thread)
    if (dir !== null) {
      await mkdir(dir, { recursive: true })
      const fresh = !(await holdsDatabase(dir))
      if (fresh && template) await seedDataDir(dir, template)
      let db = await open({ dataDir: dir })
      // Kept from an earlier run, it may have had CREATE EXTENSION run on it: its bundles are loaded.
      const missing = fresh ? [] : await installedNotLoaded(db, this.#extensionsOf(name))
      if (missing.length > 0) {
        this.#extraExtensions.set(name, [...(this.#extraExtensions.get(name) ?? []), ...missing])
        await db.close()
        db = await open({ dataDir: dir })
      }
      // Kept from an earlier run, it may lack migrations added since, as the main database would.
      return this.#migrated(db, (!fresh || !template) && migrations !== null)
    }
    if (template) return open({ loadDataDir: await templateBlob(template) })
    return this.#migrated(await open(null), migrations !== null)
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

  #dirFor(name: string): string | null {
    const { dataDir } = this.#options
    return dataDir === null ? null : join(`${dataDir}-databases`, dirName(name))
  }

  #serialize<T>(name: string, work: () => Promise<T>): Promise<T> {
    // close() waits for the work queued so far; nothing may start after it.
    if (this.#closed) return Promise.reject(new Error('the server is stopping'))
    const run = (this.#work.get(name) ?? Promise.resolve()).then(work, work)
    const tail = run.catch(() => {})
    this.#work.set(name, tail)
    void tail.then(() => {
      if (this.#work.get(name) === tail) this.#work.delete(name)
    })
    return run
  }
}

/** A database name as a directory name: plain names as they are, anything else hex-encoded behind a prefix. */
function dirName(name: string): string {
  if (/^[A-Za-z0-9_][A-Za-z0-9_-]*$/.test(name)) return name
  return `~${Buffer.from(name).toString('hex')}`
}


/** Remove a data dir's files, keeping the server's lock file if it is there. */
async function emptyDataDir(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  await Promise.all(names.filter((name) => name !== LOCK_FILE).map((name) => rm(join(dir, name), { recursive: true, force: true })))
}
