// The servers under test, each in its own child process so its memory and CPU can be read from /proc and the
// benchmark's clients do not share its event loop: pglite-dev-db (our CLI), stock pglite-socket (its CLI), and a
// throwaway PostgreSQL 15 cluster. PGlite servers open a copy of one template data dir, made once per run.

import { execFileSync } from 'node:child_process'
import { chmod, chown, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import postgres from 'postgres'
import { applyMigrations } from '../../src/databases/migrate.ts'
import { createLogger } from '../../src/log.ts'
import {
  freePort,
  pssOf,
  spawnServer,
  trackDir,
  usageOf,
  withDeadline,
  type ServerProcess,
  type Usage,
} from './procs.ts'
import { SETUP_SQL } from './workloads.ts'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const MIGRATIONS_DIR = join(REPO_ROOT, 'migrations')
export const HOST = '127.0.0.1'
const START_DEADLINE_MS = 60_000
/** Stock's default is 1 connection; 100 lets 64 clients and the benchmark's own checks in. */
const STOCK_MAX_CONNECTIONS = 100

export type TargetName = 'ours' | 'no-threads' | 'baseline' | 'stock' | 'postgres' | 'no-engine'
export const TARGET_LABELS: Record<TargetName, string> = {
  ours: 'pglite-dev-db',
  'no-threads': 'pglite-dev-db `--no-database-threads`',
  baseline: 'pglite-dev-db baseline',
  stock: 'stock pglite-socket',
  postgres: 'PostgreSQL 15',
  'no-engine': 'no engine (select 1 from memory)',
}

export interface Target {
  name: TargetName
  url: string
  /** Memory and CPU of the server now; null when it is not ours to read (an --oracle server). */
  usage(): Usage | null
  /** PostgreSQL only: proportional memory of the cluster (shared buffers counted once). */
  pssKb(): number | null
  /** Kill and start afresh (stock after it breaks). PostgreSQL keeps its data. */
  restart(): Promise<void>
  /** Send the server process a signal (a PGlite server the bench started). */
  signal?(signal: NodeJS.Signals): void
  stop(): Promise<void>
}

/** Where this run keeps its data dirs: /dev/shm when there (tmpfs), else the OS temp dir. Removed at the end. */
export async function createScratch(): Promise<string> {
  const root = await mkdtemp(join(os.platform() === 'linux' ? '/dev/shm' : os.tmpdir(), 'pglite-bench-'))
  trackDir(root)
  // PostgreSQL runs as its own user and must reach its directory inside.
  await chmod(root, 0o755)
  return root
}

/** A PGlite data dir with the example migrations (for the start-up timing) and the benchmark tables. */
export async function createTemplate(scratch: string): Promise<string> {
  const dir = join(scratch, 'template')
  const db = await PGlite.create({ dataDir: dir })
  try {
    await applyMigrations(db, MIGRATIONS_DIR, createLogger({ level: 'error' }))
    await db.exec(SETUP_SQL)
  } finally {
    await db.close()
  }
  return dir
}

let copies = 0
export async function copyTemplate(template: string): Promise<string> {
  const dir = join(dirname(template), `db-${++copies}`)
  await cp(template, dir, { recursive: true })
  return dir
}

export interface OursOptions {
  template: string
  /** Run the bin of this checkout instead of this one's (--baseline: an older commit, with its node_modules). */
  checkout?: string
  maxConnections?: number
  /** Run its database in the server's thread (`--no-database-threads`): target 'no-threads'. */
  noThreads?: boolean
  /** Write a V8 CPU profile of the server into this directory when it exits. */
  cpuProfileDir?: string
  /** Preload the heap sampler (alloc.ts), which writes its profile into `file`. */
  allocProfile?: { preload: string; file: string }
}

export const OURS_BIN = join(REPO_ROOT, 'bin', 'pglite-dev-db.js')
/** Stock pglite-socket's CLI: the package's exports do not list its bin, so it is found beside the resolved entry. */
export const STOCK_BIN = join(
  dirname(createRequire(import.meta.url).resolve('pglite-socket-stock')),
  'scripts',
  'server.js',
)

interface Running {
  server: ServerProcess
  url: string
  /** The copy of the template it opened; removed when it stops. */
  dataDir: string
}

async function startOursProcess(options: OursOptions): Promise<Running> {
  const dataDir = await copyTemplate(options.template)
  const server = spawnServer(
    process.execPath,
    [
      ...(options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : []),
      ...(options.allocProfile ? ['--import', pathToFileURL(options.allocProfile.preload).href] : []),
      options.checkout ? join(options.checkout, 'bin', 'pglite-dev-db.js') : OURS_BIN,
      '--data-dir',
      dataDir,
      '--port',
      '0',
      '--no-migrations',
      '--log-level',
      'warn',
      '--max-connections',
      String(options.maxConnections ?? 1000),
      ...(options.noThreads ? ['--no-database-threads'] : []),
    ],
    // The other servers here answer SSLRequest with N, so ours does too: libpq clients (pgbench) would otherwise
    // negotiate TLS with ours alone (its cost: npm run bench:tls). The environment twin, which an older --baseline
    // checkout ignores.
    {
      cwd: options.checkout ?? REPO_ROOT,
      env: {
        ...process.env,
        PGLITE_DEV_DB_NO_TLS: '1',
        ...(options.allocProfile ? { PGLITE_DEV_DB_ALLOC_PROFILE: options.allocProfile.file } : {}),
      },
    },
  )
  const url = await server.waitForLine(
    (line) => line.startsWith('postgres://'),
    START_DEADLINE_MS,
    'pglite-dev-db URL line',
  )
  return { server, url, dataDir }
}

async function startStockProcess(template: string): Promise<Running> {
  const dataDir = await copyTemplate(template)
  const port = await freePort()
  const server = spawnServer(
    process.execPath,
    [STOCK_BIN, `--db=${dataDir}`, `--port=${port}`, `--host=${HOST}`, `--max-connections=${STOCK_MAX_CONNECTIONS}`],
    { cwd: REPO_ROOT },
  )
  await server.waitForLine(
    (line) => line.includes('listening'),
    START_DEADLINE_MS,
    'stock pglite-socket listening line',
  )
  return { server, url: `postgres://postgres@${HOST}:${port}/postgres`, dataDir }
}

async function stopRunning(running: Running, signal: NodeJS.Signals): Promise<void> {
  await running.server.stop(signal)
  await rm(running.dataDir, { recursive: true, force: true })
}

function pgliteTarget(name: 'ours' | 'no-threads' | 'baseline' | 'stock', start: () => Promise<Running>) {
  return async (): Promise<Target> => {
    let running = await start()
    return {
      name,
      get url() {
        return running.url
      },
      usage: () => usageOf(running.server.pid),
      pssKb: () => null,
      signal: (signal) => process.kill(running.server.pid, signal),
      async restart() {
        await stopRunning(running, 'SIGKILL')
        running = await start()
      },
      stop: () => stopRunning(running, 'SIGTERM'),
    }
  }
}

/** The `no-engine` target (no-engine-server.mjs): a server whose every answer is select 1's, made once. */
const NO_ENGINE_SCRIPT = join(REPO_ROOT, 'scripts', 'bench', 'no-engine-server.mjs')

export async function startNoEngine(): Promise<Target> {
  const start = async () => {
    const server = spawnServer(process.execPath, [NO_ENGINE_SCRIPT], { cwd: REPO_ROOT })
    const url = await server.waitForLine(
      (line) => line.startsWith('postgres://'),
      START_DEADLINE_MS,
      'no-engine server URL line',
    )
    return { server, url }
  }
  let running = await start()
  return {
    name: 'no-engine',
    get url() {
      return running.url
    },
    usage: () => usageOf(running.server.pid),
    pssKb: () => null,
    async restart() {
      await running.server.stop('SIGKILL')
      running = await start()
    },
    stop: () => running.server.stop('SIGTERM'),
  }
}

export const startOurs = (options: OursOptions): Promise<Target> =>
  pgliteTarget(options.checkout ? 'baseline' : options.noThreads ? 'no-threads' : 'ours', () =>
    startOursProcess(options),
  )()
export const startStock = (template: string): Promise<Target> =>
  pgliteTarget('stock', () => startStockProcess(template))()

// --- PostgreSQL 15: initdb and postgres as the postgres user (PostgreSQL refuses root), in the scratch dir ---

function pgBinDir(): string {
  return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim()
}

function postgresUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  }
}

