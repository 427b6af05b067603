// startDevDb: lock the data dir and listen, then open PGlite (on disk or in memory), apply migrations, and admit
// clients. A client that connects sooner waits, never sees a half-migrated database, and is told why if the start
// fails; a failed start leaves nothing running.

import { mkdir, stat, unlink } from 'node:fs/promises'
import { connect } from 'node:net'
import { join, resolve } from 'node:path'
import { lockDataDir, type DataDirLock } from './data-dir-lock.ts'
import { DevServerError, SqlState, WireError, type SqlStateCode } from '../errors.ts'
import { createLogger, type Logger } from '../log.ts'
import { DEFAULT_CACHE_DIR } from './template.ts'
import { migrationsFingerprint } from './migrate.ts'
import { findMigrations } from './migrations-dir.ts'
import type { Databases } from './databases.ts'
import type { Instance } from './database-builder.ts'
import { checkSnapshot } from './snapshot.ts'
import { skipWasmOptimizer } from '../engine/wasm-optimizer.ts'
import { PGLiteSocketServer, type PGLiteSocketServerOptions } from '../server/server.ts'
import type { DatabaseCatalog } from '../server/session/databases.ts'
import { MAIN_DATABASE, resolveDevDbOptions, type DevDbOptions } from './options.ts'
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

/** close(): how long clients get to finish (their statements canceled) before the databases are stopped anyway. */
const STOP_GRACE_MS = 5_000
/** close(): then how long a busy database gets to close before its thread is ended. */
const FORCED_CLOSE_MS = 2_000

/** Whether `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)))
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timedOut,
    ])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * What `launchDevDb` gives once the server listens. Clients may connect from then on: each waits (after its
 * StartupMessage) until the database is open and migrated, and gets the error that ended the start if it failed.
 */
export interface LaunchedDevDb {
  /** As DevDb's url. */
  readonly url: string
  readonly host: string
  readonly port: number
  readonly socketPath: string | null
  /** The TCP listener; its getStats() count the clients waiting too. */
  readonly server: PGLiteSocketServer
  /**
   * Resolves once the database is open and migrated and clients are let in. Rejects, with what startDevDb would
   * have thrown, if that failed: then the waiting clients were told why, and nothing is left running.
   */
  readonly ready: Promise<DevDb>
}

/** Start the server; resolves once clients are let in (the database open, migrations applied). */
export async function startDevDb(given: DevDbOptions = {}): Promise<DevDb> {
  return (await launchDevDb(given)).ready
}

/**
 * Start the server and resolve as soon as it listens: options checked, the migrations folder read, the data dir
 * locked and the port bound, so that each of those fails here, before a URL is handed out. The database opens, and
 * the migrations are applied, after (`ready`).
 */
