// The spares: the next new in-memory databases, loaded ahead one at a time so that creating one takes no wait; as
// many as the last run's first wave made (remembered in the cache dir), or one.

import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.ts'
import type { Instance } from './database-builder.ts'

/** Spares loaded ahead at most: each holds about 50 MB. */
const MAX_SPARES = 8
/** The databases made within this long of the first one are a run's first wave (a test runner's workers starting). */
const FIRST_WAVE_MS = 5_000
/** The file in the cache dir that remembers how many new in-memory databases the last run made. */
const SPARES_FILE = 'spares.json'

export interface SparesOptions {
  /** Whether spares run in worker threads. */
  thread: boolean
  /** A new in-memory database at the migrated state, of the spares' kind. */
  build: () => Promise<Instance>
  /** Whether new databases start from an image (and so are cheap enough to load several ahead). */
  fromImage: () => boolean
  /** Where the number of spares to load ahead is remembered from one run to the next (the cache dir); none: one spare. */
  cacheDir?: string | null
  log: Logger
}

export class Spares {
  readonly #options: SparesOptions
  /** The next new databases, oldest first; null if one failed to load. */
  readonly #spares: Array<{ thread: boolean; db: Promise<Instance | null> }> = []
  /**
   * How many spares to keep: one, or as many as the last run's first wave of new in-memory databases (remembered in
   * the cache dir), or this run's.
   */
  #wanted = 1
  /** This run's first wave: when its first new in-memory database was asked for, and how many were within FIRST_WAVE_MS. */
  #firstMade: number | null = null
  #wave = 0
  /** The one spare loading now, if any (spares load one after another, not at once). */
  #loading: Promise<unknown> | null = null
  /** The server is stopping: no spare is loaded any more. */
  #stopped = false

  constructor(options: SparesOptions) {
    this.#options = options
  }

  /**
   * A spare of the kind `thread` asked for, taken now (null: none is ready), and whether this run's first wave counts
   * the database asked for (see refill()).
   */
  take(thread: boolean): { spare: Promise<Instance | null> | null; firstWave: boolean } {
    const at = this.#spares.findIndex((spare) => spare.thread === thread)
    const spare = at >= 0 ? this.#spares.splice(at, 1)[0]!.db : null
    const now = performance.now()
    this.#firstMade ??= now
    const firstWave = now - this.#firstMade <= FIRST_WAVE_MS
    if (firstWave) this.#wave++
    return { spare, firstWave }
  }

  /** A database asked for with take() is made: the first wave's count is remembered (if it was in it), and spares load. */
  refill(firstWave: boolean): void {
    if (firstWave && this.#options.fromImage()) void this.#remember(this.#wave)
    this.load()
  }

  /**
   * Load spares until there are as many as wanted: one at a time (each takes a core while it loads), and only as many
   * as one booted database, when none starts from an image (booting one costs several times more).
   */
  load(): void {
    if (this.#loading || this.#stopped) return
    const wanted = this.#options.fromImage() ? this.#wanted : 1
    if (this.#spares.length >= wanted) return
    // A spare that fails to load is not an error yet: the next database is built without it.
    const db = this.#options.build().catch((error: unknown) => {
      this.#options.log.warn('a database loaded ahead failed; the next one is built when asked for', { error })
      return null
    })
    this.#spares.push({ thread: this.#options.thread, db })
    const loading = db.then((loaded) => {
      if (this.#loading === loading) this.#loading = null
      if (loaded) this.load()
    })
    this.#loading = loading
  }

  /** Resolves once the spares have loaded, or at once if none is loading. */
  async loaded(): Promise<void> {
    while (this.#loading) await this.#loading
  }

  /** The server is stopping: no spare is loaded from now on. */
  stop(): void {
    this.#stopped = true
  }

  /** The spares that loaded and nobody took; the caller closes them. */
  async takeAll(): Promise<Instance[]> {
    const spares = this.#spares.splice(0)
    const dbs = await Promise.all(spares.map((spare) => spare.db))
    return dbs.filter((db) => db !== null)
  }

  /** How many spares to keep, from the last run's count (see #remember). */
  async recall(): Promise<void> {
    const { cacheDir } = this.#options
    if (!cacheDir) return
    try {
      const { made } = JSON.parse(await readFile(join(cacheDir, SPARES_FILE), 'utf8')) as { made?: unknown }
      if (typeof made === 'number' && Number.isInteger(made) && made > 0) this.#wanted = Math.min(made, MAX_SPARES)
    } catch {
      // none remembered yet (or unreadable): one spare
    }
  }

  /** This run's first wave made `made` databases in memory: the next run loads as many ahead (up to MAX_SPARES). */
  async #remember(made: number): Promise<void> {
    const wanted = Math.min(made, MAX_SPARES)
    this.#wanted = Math.max(this.#wanted, wanted)
    const { cacheDir } = this.#options
    if (!cacheDir) return
    await mkdir(cacheDir, { recursive: true })
      .then(() => writeFile(join(cacheDir, SPARES_FILE), JSON.stringify({ made: wanted })))
      .catch((error: unknown) => this.#options.log.debug('cannot remember the number of databases made', { cacheDir, error }))
  }
}
