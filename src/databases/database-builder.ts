// How the databases' engines are made: each opened with its extension bundles, in a worker thread of its own or in
// the server's thread; a new one built at the migrated state, from the migrated template or by initdb and the
// migrations. In memory, in threads, a new one starts from the image of one that booted from the template (template-image.ts)
// rather than booting, and spares are loaded ahead (spares.ts). Also read here, once: the baseline a reset puts back.

import type { PGlite } from '@electric-sql/pglite'
import { mkdir } from 'node:fs/promises'
import type { Logger } from '../log.ts'
import { applyMigrations } from './migrate.ts'
import { holdsDatabase, keepBaseline, keptBaseline, seedDataDir, templateBlob, type Template } from './template.ts'
import { readBaseline, type Baseline } from './baseline.ts'
import { DbThread } from '../engine/thread.ts'
import { openPGlite } from '../engine/pglite.ts'
import { installedNotLoaded, loadExtensions, type LoadedExtensions } from '../engine/extensions.ts'
import type { EngineImage } from '../engine/image.ts'
import { writeDataDir } from '../engine/image-on-disk.ts'
import { Spares } from './spares.ts'
import { TemplateImage } from './template-image.ts'
import { renameDatabase } from './rename-database.ts'
import { prepareSession } from '../server/features/settings-sql.ts'

/** An open database: in a worker thread of its own, or (threads: false) in the server's thread. */
export type Instance = PGlite | DbThread

/**
 * Where a database's files come from as it opens: its data dir, a copy of its files (into a new data dir, or in
 * memory), or (null) a new initdb.
 */
type Where =
  { dataDir: string; loadDataDir?: Blob } | { loadDataDir: Blob } | { image: EngineImage; dataDir?: string } | null

/** The database of a new cluster (initdb's, and so the migrated template's). */
const CLUSTER_DATABASE = 'postgres'
/** What a spare's database is named while it waits (see #spare). */
const SPARE_DATABASE = 'pglite_dev_db_spare'

export interface BuildOptions {
  /** The migrated template new databases copy (null: each one runs initdb and the migrations), looked up when first needed. */
  template: () => Promise<Template | null>
  migrations: string | null
  /** Postgres start parameters for every database. */
  startParams: string[]
  /**
   * The image of a database that booted from the template with the start parameters and extensions every database
   * has (the main one, in memory): new in-memory databases in threads start from it. Without one, the first such
   * database booted is imaged.
   */
  image?: EngineImage | null
  /** false (a data dir's server): the image is let go a while after the last new database (template-image.ts). */
  keepImage?: boolean
  /** New in-memory databases kept loaded ahead (spares.ts). Default 1. */
  spares?: number
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
  /** In memory with a template: the next new databases, loaded ahead so that creating one takes no wait. */
  readonly #spares: Spares<Instance>
  /** The image new in-memory databases in threads start from (template-image.ts). */
  readonly #image: TemplateImage
  /** Template blobs handed to open() by build(): only a database opened from one of them is imaged. */
  readonly #fromTemplate = new WeakSet<Blob>()
  /** The migrated state's fingerprint, rows and sequences (see baseline.ts): kept with the template, or read once. */
  #baseline: Promise<Baseline | null> | null = null
  /** Bundles a database loads beyond those every database loads (a CREATE EXTENSION asked for them), by name. */
  readonly #extraExtensions = new Map<string, readonly string[]>()