export async function launchDevDb(given: DevDbOptions = {}): Promise<LaunchedDevDb> {
  // --- Resolve options ---
  const options = resolveDevDbOptions(given)
  const log = options.logger ?? createLogger({ level: 'warn' })
  // Before any database compiles Postgres's WASM.
  if (!options.wasmOptimizer) skipWasmOptimizer()
  const { host, port } = options
  const dataDir = options.dataDir === undefined ? undefined : resolve(options.dataDir)
  const cacheDir = resolve(options.cacheDir ?? DEFAULT_CACHE_DIR)
  const startedAt = performance.now()
  const migrations = migrationsDir(options.migrations, log)
  // Read (journal and files) now, so a broken folder fails before the URL; applied once the database is open.
  if (migrations) await migrationsFingerprint(migrations)
  // A snapshot that cannot be read, or a data dir that holds a database already, fails before the URL too.
  if (options.fromSnapshot !== undefined) await checkSnapshot(resolve(options.fromSnapshot), dataDir)
  // The user's certificate is read (and refused if unusable) before anything opens.
  const tls = !options.tls
    ? null
    : options.tlsCert !== undefined && options.tlsKey !== undefined
      ? await readTlsFiles(resolve(options.tlsCert), resolve(options.tlsKey))
      : await selfSignedTls(join(cacheDir, 'tls'), log)

  // --- Take the data dir, listen ---
  // A second server on the same data dir fails here, before it hands out a URL.
  let lock: DataDirLock | null = null
  if (dataDir) {
    await mkdir(dataDir, { recursive: true })
    lock = await lockDataDir(dataDir)
  }
  // The servers listen before the database exists; clients wait in their start-up until this resolves.
  let openMain: (opening: Promise<Instance>) => void = () => {}
  const mainDb = new Promise<Instance>((resolveMain) => (openMain = resolveMain))
  const catalog = lateCatalog()
  const serverOptions: PGLiteSocketServerOptions = {
    db: mainDb,
    databases: catalog,
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
  const servers: PGLiteSocketServer[] = []
  const starts: Array<Promise<void>> = []
  const listening = new PGLiteSocketServer(serverOptions)
  let socketPath: string | null = null
  try {
    try {
      servers.push(listening)
      starts.push((await listenOn(listening)).started)
    } catch (error) {
      if (error instanceof DevServerError) throw error
      throw new DevServerError('ERR_LISTEN', `cannot listen on ${host}:${port}: ${(error as Error).message}`, {
        cause: error,
      })
    }
    // The Unix socket shares the database (and its session scheduler) with the TCP listener.
    socketPath = options.socketDir ? join(resolve(options.socketDir), `.s.PGSQL.${listening.port}`) : null
    if (socketPath) {
      try {
        await removeStaleSocket(socketPath)
        const unixServer = new PGLiteSocketServer({ ...serverOptions, path: socketPath })
        servers.push(unixServer)
        starts.push((await listenOn(unixServer)).started)
      } catch (error) {
        if (error instanceof DevServerError) throw error
        throw new DevServerError('ERR_LISTEN', `cannot listen on ${socketPath}: ${(error as Error).message}`, {
          cause: error,
        })
      }
    }
  } catch (error) {
    await Promise.all(servers.map((each) => each.stop()))
    await lock?.release()
    throw error
  }
  const user = options.password === undefined ? 'postgres' : `postgres:${encodeURIComponent(options.password)}`
  const url = `postgres://${user}@${urlHost(host)}:${listening.port}/${MAIN_DATABASE}`
  const shownUrl = options.password === undefined ? url : url.replace(/:[^:@/]*@/, ':***@')
  log.info('listening; clients wait until the database is ready', {
    url: shownUrl,
    ms: Math.round(performance.now() - startedAt),
  })

  // --- Open the database, migrate, admit ---
  let lost: (error: Error) => void = () => {}
  const opening = import('./main-database.ts').then(({ openMainDatabase }) =>
    openMainDatabase({ options, dataDir, cacheDir, migrations, log, onLost: (error) => lost(error) }),
  )
  openMain(
    opening.then(
      (databases) => {
        catalog.set(databases)
        return databases.main
      },
      (error: unknown) => {
        throw refusalFor(error)
      },
    ),
  )

  const ready = (async (): Promise<DevDb> => {
    try {
      await Promise.all(starts)
    } catch (error) {
      // The servers stopped (their waiting clients told); what failed is said as startDevDb always said it.
      await Promise.all(servers.map((each) => each.stop()))
      const failure = await opening.then(
        async (databases) => {
          await databases.close()
          return error
        },
        (openError: unknown) => openError,
      )
      await lock?.release()
      throw failure
    }
    const databases = await opening
    // The main database failing is not the end while it can be reopened (databaseThreads); only if that fails.
    const failed = new Promise<Error>((resolveFailed) => {
      lost = resolveFailed
      if (!options.databaseThreads)
        for (const each of servers)
          each.addEventListener('error', (event) => resolveFailed((event as CustomEvent<Error>).detail))
    })
    let closing: Promise<void> | null = null
    let stoppedCleanly = true
    const close = (): Promise<void> => {
      closing ??= (async () => {
        // Clients are told (57P01), statements still running are canceled, what clients left open is rolled back.
        const stopping = Promise.all(servers.map((each) => each.stop()))
        const stopped = await settlesWithin(stopping, STOP_GRACE_MS)
        if (!stopped)
          log.warn('clients still running after the grace period; stopping their databases', { ms: STOP_GRACE_MS })
        // A database still busy then (a statement that cannot be stopped) gets a few seconds, then its thread ends.
        const unclean = await databases.close(stopped ? undefined : FORCED_CLOSE_MS)
        await stopping
        stoppedCleanly = unclean.length === 0
        await lock?.release()
        if (stoppedCleanly) log.info('stopped', {})
        else
          log.error(
            'stopped; some databases were ended without closing: their committed transactions are in their files, and the next start recovers them',
            { databases: unclean.join(',') },
          )
      })()
      return closing
    }
    log.info('ready', {
      url: shownUrl,
      ...(socketPath ? { socket: socketPath } : {}),
      tls: !tls ? 'off' : (options.tlsCert ?? 'self-signed'),
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
  })()
  return { url, host, port: listening.port, socketPath, server: listening, ready }
}

/** Start `server` and resolve once it listens, with its start(), which resolves once clients are let in. */
async function listenOn(server: PGLiteSocketServer): Promise<{ started: Promise<void> }> {
  const listened = new Promise<void>((resolveListened) =>
    server.addEventListener('listening', () => resolveListened(), { once: true }),
  )
  const started = server.start()
  // A listen error rejects start() before any 'listening'.
  await Promise.race([listened, started])
  return { started }
}

/**
 * The catalog a server is given before the databases open: each call goes to them, set once open. No client is let
 * in before, so none calls it sooner.
 */
function lateCatalog(): DatabaseCatalog & { set(databases: Databases): void } {
  let databases: Databases | null = null
  const open = (): Databases => {
    if (!databases) throw new Error('the databases are not open yet')
    return databases
  }
  return {
    mainName: MAIN_DATABASE,
    set: (opened) => {
      databases = opened
    },
    open: (name) => open().open(name),
    instance: (name) => open().instance(name),
    exists: (name) => open().exists(name),
    create: (name, template) => open().create(name, template),
    drop: (name) => open().drop(name),
    reset: (name) => open().reset(name),
    loadExtension: (name, extension) => open().loadExtension(name, extension),
  }
}

/**
 * What clients waiting for the start are told when it failed (FATAL): the command's message, with the SQLSTATE of
 * the Postgres error behind it (a migration's statement), else XX000.
 */
function refusalFor(error: unknown): WireError {
  let sqlstate: string = SqlState.InternalError
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
      sqlstate = code
      break
    }
  }
  // A Postgres error's own SQLSTATE is a real one, if not among those the server raises itself.
  return new WireError('FATAL', sqlstate as SqlStateCode, error instanceof Error ? error.message : String(error), {
    cause: error,
  })
}

/**
 * A socket file left by a server that was killed is removed; one that still answers belongs to a live server,
 * and starting fails (ERR_LISTEN) rather than steal it.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const exists = await stat(path).then(
    () => true,
    () => false,
  )
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
    log.info('no migrations folder found; serving an empty database', {
      looked: 'drizzle.config.* out, ./drizzle, ./migrations',
    })
    return null
  }
  log.info('applying migrations', {
    dir: found.dir,
    from: found.from === 'default' ? 'the first of ./drizzle, ./migrations that exists' : `out in ${found.from}`,
  })
  return resolve(found.dir)
}

/** The host part of a URL clients can use: wildcard addresses become loopback, IPv6 gets brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}