/** Whether a local PostgreSQL can be started here (pg_config on PATH). */
export function hasPostgres(): boolean {
  try {
    pgBinDir()
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/** initdb into `dir` (made here), then postgres on a free port, up to its "ready to accept connections" line. */
export async function spawnPostgres(dir: string): Promise<{ server: ServerProcess; url: string }> {
  const bin = pgBinDir()
  const user = postgresUser()
  await mkdir(dir)
  if (user) await chown(dir, user.uid, user.gid)
  const as = user ?? {}
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', HOME: dir }
  const initdb = spawnServer(
    join(bin, 'initdb'),
    ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'],
    { ...as, env },
  )
  const [code] = await withDeadline(
    new Promise<[number | null]>((resolve) => initdb.child.once('exit', (c) => resolve([c]))),
    START_DEADLINE_MS,
    'initdb',
  )
  if (code !== 0) throw new Error(`initdb failed (${code}):\n${initdb.tail()}`)
  const port = await freePort()
  // fsync=off matches PGlite, which runs with -F; everything else is PostgreSQL's default.
  const settings = ['listen_addresses=127.0.0.1', `unix_socket_directories=${dir}`, 'fsync=off', 'max_connections=300']
  const server = spawnServer(
    join(bin, 'postgres'),
    ['-D', join(dir, 'data'), '-p', String(port), ...settings.flatMap((s) => ['-c', s])],
    { ...as, env, stopNow: 'SIGQUIT' },
  )
  await server.waitForLine(
    (line) => line.includes('ready to accept connections'),
    START_DEADLINE_MS,
    'PostgreSQL ready',
  )
  return { server, url: `postgres://postgres@${HOST}:${port}/postgres` }
}

export async function startPostgres(scratch: string): Promise<Target> {
  const { server, url } = await spawnPostgres(join(scratch, 'postgres'))
  await runAdmin(url, SETUP_SQL, 120_000)
  return {
    name: 'postgres',
    url,
    usage: () => usageOf(server.pid, true),
    pssKb: () => pssOf(server.pid, true),
    restart: async () => {},
    // SIGINT is PostgreSQL's fast shutdown: backends end, nothing is waited for.
    stop: () => server.stop('SIGINT'),
  }
}

/**
 * An existing PostgreSQL (--oracle): its bench_* tables are made afresh, as in the PostgreSQL the bench starts. When it
 * runs on this machine (its postmaster.pid is readable here), its CPU and memory are read as for the one the bench
 * starts: the postmaster and its backends.
 */
export async function oracleTarget(url: string): Promise<Target> {
  await runAdmin(url, SETUP_SQL, 120_000)
  const pid = await localPostmaster(url)
  return {
    name: 'postgres',
    url,
    usage: () => (pid === null ? null : usageOf(pid, true)),
    pssKb: () => (pid === null ? null : pssOf(pid, true)),
    restart: async () => {},
    stop: async () => {},
  }
}

/** The postmaster's pid of a PostgreSQL on this machine (the first line of its data dir's postmaster.pid), or null. */
async function localPostmaster(url: string): Promise<number | null> {
  const dataDir = await runAdmin(url, `select setting from pg_settings where name = 'data_directory'`).catch(() => null)
  if (!dataDir) return null
  try {
    const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0])
    return Number.isInteger(pid) && pid > 0 && usageOf(pid).rssKb > 0 ? pid : null
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'EACCES')
      return null
    throw error
  }
}

/** One statement (or script) on a fresh connection, bounded; returns the first column of the first row. */
export async function runAdmin(url: string, sqlText: string, deadlineMs = 10_000): Promise<string | null> {
  // A server still preparing its database holds the connection in its start-up: the connect waits as long as the rest.
  const sql = postgres(url, {
    max: 1,
    connect_timeout: Math.ceil(deadlineMs / 1000),
    onnotice: () => {},
    fetch_types: false,
  })
  try {
    const result = await withDeadline(sql.unsafe(sqlText), deadlineMs, `${sqlText.trim().slice(0, 40)}`)
    const row = (result as unknown as Array<Record<string, unknown>>)[0]
    const value = row ? Object.values(row)[0] : undefined
    return value === undefined || value === null ? null : String(value)
  } finally {
    await withDeadline(sql.end({ timeout: 1 }), 3_000, 'admin connection end').catch((error: unknown) => {
      process.stderr.write(`bench: admin connection did not close: ${(error as Error).message}\n`)
    })
  }
}