  constructor(options: BuildOptions) {
    this.#options = options
    this.#spares = new Spares({
      thread: this.threads,
      count: options.spares ?? 1,
      build: () => this.#spare(),
      fromImage: () => this.fromImage,
      log: options.log,
    })
    this.#image = new TemplateImage(
      { ...options, threads: this.threads, database: CLUSTER_DATABASE },
      options.image ?? null,
    )
    if (this.threads && options.image) this.#spares.load()
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
   * pg_database agree): `inside` is the name its files give it (a template's or initdb's `postgres`, another database's
   * when copied), changed to `name` now; '' keeps it. `take`: a thread's image is taken, left on it for the caller.
   */
  async open(name: string, where: Where, thread: boolean, inside = name, take = false): Promise<Instance> {
    const { startParams } = this.#options
    const names = this.extensionsOf(name)
    const database = inside || CLUSTER_DATABASE
    if (where && 'image' in where && !thread) throw new Error('an image starts a database in a thread only')
    // In memory from the template, in a thread: started from the image, or (none yet) booted and imaged.
    const imaging =
      thread && where !== null && !('dataDir' in where) && !('image' in where) && this.#wantsImage(name, where)
    let db: Instance
    try {
      db = thread
        ? await DbThread.create({
            ...where,
            startParams,
            extensions: [...names],
            database,
            ...(imaging || take ? { image: 'take' as const } : {}),
          })
        : await openPGlite({
            ...(where as Exclude<Where, { image: EngineImage }>),
            startParams,
            extensions: (await loadExtensions(names)).extensions,
            database,
          })
    } catch (error) {
      if (!where || !('image' in where)) throw error
      // An image this PGlite cannot start from (start-from-image.ts says why): every database boots from now on. A data dir the
      // image's files were written to holds a database as a crash would leave it, which a boot recovers.
      this.#image.drop(error)
      return this.open(
        name,
        where.dataDir === undefined ? { loadDataDir: await this.#templateBlob() } : { dataDir: where.dataDir },
        thread,
        inside,
      )
    }
    if (imaging && db instanceof DbThread) this.#image.keepFrom(db)
    if (name !== '' && name !== database) await renameDatabase(db, database, name)
    return db
  }

  /** Whether a database opened as `name` from `where` is the kind the image stands for (see BuildOptions.image). */
  #wantsImage(name: string, where: { loadDataDir: Blob }): boolean {
    return this.#image.wanted && this.#fromTemplate.has(where.loadDataDir) && this.imageFits(name)
  }

  /**
   * Only a database without extension bundles starts from an image: PGlite loads a bundle's libraries into the
   * instance after the point where the image is copied in, at addresses the image's memory may hold otherwise.
   */
  imageFits(name: string): boolean {
    return this.extensionsOf(name).length === 0
  }

  async #templateBlob(): Promise<Blob> {
    const template = await this.#options.template()
    if (!template) throw new Error('no template to open a database from')
    const blob = await templateBlob(template)
    this.#fromTemplate.add(blob)
    return blob
  }

  /** Whether new in-memory databases start from an image (and so are cheap enough to load several ahead). */
  get fromImage(): boolean {
    return this.#image.ready
  }

  /** Resolves once the image is in the cache, if it is being kept there: a stop waits for it (the next start needs it). */
  imageKept(): Promise<void> {
    return this.#image.kept()
  }

  /** Resolves once the spares (the next new in-memory databases) have loaded, after quiet (spares.ts), or at once. */
  spareLoaded(): Promise<void> {
    return this.#spares.loaded()
  }

  /** The server is stopping: no spare is loaded from now on. */
  stop(): void {
    this.#spares.stop()
    this.#image.stop()
  }

  /** The spares that loaded and nobody took; the caller closes them. */
  takeSpares(): Promise<Instance[]> {
    return this.#spares.takeAll()
  }

  /** The baseline: kept beside the template, or read from a new database now; null if none can be read. */
  baseline(): Promise<Baseline | null> {
    this.#baseline ??= this.#readBaseline(async () => {
      const db = await this.build(null, false)
      try {
        return await readBaseline(db)
      } finally {
        await db.close()
      }
    })
    return this.#baseline
  }

  /**
   * Before `db`, a new database at the migrated state, is anyone's: if the baseline is not known yet, it is read from
   * `db` (unless the template keeps one), and the promise resolves once `db` is free to use.
   */
  #baselineFrom(db: Instance): Promise<unknown> {
    if (this.#baseline) return Promise.resolve()
    this.#baseline = this.#readBaseline(() => readBaseline(db))
    return this.#baseline
  }

  /** The baseline kept beside the template; else `read`'s, then kept there for the next start. */
  async #readBaseline(read: () => Promise<Baseline>): Promise<Baseline | null> {
    try {
      const template = await this.#options.template()
      const kept = template
        ? await keptBaseline(template).catch((error: unknown) =>
            this.#options.log.warn('the baseline kept with the template cannot be read; reading it again', { error }),
          )
        : null
      if (kept) return kept
      const baseline = await read()
      if (template)
        await keepBaseline(template, baseline).catch((error: unknown) =>
          this.#options.log.warn('cannot keep the baseline with the template', { dir: template.dir, error }),
        )
      return baseline
    } catch (error) {
      this.#options.log.warn('cannot reset databases in place; each reset makes a fresh copy', { error })
      return null
    }
  }

  /**
   * A new in-memory database at the migrated state, in a thread or not: a spare if one of that kind is ready, and
   * the spares are loaded again.
   */
  async fresh(thread: boolean, name: string): Promise<{ db: Instance; spare: boolean }> {
    if (!(await this.#options.template())) return { db: await this.build(null, thread, name), spare: false }
    // Taken before the next await: two databases created at once must never get the same spare.
    const spare = await this.#spares.take(thread)
    try {
      const db = spare ?? (await this.build(null, thread))
      try {
        // Still at the migrated state and not yet anyone's: the moment to read what a reset puts back, if no one has.
        await this.#baselineFrom(db)
        const from = spare ? SPARE_DATABASE : CLUSTER_DATABASE
        if (name !== from) await renameDatabase(db, from, name)
      } catch (error) {
        await db
          .close()
          .catch((closeError: unknown) =>
            this.#options.log.debug('a database that could not be named did not close', { error: closeError }),
          )
        throw error
      }
      return { db, spare: spare !== null }
    } finally {
      this.#spares.load()
    }
  }

  /**
   * A spare: a new in-memory database renamed SPARE_DATABASE (its first write copies the files it touches, about
   * 0.1 s) whose session is ready for a first client; the first one also reads the baseline if the template keeps none.
   */
  async #spare(): Promise<Instance> {
    const db = await this.build(null, this.threads)
    try {
      await renameDatabase(db, CLUSTER_DATABASE, SPARE_DATABASE)
      await this.#baselineFrom(db)
      await prepareSession(db)
    } catch (error) {
      await db
        .close()
        .catch((closeError: unknown) =>
          this.#options.log.debug('a spare that could not be made ready did not close', { error: closeError }),
        )
      throw error
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
    const open = (where: Where, inside = CLUSTER_DATABASE): Promise<Instance> =>
      this.open(name, where, thread, name === '' ? '' : inside)
    if (dir !== null) {
      await mkdir(dir, { recursive: true })
      const fresh = !(await holdsDatabase(dir))
      // A new one gets the image's files and starts from its memory; without an image, the template's files and a boot.
      const image = fresh && template && thread && this.imageFits(name) ? await this.#image.of(template, true) : null
      if (image) await writeDataDir(image, dir)
      else if (fresh && template) await seedDataDir(dir, template)
      let db = image
        ? await open({ dataDir: dir, image })
        : fresh
          ? await open({ dataDir: dir })
          : await this.#openKept(name, dir, thread)
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
    const image = template && thread && this.imageFits(name) ? await this.#image.of(template, false) : null
    if (image) return open({ image })
    if (template) return open({ loadDataDir: await this.#templateBlob() })
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
      await db
        .close()
        .catch((closeError: unknown) =>
          this.#options.log.warn('a database whose migrations failed did not close cleanly', { error: closeError }),
        )
      throw error
    }
  }
}
