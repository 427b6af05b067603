// The spares: the next new in-memory databases, loaded ahead so that creating one takes no wait; as many as the
// server was told (spareDatabases: a test runner's workers), or one. Each loads only while the server is quiet: a load
// takes a core, which clients at work want more (a test run would share its cores with the spares that replace those
// its workers took). The first ones load a core each at once, while a runner starts its workers; later, one at a time.

import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../log.ts'
import { sendingClients, workingDatabases } from '../server/connection/traffic.ts'

/** While clients send or databases run calls, the next spare waits, and looks again this often (ms). */
const QUIET_LOOK_MS = 250
/**
 * Once a database was asked for, the next spare also waits until the server has been quiet this long (ms): a pause
 * between two test files or two runs is shorter, and a spare loading into the next would slow its tests.
 */
const REPLACE_AFTER_QUIET_MS = 1_000
/**
 * Before any database was asked for, spares load a core each at once (at most 4: each holds its start's garbage until
 * its thread first idles); replacing taken ones, one at a time.
 */
const FIRST_LOADS_AT_ONCE = Math.max(1, Math.min(4, availableParallelism()))

/** `Instance`: a database, as database-builder.ts makes one. */
export interface SparesOptions<Instance> {
  /** Whether spares run in worker threads. */
  thread: boolean
  /** How many to keep loaded when new databases start from an image; one otherwise (booting one costs far more). */
  count: number
  /** A new in-memory database at the migrated state, of the spares' kind. */
  build: () => Promise<Instance>
  /** Whether new databases start from an image. */
  fromImage: () => boolean
  log: Logger
}

export class Spares<Instance> {
  readonly #options: SparesOptions<Instance>
  /** The next new databases, oldest first; null if one failed to load. */
  readonly #spares: Array<{ thread: boolean; db: Promise<Instance | null> }> = []
  /** The loads under way: waiting for the server to be quiet, or building their spare. */
  readonly #loading = new Set<Promise<void>>()
  /** Of those, the ones still waiting for quiet (their spare is not in #spares yet). */
  #waiting = 0
  /** The server is stopping: no spare is loaded any more. */
  #stopped = false
  /** A new database was asked for: clients are at work (see REPLACE_AFTER_QUIET_MS). */
  #asked = false
  /** When the server started (this was made), and whether the first full set of spares was logged. */
  readonly #since = performance.now()
  #announced = false

  constructor(options: SparesOptions<Instance>) {
    this.#options = options
  }

  /** A spare of the kind `thread` asked for, taken now; null: none is ready. */
  take(thread: boolean): Promise<Instance | null> | null {
    this.#asked = true
    const at = this.#spares.findIndex((spare) => spare.thread === thread)
    return at >= 0 ? this.#spares.splice(at, 1)[0]!.db : null
  }

  /**
   * Load spares until there are as many as wanted, each once the server is quiet (each takes a core while it loads):
   * a core each (FIRST_LOADS_AT_ONCE) until a database is first asked for, then one at a time; only as many as one
   * booted database, when none starts from an image.
   */
  load(): void {
    if (this.#stopped) return
    const { count } = this.#options
    const wanted = this.#options.fromImage() ? count : Math.min(count, 1)
    const atOnce = this.#asked ? 1 : FIRST_LOADS_AT_ONCE
    while (this.#loading.size < atOnce && this.#spares.length + this.#waiting < wanted) this.#loadOne(wanted)
  }

  #loadOne(wanted: number): void {
    this.#waiting++
    const loading: Promise<void> = this.#quiet().then(async () => {
      this.#waiting--
      let loaded: Instance | null = null
      if (!this.#stopped) {
        this.#options.log.debug('loading a database ahead', { of: wanted, loaded: this.#spares.length })
        // A spare that fails to load is not an error yet: the next database is built without it.
        const db = this.#options.build().catch((error: unknown) => {
          this.#options.log.warn('a database loaded ahead failed; the next one is built when asked for', { error })
          return null
        })
        this.#spares.push({ thread: this.#options.thread, db })
        loaded = await db
      }
      this.#loading.delete(loading)
      if (loaded && !this.#announced && this.#spares.length >= wanted && this.#loading.size === 0) {
        this.#announced = true
        this.#options.log.info('databases loaded ahead', {
          count: wanted,
          ms: Math.round(performance.now() - this.#since),
        })
      }
      if (loaded) this.load()
    })
    this.#loading.add(loading)
  }

  /**
   * Resolves once no client sent and no database ran a call lately (traffic.ts), for REPLACE_AFTER_QUIET_MS more once
   * a database was asked for; or once the server stops.
   */
  async #quiet(): Promise<void> {
    let quietSince = performance.now()
    for (;;) {
      if (this.#stopped) return
      if (sendingClients() > 0 || workingDatabases() > 0) quietSince = performance.now()
      else if (!this.#asked || performance.now() - quietSince >= REPLACE_AFTER_QUIET_MS) return
      await sleep(QUIET_LOOK_MS, undefined, { ref: false })
    }
  }

  /** Resolves once the spares have loaded (each waits for the server to be quiet first), or at once if none is wanted. */
  async loaded(): Promise<void> {
    while (this.#loading.size > 0) await Promise.all(this.#loading)
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
}
