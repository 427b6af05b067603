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
import { Databases, MAIN_DATABASE, type Instance } from './databases.ts'
import { DbThread } from './engine/thread.ts'
import { assertInstalledExtensionsLoaded, loadExtensions, resolveExtensionNames, type LoadedExtensions } from './extensions.ts'
import { reportSlowStep, type ProgressOptions } from './progress.ts'
import { readSnapshot } from './snapshot.ts'
import { PGLiteSocketServer, type PGLiteSocketServerOptions } from '../socket/server.ts'
import { resolveDevDbOptions, type DevDbOptions } from './options.ts'
import { readTlsFiles, selfSignedTls } from './tls.ts'

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
  /** Stop accepting, tell clients (FATAL 57P01), roll back what they left open, and close PGlite so every commit is on disk. Idempotent. */
  close(): Promise<void>
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
const SERVER_SETTINGS = ['-c', 'shared_buffers=8MB']

export async function startDevDb(given: DevDbOptions = {}): Promise<DevDb> {
  // --- Resolve options ---
  const options = resolveDevDbOptions(given)
  const log = options.logger ?? createLogger({ level: 'warn' })
  const { host, port } = options
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir)
  const cacheDir = resolve(options.cacheDir ?? DEFAULT_CACHE_DIR)
  const startedAt = performance.now()
  // The user's certificate is read (and refused if unusable) before anything opens.
  const tls = !options.tls ? null : options.tlsCert !== undefined && options.tlsKey !== undefined ? await readTlsFiles(resolve(options.tlsCert), resolve(options.tlsKey)) : await selfSignedTls(join(cacheDir, 'tls'), log)

  // --- Open the database ---
  const loaded = await loadExtensions(options.extensions ?? [])
  const progress = { afterMs: options.progressAfterMs }
  let db: Instance
  let lock: DataDirLock | null = null
  // The template is what a fresh main database and every other database start from; read (or built) when first needed.
  let templateLookup: Promise<Template | null> | null = null
  const template = (): Promise<Template | null> => {
    templateLookup ??= !options.template ? Promise.resolve(null) : templateOrNull(options.migrations ?? null, cacheDir, log, loaded, progress)
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
    const create = (): Promise<Instance> => (options.databaseThreads ? DbThread.create({ ...where, extensions: loaded.names }) : openPGlite({ ...where, extensions: loaded.extensions }))
    db = await reportSlowStep(log, `opening the database${from ? ` from the ${from}` : ''}`, create, progress)
    // A database that has CREATE EXTENSION x but was opened without x's bundle is refused here, not at a client's query.
    await assertInstalledExtensionsLoaded(db, loaded).catch(async (error: unknown) => {
      await db.close()
      throw error
    })
  } catch (error) {
    await lock?.release()
    if (error instanceof DevServerError) throw error
    throw new DevServerError('ERR_PGLITE', `cannot open the database${dataDir ? ` in ${dataDir}` : ''}: ${(error as Error).message}`, { cause: error })
  }

  const databases = new Databases({
    main: db,
    dataDir: dataDir ?? null,
    template,
    migrations: options.migrations ? resolve(options.migrations) : null,
    startParams,
    extensions: loaded,
    threads: options.databaseThreads,
    log,
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
    logger: log,
    // At trace level every frame in and out is logged as a hex dump: the protocol trace for interleaving bugs.
    inspect: log.enabled('trace'),
  }
  let server: PGLiteSocketServer | null = null
  try {
    // --- Listen, migrate, admit ---
    // Migrations start once the socket listens; until they are done, clients are told 57P03 "starting up".
    let migrate: () => void = () => {}
    const listened = new Promise<void>((resolveListened) => (migrate = resolveListened))
    const migrations = options.migrations
    const migrated = migrations ? listened.then(() => applyMigrations(db, resolve(migrations), log, progress)) : listened
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
  const failed = new Promise<Error>((resolveFailed) => {
    for (const each of servers) each.addEventListener('error', (event) => resolveFailed((event as CustomEvent<Error>).detail))
  })
  let closing: Promise<void> | null = null
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await Promise.all(servers.map((each) => each.stop()))
      await databases.close()
      if (!databases.main.closed) await databases.main.close()
      await lock?.release()
      log.info('stopped', {})
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
