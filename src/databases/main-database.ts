// The main database of a pglite-dev-db server, opened once the server listens: its data dir (seeded from the
// migrated template when new), or memory from the template or a snapshot, then the migrations. Imported when needed,
// so that PGlite's modules load after the URL line, not before it.

import { PGlite } from '@electric-sql/pglite'
import { resolve } from 'node:path'
import { DevServerError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { sessionFor } from '../server/session/session.ts'
import { applyMigrations } from './migrate.ts'
import { Databases, MAIN_DATABASE } from './databases.ts'
import type { Instance } from './database-builder.ts'
import { DbThread } from '../engine/thread.ts'
import { MAX_STACK_DEPTH, MAX_STACK_DEPTH_KB } from '../engine/stack-depth.ts'
import { SESSION_ENDING_SETTINGS } from '../server/session/guc.ts'
import { prepareThreads } from '../engine/thread-bootstrap.ts'
import type { EngineImage } from '../engine/image.ts'
import { loadImage, writeDataDir } from '../engine/image-on-disk.ts'
import { openPGlite } from '../engine/pglite.ts'
import { installedNotLoaded, loadExtensions, type LoadedExtensions } from '../engine/extensions.ts'
import type { resolveDevDbOptions } from './options.ts'
import { reportSlowStep, type ProgressOptions } from './progress.ts'
import { readSnapshot } from './snapshot.ts'
import {
  holdsDatabase,
  imageDir,
  migratedTemplate,
  seedDataDir,
  templateBlob,
  templateEngines,
  type Template,
} from './template.ts'
import { openWithWalSpace } from './wal-reserve.ts'

/**
 * Postgres settings for the served database. shared_buffers is 8 MB instead of 128 MB: PGlite zeroes the whole pool
 * in its WASM memory at start, so each MB of it is a MB of resident memory even when idle (128 MB: 151 MB of WASM
 * memory touched, 16 MB: 29 MB, 8 MB: 21 MB; docs/BENCHMARKS.md). A development database's tables mostly fit anyway;
 * a miss reads the page back from the file system's cache, and sequential scans of tables over a quarter of the pool
 * read through a small ring either way (measured in process: point selects on a 13 MB table within the noise,
 * full scans of it about 12% slower than at 16 MB).
 */
// max_prepared_transactions: PREPARE TRANSACTION works, as on a server configured for two-phase commit.
// max_wal_size, min_wal_size: how many WAL segments the checkpoint at close keeps for reuse. PGlite is a single-user
// backend: nothing checkpoints while it runs (PostgreSQL requests one for WAL volume only under a postmaster), so the
// WAL grows until close, a new segment file each 16 MB (wal-reserve.ts makes them ready on disk).
// max_stack_depth: engine/stack-depth.ts says why it is smaller than PostgreSQL's.
const SERVER_SETTINGS = [
  ...[
    '-c',
    'shared_buffers=8MB',
    '-c',
    'max_prepared_transactions=64',
    '-c',
    'max_wal_size=64MB',
    '-c',
    'min_wal_size=32MB',
  ],
  ...['-c', `max_stack_depth=${MAX_STACK_DEPTH}`],
]

/**
 * PGlite's start parameters without its `search_path=public`: Postgres's default (`"$user", public`) is what clients
 * see on a server, as `show search_path` and pg_settings (source `default`).
 */
function postgresDefaults(params: readonly string[]): string[] {
  const kept: string[] = []
  for (let i = 0; i < params.length; i++) {
    if (params[i] === '-c' && params[i + 1]?.startsWith('search_path=')) i++
    else kept.push(params[i]!)
  }
  return kept
}

export interface MainDatabaseContext {
  options: ReturnType<typeof resolveDevDbOptions>
  dataDir: string | undefined
  cacheDir: string
  migrations: string | null
  log: Logger
  onLost: (error: Error) => void
}

/**
 * Open the main database (its data dir, or in memory from the template or a snapshot) and apply the migrations:
 * the databases, ready for clients. Throws a DevServerError; nothing of it stays open then.
 */
export async function openMainDatabase({
  options,
  dataDir,
  cacheDir,
  migrations,
  log,
  onLost,
}: MainDatabaseContext): Promise<Databases> {
  // Beside the template's lookup and the image's read, which come first.
  if (options.databaseThreads) prepareThreads(log)
  const loaded = await loadExtensions(options.extensions ?? [])
  const progress = { afterMs: options.progressAfterMs }
  let db: Instance
  /**
   * A fresh copy of the template, which was migrated with these very migrations (its cache key is their contents) and
   * built with these bundles: nothing to apply or reopen with, so neither is looked for.
   */
  let copyOfTemplate: boolean
  /** The main database's bundles: those asked for, and those it turned out to use. */
  let mainExtensions: LoadedExtensions = loaded
  // The template is what a fresh main database and every other database start from; read (or built) when first needed.
  let templateLookup: Promise<Template | null> | null = null
  const template = (): Promise<Template | null> => {
    templateLookup ??= !options.template
      ? Promise.resolve(null)
      : templateOrNull(migrations, cacheDir, log, loaded, progress, options.databaseThreads)
    return templateLookup
  }
  const startParams = [...postgresDefaults(PGlite.defaultStartParams), ...SERVER_SETTINGS]
  try {
    // A fresh database starts as a copy of the migrated template instead of initdb plus every migration.
    const fresh = !dataDir || !(await holdsDatabase(dataDir))
    const snapshot =
      options.fromSnapshot === undefined ? null : await readSnapshot(resolve(options.fromSnapshot), dataDir, log)
    const fromTemplate = fresh && !snapshot ? await template() : null
    // From the template, in a thread, without extension bundles: started from the image kept in the cache
    // (engine/image.ts; a new data dir gets its files), or, in memory, booted and imaged as it starts.
    const imageable = fromTemplate !== null && options.databaseThreads === true && loaded.names.length === 0
    const cached = imageable ? await loadImage(imageDir(fromTemplate, startParams, loaded.names), log) : null
    const imaging = imageable && !dataDir
    if (dataDir && cached)
      await reportSlowStep(
        log,
        'writing the database image into the data dir',
        () => writeDataDir(cached, dataDir),
        progress,
      )
    const seeded =
      dataDir && fromTemplate
        ? cached !== null ||
          (await reportSlowStep(
            log,
            'copying the database template into the data dir',
            () => seedDataDir(dataDir, fromTemplate),
            progress,
          ))
        : false
    const from = snapshot ? 'snapshot' : fromTemplate && (seeded || !dataDir) ? 'template' : null
    copyOfTemplate = from === 'template'
    log.info('opening database', {
      dataDir: dataDir ?? 'memory',
      ...(from ? { from } : {}),
      ...(cached ? { image: true } : {}),
    })
    const loadDataDir = snapshot ?? (fromTemplate && !dataDir ? await templateBlob(fromTemplate) : null)
    const where = { ...(dataDir ? { dataDir } : {}), ...(loadDataDir ? { loadDataDir } : {}), startParams }
    // In a worker thread (the server's thread never runs Postgres), unless asked otherwise.
    const create = async (with_: LoadedExtensions): Promise<Instance> => {
      if (!options.databaseThreads) return openPGlite({ ...where, extensions: with_.extensions })
      if (cached && with_ === loaded) {
        try {
          const db = await DbThread.create({
            image: cached,
            startParams,
            extensions: with_.names,
            ...(dataDir ? { dataDir } : {}),
          })
          db.image = cached
          return db
        } catch (error) {
          log.warn('cannot start from the database image in the cache; booting', { error })
        }
      }
      return DbThread.create({
        ...where,
        extensions: with_.names,
        ...(imaging && with_ === loaded ? { image: 'take' as const } : {}),
      })
    }
    // On disk, a start that fails for want of space says so (and uses the WAL reserve, if one was kept).
    const opening = (): Promise<Instance> =>
      dataDir ? openWithWalSpace(dataDir, () => create(loaded)) : create(loaded)
    db = await reportSlowStep(log, `opening the database${from ? ` from the ${from}` : ''}`, opening, progress)
    // A database that had CREATE EXTENSION x run on it needs x's bundle at every start: opened again with it.
    const missing = copyOfTemplate
      ? []
      : await installedNotLoaded(db, loaded.names).catch(async (error: unknown) => {
          await db.close()
          throw error
        })
    if (missing.length > 0) {
      log.info('the database uses extensions not asked for; opening it again with them', {
        extensions: missing.join(','),
      })
      await db.close()
      mainExtensions = await loadExtensions([...loaded.names, ...missing])
      db = await create(mainExtensions)
    }
  } catch (error) {
    if (error instanceof DevServerError) throw error
    throw new DevServerError(
      'ERR_PGLITE',
      `cannot open the database${dataDir ? ` in ${dataDir}` : ''}: ${(error as Error).message}`,
      { cause: error },
    )
  }

  if (db instanceof DbThread) await warnIfUnguarded(db, log)
  let image: EngineImage | null = null
  if (db instanceof DbThread && db.image) {
    if (db.image instanceof Error)
      log.warn('new databases boot (a booted one could not be copied)', { error: db.image })
    else image = db.image
    db.image = null
  }
  const databases = new Databases({
    main: db,
    // With a data dir it came from the cache: read again for the first new database, so that no option holds it.
    image: dataDir ? null : image,
    // Only in-memory databases start from a spare: with a data dir each new one is a directory beside it.
    spares: dataDir ? 0 : options.spareDatabases,
    keepImage: !dataDir,
    dataDir: dataDir ?? null,
    template,
    migrations,
    startParams,
    extensions: loaded,
    mainExtensions: mainExtensions.names,
    threads: options.databaseThreads,
    log,
    onRecovered: (dead, db) => sessionFor(dead).recover(db),
    onLost: (name, error) => {
      if (name === MAIN_DATABASE) onLost(error)
    },
  })
  if (migrations && copyOfTemplate) {
    log.info('migrations done: the database is a copy of the template they were applied to', { dir: migrations })
  } else if (migrations) {
    try {
      await applyMigrations(db, migrations, log, progress)
    } catch (error) {
      await databases.close()
      throw error
    }
  }
  return databases
}

/** The template, or null (with a warning) when the cache cannot be used; a failing migration still throws. */
async function templateOrNull(
  migrations: string | null,
  cacheDir: string,
  log: Logger,
  loaded: LoadedExtensions,
  progress: ProgressOptions,
  threads: boolean,
): Promise<Template | null> {
  try {
    return await migratedTemplate(
      migrations === null ? null : resolve(migrations),
      resolve(cacheDir),
      log,
      loaded,
      progress,
      templateEngines(loaded, threads),
    )
  } catch (error) {
    if (error instanceof DevServerError) throw error
    log.warn('cannot use a database template; starting from initdb', { cacheDir, error })
    return null
  }
}

/**
 * A database thread caps max_stack_depth where Postgres keeps its range (engine/stack-depth.ts capStackDepth), and
 * every PGlite has the settings that end a session locked or capped (server/session/guc.ts). Every thread runs the
 * same PGlite, so the main database's settings say whether each took.
 */
async function warnIfUnguarded(db: DbThread, log: Logger): Promise<void> {
  const { rows } = await db.query<{ name: string; max_val: string | null; context: string }>(
    "SELECT name, max_val, context FROM pg_catalog.pg_settings WHERE name = 'max_stack_depth' OR name = ANY($1)",
    [[...SESSION_ENDING_SETTINGS]],
  )
  const most = rows.find((row) => row.name === 'max_stack_depth')?.max_val
  if (most !== String(MAX_STACK_DEPTH_KB))
    log.warn('a client may raise max_stack_depth, and a deep recursion then ends its database', { most })
  const open = rows
    .filter(
      (row) =>
        (row.name === 'exit_on_error' && row.context !== 'internal') ||
        (row.name === 'transaction_timeout' && row.max_val !== '0'),
    )
    .map((row) => row.name)
  if (open.length > 0)
    log.warn('a client may set what ends the database for every client', { settings: open.join(',') })
}
