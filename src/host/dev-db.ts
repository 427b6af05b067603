// startDevDb: open PGlite (on disk or in memory), listen, apply migrations, then admit clients. A client that
// connects while migrations run gets FATAL 57P03, never a half-migrated database; a failed start leaves nothing running.

import { PGlite } from '@electric-sql/pglite'
import { openPGlite } from './engine/pglite.ts'
import { mkdir, stat, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts'
import { DevServerError } from '../errors.ts'
import { createLogger, type Logger } from '../log.ts'
import { DEFAULT_CACHE_DIR, holdsDatabase, migratedTemplate, seedDataDir, templateBlob, type Template } from './template.ts'
import { applyMigrations } from './migrate.ts'
import { findMigrations } from './migrations-dir.ts'
import { Databases, MAIN_DATABASE } from './databases.ts'
import type { Instance } from './database-builder.ts'
import { DbThread } from './engine/thread.ts'
import { installedNotLoaded, loadExtensions, type LoadedExtensions } from './extensions.ts'
import { reportSlowStep, type ProgressOptions } from './progress.ts'
import { readSnapshot } from './snapshot.ts'
import { PGLiteSocketServer, type PGLiteSocketServerOptions } from '../socket/server.ts'
import { sessionFor } from '../socket/session/session.ts'
import { resolveDevDbOptions, type DevDbOptions } from './options.ts'
import { readTlsFiles, selfSignedTls } from './tls.ts'
import { openWithWalSpace } from './wal-reserve.ts'

export type { DevDbOptions } from './options.ts'

export interface DevDb {
  /** postgres://postgres@HOST:PORT/postgres (with the password, when one is set) */
  readonly url: string
  /** The Unix socket's path, when `socketDir` was given. */
  readonly socketPath: string | null
  readonly host: string
  readonly port: number
  /**
   * The main database, for queries from this process (they queue with the clients' work): PGlite in a worker thread
   * (query, exec, transaction, dumpDataDir as PGlite's), or PGlite itself with `databaseThreads: false`.
   */
  readonly db: Instance
  /** The databases clients named besides the main one ("postgres"), created on first use from the template. */
  readonly databases: Databases
  readonly server: PGLiteSocketServer
  /** Resolves with the cause if the database fails while serving (every client has then been told). */
  readonly failed: Promise<Error>
  /**
   * Stop accepting, tell clients (FATAL 57P01), cancel their running statements, roll back what they left open, and
   * close every database so every commit is on disk. Bounded: a database still busy after a grace period is ended
   * (see `stoppedCleanly`). Idempotent.
   */
  close(): Promise<void>
  /** After close(): false if some database had to be ended without closing (its next start recovers it). */
  readonly stoppedCleanly: boolean
  [Symbol.asyncDispose](): Promise<void>
}

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
const SERVER_SETTINGS = ['-c', 'shared_buffers=8MB', '-c', 'max_prepared_transactions=64', '-c', 'max_wal_size=64MB', '-c', 'min_wal_size=32MB']

/** close(): how long clients get to finish (their statements canceled) before the databases are stopped anyway. */
const STOP_GRACE_MS = 5_000
/** close(): then how long a busy database gets to close before its thread is ended. */
const FORCED_CLOSE_MS = 2_000

/** Whether `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))
  try {
    return await Promise.race([promise.then(() => true, () => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

export async function startDevDb(given: DevDbOptions = {}): Promise<DevDb> {
  // --- Resolve options ---
  const options = resolveDevDbOptions(given)
  const log = options.logger ?? createLogger({ level: 'warn' })
  const { host, port } = options
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir)
  const cacheDir = resolve(options.cacheDir ?? DEFAULT_CACHE_DIR)
  const startedAt = performance.now()
  const migrations = migrationsDir(options.migrations, log)
  // The user's certificate is read (and refused if unusable) before anything opens.
  const tls = !options.tls ? null : options.tlsCert !== undefined && options.tlsKey !== undefined ? await readTlsFiles(resolve(options.tlsCert), resolve(options.tlsKey)) : await selfSignedTls(join(cacheDir, 'tls'), log)

  // --- Open the database ---
  const loaded = await loadExtensions(options.extensions ?? [])
  const progress = { afterMs: options.progressAfterMs }
  let db: Instance
  let lock: DataDirLock | null = null
  /** The main database's bundles: those asked for, and those it turned out to use. */
  let mainExtensions: LoadedExtensions = loaded
  // The template is what a fresh main database and every other database start from; read (or built) when first needed.
  let templateLookup: Promise<Template | null> | null = null
  const template = (): Promise<Template | null> => {
    templateLookup ??= !options.template ? Promise.resolve(null) : templateOrNull(migrations, cacheDir, log, loaded, progress)
    return templateLookup
  }
  const startParams = [...PGlite.defaultStartParams, ...SERVER_SETTINGS]
  try {
    if (dataDir) {
      await mkdir(dataDir, { recursive: true })
      lock = await lockDataDir(dataDir)
    }
    // A fresh database starts as a copy of the migrated template instead of initdb plus every migration.
    const fresh = !dataDir || !(await holdsDatabase(dataDir))
    const snapshot = options.fromSnapshot === undefined ? null : await readSnapshot(resolve(options.fromSnapshot), dataDir, log)
    const fromTemplate = fresh && !snapshot ? await template() : null
    const seeded = dataDir && fromTemplate ? await reportSlowStep(log, 'copying the database template into the data dir', () => seedDataDir(dataDir, fromTemplate), progress) : false
    const from = snapshot ? 'snapshot' : fromTemplate && (seeded || !dataDir) ? 'template' : null
    log.info('opening database', { dataDir: dataDir ?? 'memory', ...(from ? { from } : {}) })
    const loadDataDir = snapshot ?? (fromTemplate && !dataDir ? await templateBlob(fromTemplate) : null)
    const where = { ...(dataDir ? { dataDir } : {}), ...(loadDataDir ? { loadDataDir } : {}), startParams }
    // In a worker thread (the server's thread never runs Postgres), unless asked otherwise.
    const create = (with_: LoadedExtensions): Promise<Instance> => (options.databaseThreads ? DbThread.create({ ...where, extensions: with_.names }) : openPGlite({ ...where, extensions: with_.extensions }))
    // On disk, a start that fails for want of space says so (and uses the WAL reserve, if one was kept).
    const opening = (): Promise<Instance> => (dataDir ? openWithWalSpace(dataDir, () => create(loaded)) : create(loaded))
    db = await reportSlowStep(log, `opening the database${from ? ` from the ${from}` : ''}`, opening, progress)
    // A database that had CREATE EXTENSION x run on it needs x's bundle at every start: opened again with it.
    const missing = await installedNotLoaded(db, loaded.names).catch(async (error: unknown) => {
      await db.close()
      throw error
    })
    if (missing.length > 0) {
      log.info('the database uses extensions not asked for; opening it again with them', { extensions: missing.join(',') })
      await db.close()
      mainExtensions = await loadExtensions([...loaded.names, ...missing])
      db = await create(mainExtensions)
    }
  } catch (error) {
    await lock?.release()
    if (error instanceof DevServerError) throw error
    throw new DevServerError('ERR_PGLITE', `cannot open the database${dataDir ? ` in ${dataDir}` : ''}: ${(error as Error).message}`, { cause: error })
  }

  let lost: (error: Error) => void = () => {}
  const databases = new Databases({
    main: db,
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
      if (name === MAIN_DATABASE) lost(error)
    },
  })
  const serverOptions: PGLiteSocketServerOptions = {
    db,
    databases,
    host,
    port,
    ...(options.password !== undefined ? { password: options.password } : {}),
    ...(options.trace !== undefined ? { trace: options.trace } : {}),
    maxConnections: options.maxConnections,
    createDatabaseOnConnect: options.createDatabaseOnConnect,
    ...(tls ? { tls } : {}),
    idleInTransactionTimeoutMs: options.idleInTransactionTimeoutMs,
    idleTimeoutMs: options.idleTimeoutMs,
    queueTimeoutMs: options.queueTimeoutMs,
    idleTransactionWaitMs: options.idleTransactionWaitMs,
    maxSpillBytes: options.maxSpillBytes,
    spillDir: join(cacheDir, 'replies'),
    logger: log,
    // At trace level every frame in and out is logged as a hex dump: the protocol trace for interleaving bugs.
    inspect: log.enabled('trace'),
  }
  let server: PGLiteSocketServer
  try {
    // --- Listen, migrate, admit ---
    // Migrations start once the socket listens; until they are done, clients are told 57P03 "starting up".
    let migrate: () => void = () => {}
    const listened = new Promise<void>((resolveListened) => (migrate = resolveListened))
    const migrated = migrations ? listened.then(() => applyMigrations(db, migrations, log, progress)) : listened
    server = new PGLiteSocketServer({ ...serverOptions, startupGate: migrated })
    server.addEventListener('listening', () => migrate(), { once: true })
    try {
      await server.start()
    } catch (error) {
      if (error instanceof DevServerError) throw error
      throw new DevServerError('ERR_LISTEN', `cannot listen on ${host}:${port}: ${(error as Error).message}`, { cause: error })
    }
  } catch (error) {
    await db.close()
    await lock?.release()
    throw error
  }

  const listening = server
  // The Unix socket shares the database (and its session scheduler) with the TCP listener.
  let unixServer: PGLiteSocketServer | null = null
  const socketPath = options.socketDir ? join(resolve(options.socketDir), `.s.PGSQL.${listening.port}`) : null
  if (socketPath) {
    try {
      await removeStaleSocket(socketPath)
      unixServer = new PGLiteSocketServer({ ...serverOptions, path: socketPath })
      await unixServer.start()
    } catch (error) {
      await listening.stop()
      await db.close()
      await lock?.release()
      if (error instanceof DevServerError) throw error
      throw new DevServerError('ERR_LISTEN', `cannot listen on ${socketPath}: ${(error as Error).message}`, { cause: error })
    }
  }
  const servers = unixServer ? [listening, unixServer] : [listening]
  // The main database failing is not the end while it can be reopened (databaseThreads); only if that fails.
  const failed = new Promise<Error>((resolveFailed) => {
    lost = resolveFailed
    if (!options.databaseThreads) for (const each of servers) each.addEventListener('error', (event) => resolveFailed((event as CustomEvent<Error>).detail))
  })
  let closing: Promise<void> | null = null
  let stoppedCleanly = true
  const close = (): Promise<void> => {
    closing ??= (async () => {
      // Clients are told (57P01), statements still running are canceled, what clients left open is rolled back.
      const stopping = Promise.all(servers.map((each) => each.stop()))
      const stopped = await settlesWithin(stopping, STOP_GRACE_MS)
      if (!stopped) log.warn('clients still running after the grace period; stopping their databases', { ms: STOP_GRACE_MS })
      // A database still busy then (a statement that cannot be stopped) gets a few seconds, then its thread ends.
      const unclean = await databases.close(stopped ? undefined : FORCED_CLOSE_MS)
      await stopping
      stoppedCleanly = unclean.length === 0
      await lock?.release()
      if (stoppedCleanly) log.info('stopped', {})
      else log.error('stopped; some databases were ended without closing: their committed transactions are in their files, and the next start recovers them', { databases: unclean.join(',') })
    })()
    return closing
  }
  const user = options.password === undefined ? 'postgres' : `postgres:${encodeURIComponent(options.password)}`
  const url = `postgres://${user}@${urlHost(host)}:${listening.port}/${MAIN_DATABASE}`
  log.info('ready', {
    url: options.password === undefined ? url : url.replace(/:[^:@/]*@/, ':***@'),
    ...(socketPath ? { socket: socketPath } : {}),
    tls: !tls ? 'off' : options.tlsCert ?? 'self-signed',
    ms: Math.round(performance.now() - startedAt),
  })
  return {
    url,
    host,
    port: listening.port,
    socketPath,
    get db() {
      return databases.main
    },
    databases,
    server: listening,
    failed,
    get stoppedCleanly() {
      return stoppedCleanly
    },
    close,
    [Symbol.asyncDispose]: close,
  }
}

