// The databases of one pglite-dev-db server, each its own PGlite: the main one ("postgres", the data dir or memory)
// and any other a client names, created on first use from the migrated template. With a data dir they are kept
// beside it, in <data dir>-databases/<name>; in memory they go with the server. Work on one name is serialized.
// Each database runs in a worker thread of its own (engine/thread.ts): the server's thread never runs Postgres, so
// it serves sockets, timers and signals while any statement runs, and can stop one. How each is opened or built is
// database-builder.ts.

import { mkdir, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { holdsDatabase } from './template.ts'
import type { DatabaseCatalog } from '../server/session/databases.ts'
import { isLockFile } from './data-dir-lock.ts'
import { resetInPlace } from './baseline.ts'
import { DatabaseBuilder, type BuildOptions, type Instance } from './database-builder.ts'
import { DbThread } from '../engine/thread.ts'
import { bundlesFor } from '../engine/extensions.ts'
import { openWithWalSpace, WalReserve } from './wal-reserve.ts'
import { reopenAfterDeath } from './recovery.ts'
import { MAIN_DATABASE } from './options.ts'
import { TemplateCopies, templateFiles } from './template-copies.ts'

export { MAIN_DATABASE }

export interface DatabasesOptions extends BuildOptions {
  /** The main database, already open. */
  main: Instance
  /** The main database's data dir; null: every database lives in memory. */
  dataDir: string | null
  /** The main database's, if it loads more (it uses them). */
  mainExtensions?: readonly string[]
  /** A database that died was reopened as `db`: its session serves again from it. */
  onRecovered?: (dead: Instance, db: Instance) => void
  /** A database that died could not be reopened. */
  onLost?: (name: string, error: Error) => void
}

export class Databases implements DatabaseCatalog {
  readonly mainName = MAIN_DATABASE
  readonly #options: DatabasesOptions
  #main: Instance
  readonly #open = new Map<string, Instance>()
  /** The tail of the work queued on each name. */
  readonly #work = new Map<string, Promise<unknown>>()
  readonly #builder: DatabaseBuilder
  /** Copies of a client's template database start from an image of the first. */
  readonly #copies = new TemplateCopies()
  #closed = false
  /** Replaced in-memory databases still closing; close() waits for them. */
  readonly #closing = new Set<Promise<void>>()
  /** Each database on disk keeps WAL space ready, by name. */
  readonly #walReserves = new Map<string, WalReserve>()

  constructor(options: DatabasesOptions) {
    this.#options = options
    this.#main = options.main
    this.#builder = new DatabaseBuilder(options)
    const mainExtra = (options.mainExtensions ?? []).filter((name) => !options.extensions.names.includes(name))
    if (mainExtra.length > 0) this.#builder.addExtensions(MAIN_DATABASE, mainExtra)
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
      const bundles = bundlesFor(sqlName, this.#builder.extensionsOf(name))
      if (!current || bundles === null) return null
      const started = performance.now()
      this.#builder.addExtensions(name, bundles)
      const dir = name === MAIN_DATABASE ? this.#options.dataDir : this.#dirFor(name)
      let db: Instance
      if (dir !== null) {
        await current.close()
        db = await this.#builder.open(name, { dataDir: dir }, current instanceof DbThread)
      } else {
        const files = await current.dumpDataDir('none')
        db = await this.#builder.open(name, { loadDataDir: files }, current instanceof DbThread)
        this.#closeLater(current, name)
      }
      this.#adopt(name, db)
      this.#options.log.info('extension loaded', {
        database: name,
        extensions: bundles.join(','),
        ms: Math.round(performance.now() - started),
      })
      return db
    })
  }

  get main(): Instance {
    return this.#main
  }

  /** Resolves once the spare (the next new in-memory database) has loaded, after quiet (spares.ts), or at once. */
  spareLoaded(): Promise<void> {
    return this.#builder.spareLoaded()
  }

  instance(name: string): Instance | null {
    return this.#open.get(name) ?? null
  }

  /** Whether `name` is open in a worker thread of its own. */
  inThread(name: string): boolean {
    return this.#open.get(name) instanceof DbThread
  }

  open(name: string): Promise<Instance> {
    return this.#serialize(
      name,
      async () => this.#open.get(name) ?? (await this.#openOrCreate(name, 'a client connected to it')).db,
    )
  }

  async exists(name: string): Promise<boolean> {
    if (this.#open.has(name)) return true
    const dir = this.#dirFor(name)
    return dir !== null && (await holdsDatabase(dir))
  }

  async create(name: string, template: string | null = null): Promise<boolean> {
    if (template === null) {
      return this.#serialize(name, async () => {
        if (await this.exists(name)) return false
        await this.#openOrCreate(name, 'CREATE DATABASE')
        return true
      })
    }
    if (await this.exists(name)) return false
    const dir = this.#dirFor(name)
    const extra = this.#builder
      .extensionsOf(template)
      .filter((bundle) => !this.#options.extensions.names.includes(bundle))
    const imageable = this.#builder.threads && extra.length === 0 && this.#builder.imageFits(name)
    const boot = dir !== null ? this.#options : null
    const source = await this.#serialize(template, () =>
      this.#copies.source(
        () => this.#open.get(template),
        imageable,
        () => this.#filesOf(template),
        boot,
        template,
      ),
    )
    return this.#serialize(name, async () => {
      if (await this.exists(name)) return false
      const started = performance.now()
      if (extra.length > 0) this.#builder.addExtensions(name, extra)
      if (dir !== null) await mkdir(dir, { recursive: true })
      // The copy's database has the template's name until it opens under its own.
      let db: Instance | null =
        source.image && (await this.#copies.start(source.image, name, template, dir, this.#options))
      const fromImage = db !== null
      if (!db) {
        const files = source.files ?? (await this.#serialize(template, () => this.#filesOf(template)))
        const take = imageable && dir === null && source.files !== null
        db = await this.#builder.open(
          name,
          dir === null ? { loadDataDir: files } : { dataDir: dir, loadDataDir: files },
          this.#builder.threads,
          template,
          take,
        )
        if (take) this.#copies.keep(source.template, source.calls, db)
      }
      this.#adopt(name, db)
      this.#options.log.info('database created', {
        database: name,
        template,
        ms: Math.round(performance.now() - started),
        ...(fromImage ? { image: true } : {}),
      })
      return true
    })
  }

  /** The files of database `name` (which nobody uses), as a copy starts from (template-copies.ts templateFiles). */
  async #filesOf(name: string): Promise<Blob> {
    return templateFiles(this.#open.get(name) ?? (await this.#openOrCreate(name, 'TEMPLATE of CREATE DATABASE')).db)
  }

  drop(name: string): Promise<boolean> {
    return this.#serialize(name, async () => {
      const existed = await this.exists(name)
      const db = this.#open.get(name)
      this.#open.delete(name)
      this.#copies.forget(db)
      await this.#walReserves.get(name)?.stop()
      this.#walReserves.delete(name)
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
      const baseline = old && !old.closed ? await this.#builder.baseline() : null
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
        db = (await this.#builder.fresh(thread, name)).db
        // Nothing of it needs to reach a disk: its clients move to the copy now, and it closes meanwhile.
        if (old && !old.closed) this.#closeLater(old, name)
      } else {
        // On disk the files are the database: close it, put the template's files in their place, open again.
        if (old && !old.closed) await old.close()
        await emptyDataDir(dir)
        db = await this.#builder.build(dir, thread, name)
      }
      this.#adopt(name, db)
      return db
    })
  }

  /**
   * Close every database, the main one too, and the spare. A database in a thread that does not close within
   * `deadlineMs` is terminated (see DbThread.close); returns the names of those that did not close cleanly.
   */
  async close(deadlineMs?: number): Promise<string[]> {
    this.#closed = true
    this.#builder.stop()
    this.#copies.clear()
    await this.#builder.imageKept()
    await Promise.all([...this.#walReserves.values()].map((reserve) => reserve.stop()))
    await Promise.allSettled([...this.#work.values()])
    await Promise.all(this.#closing)
    const open: Array<[string, Instance]> = [...this.#open]
    for (const spare of await this.#builder.takeSpares()) open.push(['(spare)', spare])
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
    const dir = this.#onDisk(name)
    if (dir !== null && !this.#walReserves.has(name)) {
      const reserve = new WalReserve(dir, this.#options.log)
      this.#walReserves.set(name, reserve)
      reserve.start()
    }
  }

  /** The last resort, after PGlite died: the database is reopened (recovery.ts). */
  #recover(name: string, dead: DbThread, cause: Error): void {
    reopenAfterDeath(
      {
        log: this.#options.log,
        closed: () => this.#closed,
        serves: (name, db) => this.#open.get(name) === db,
        onDisk: (name) => this.#onDisk(name),
        reopen: (name, rescued) => this.#reopen(name, rescued),
        adopt: (name, db) => this.#adopt(name, db),
        recovered: (dead, db) => this.#options.onRecovered?.(dead, db),
        lost: (name, error) => this.#options.onLost?.(name, error),
        serialize: (name, work) => this.#serialize(name, work),
      },
      name,
      dead,
      cause,
    )
  }

  /** The data dir of database `name`; null in memory. */
  #onDisk(name: string): string | null {
    return name === MAIN_DATABASE ? this.#options.dataDir : this.#dirFor(name)
  }

  async #reopen(name: string, rescued: Blob | null): Promise<Instance> {
    const dir = this.#onDisk(name)
    const builder = this.#builder
    if (dir !== null) return builder.build(dir, builder.threads, name)
    if (rescued === null) return builder.build(null, builder.threads, name)
    return builder.open(name, { loadDataDir: rescued }, true)
  }

  #closeLater(db: Instance, name: string): void {
    const closing = db.close().then(
      () => {},
      (error: unknown) =>
        this.#options.log.warn('a replaced database did not close cleanly', { database: name, error }),
    )
    this.#closing.add(closing)
    void closing.then(() => this.#closing.delete(closing))
  }

  /** `why`: what asked for it, named in the log line of a database created (so a stray `root` can be traced). */
  async #openOrCreate(name: string, why: string): Promise<{ db: Instance; created: boolean }> {
    if (this.#closed) throw new Error('the server is stopping')
    const started = performance.now()
    const thread = this.#builder.threads
    const dir = this.#dirFor(name)
    let created: boolean
    let db: Instance
    let spare = false
    if (dir === null) {
      ;({ db, spare } = await this.#builder.fresh(thread, name))
      created = true
    } else {
      created = !(await holdsDatabase(dir))
      db = await openWithWalSpace(dir, () => this.#builder.build(dir, thread, name))
    }
    this.#adopt(name, db)
    const ms = Math.round(performance.now() - started)
    this.#options.log.info(created ? 'database created' : 'database opened', {
      database: name,
      ...(created ? { why } : {}),
      ms,
      ...(thread ? { thread: true } : {}),
      ...(spare ? { spare: true } : {}),
    })
    return { db, created }
  }

  #dirFor(name: string): string | null {
    const { dataDir } = this.#options
    return dataDir === null ? null : join(`${dataDir}-databases`, dirName(name))
  }

  #serialize<T>(name: string, work: () => Promise<T>): Promise<T> {
    // close() waits for the work queued so far; nothing may start after it.
    if (this.#closed) return Promise.reject(new Error('the server is stopping'))
    const run = (this.#work.get(name) ?? Promise.resolve()).then(work, work)
    // eslint-disable-next-line no-restricted-syntax -- the caller gets the error from `run`; the queue only waits for it
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

/** Remove a data dir's files, keeping the server's lock (and any other process's attempt at it). */
async function emptyDataDir(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[])
  await Promise.all(
    names.filter((name) => !isLockFile(name)).map((name) => rm(join(dir, name), { recursive: true, force: true })),
  )
}