/**
 * A socket file left by a server that was killed is removed; one that still answers belongs to a live server,
 * and starting fails (ERR_LISTEN) rather than steal it.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const exists = await stat(path).then(() => true, () => false)
  if (!exists) return
  const live = await new Promise<boolean>((resolveLive) => {
    const probe = connect(path)
    probe.once('connect', () => {
      probe.destroy()
      resolveLive(true)
    })
    probe.once('error', () => resolveLive(false))
  })
  if (live) throw new DevServerError('ERR_LISTEN', `cannot listen on ${path}: another server is listening there`)
  await unlink(path)
}

/** The migrations folder to apply, absolute, or null: the one given, none for false, else drizzle-kit's (as the command finds it). */
function migrationsDir(given: string | false | undefined, log: Logger): string | null {
  if (given === false) return null
  if (given !== undefined) return resolve(given)
  const found = findMigrations(process.cwd())
  if (found.note) log.warn('drizzle config not followed', { reason: found.note })
  if (found.dir === null) {
    log.info('no migrations folder found; serving an empty database', { looked: 'drizzle.config.* out, ./drizzle, ./migrations' })
    return null
  }
  log.info('applying migrations', { dir: found.dir, from: found.from === 'default' ? 'the first of ./drizzle, ./migrations that exists' : `out in ${found.from}` })
  return resolve(found.dir)
}

/** The template, or null (with a warning) when the cache cannot be used; a failing migration still throws. */
async function templateOrNull(migrations: string | null, cacheDir: string, log: Logger, loaded: LoadedExtensions, progress: ProgressOptions): Promise<Template | null> {
  try {
    return await migratedTemplate(migrations === null ? null : resolve(migrations), resolve(cacheDir), log, loaded, progress)
  } catch (error) {
    if (error instanceof DevServerError) throw error
    log.warn('cannot use a database template; starting from initdb', { cacheDir, error })
    return null
  }
}

/** The host part of a URL clients can use: wildcard addresses become loopback, IPv6 gets brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}
