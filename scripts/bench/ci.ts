// The CI-shaped suite (issues 27 and 28), run as a CI job runs one: the server spawned, N test workers (child
// processes, scripts/bench/ci-worker.ts) each on a database of its own, then the same suite again with the databases
// there. Each phase is timed from here; each worker times its own first query and tests.

import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { openInProcessRaw, range, runTest } from './ci-tests.ts'
import type { CiVerdict, WorkerConfig, WorkerMessage } from './ci-worker.ts'
import { progress } from './cells.ts'
import type { DriverName } from './drivers.ts'
import {
  freePort,
  pssOf,
  spawnServer,
  track,
  usageOf,
  withDeadline,
  StalledError,
  type ServerProcess,
} from './procs.ts'
import { HOST, OURS_BIN, REPO_ROOT, STOCK_BIN, hasPostgres, runAdmin, spawnPostgres } from './targets.ts'

export type CiTargetName =
  | 'ours-memory'
  | 'ours-no-optimizer'
  | 'ours-spares'
  | 'ours-data-dir'
  | 'ours-no-threads'
  | 'baseline-memory'
  | 'baseline-no-optimizer'
  | 'stock'
  | 'postgres'
export const CI_TARGETS: readonly CiTargetName[] = [
  'ours-memory',
  'ours-no-optimizer',
  'ours-spares',
  'ours-data-dir',
  'ours-no-threads',
  'baseline-memory',
  'baseline-no-optimizer',
  'stock',
  'postgres',
]
/** What runs unless --ci-targets says otherwise: ours-no-threads and the baseline's (--baseline) are there to compare, when asked. */
export const CI_DEFAULT_TARGETS: readonly CiTargetName[] = [
  'ours-memory',
  'ours-no-optimizer',
  'ours-spares',
  'ours-data-dir',
  'stock',
  'postgres',
]
export const CI_TARGET_LABELS: Record<CiTargetName, string> = {
  'ours-memory': 'pglite-dev-db `--memory`',
  'ours-no-optimizer': 'pglite-dev-db `--memory --no-wasm-optimizer` (as `pglite-dev-db/vitest` runs it)',
  'ours-spares': 'pglite-dev-db `--memory`, its workers started once it loaded a database each ahead',
  'ours-no-threads': 'pglite-dev-db `--memory --no-database-threads`',
  'ours-data-dir': 'pglite-dev-db, a new `--data-dir`',
  'baseline-memory': 'pglite-dev-db `--memory`, the --baseline checkout',
  'baseline-no-optimizer': 'pglite-dev-db `--memory --no-wasm-optimizer`, the --baseline checkout',
  stock: 'stock pglite-socket, a server per worker',
  postgres: 'PostgreSQL 15 (initdb, start, `CREATE DATABASE` per worker)',
}

export interface CiRun {
  verdict: CiVerdict
  detail?: string
  /** From 'go' to the last worker's report (null unless every worker was green). */
  ms: number | null
  /** Per worker, from 'go' to its first query answered: its database made (if made then) and its pool connected. */
  firstQueryMs: number[]
  testsMs: number[]
  slowestTestMs: number[]
  /** CPU (ms) from 'go' to the last report: the server's processes, and the workers' summed (null unless green). */
  serverCpuMs?: number | null
  workersCpuMs?: number | null
}

export interface CiRecord {
  target: CiTargetName
  workers: number
  driver: DriverName
  tests: number
  /** The worst verdict of the spawn and both runs. */
  verdict: CiVerdict
  detail?: string
  /** Spawn to the URL line, to every stock server listening and migrated, or initdb to PostgreSQL's template migrated. */
  spawnToReadyMs: number | null
  first: CiRun | null
  second: CiRun | null
  /** spawnToReadyMs + the first run: null unless both are green. */
  spawnToGreenMs: number | null
  /** Highest RSS sampled during the first run, summed over the server's processes. */
  peakRssMb: number | null
  /** PostgreSQL: its highest proportional set size then (shared buffers counted once). */
  peakPssMb?: number
}

export interface CiOptions {
  scratch: string
  workers: number[]
  targets: CiTargetName[]
  drivers: DriverName[]
  tests: number
  /** Another checkout (--baseline), which targets baseline-memory and baseline-no-optimizer run. */
  baseline?: string | undefined
  /** Node options for this checkout's and --baseline's servers (--ci-node-args), such as V8 flags to try. */
  nodeArgs?: string[]
}

const WORKER_SCRIPT = join(REPO_ROOT, 'scripts', 'bench', 'ci-worker.ts')
/** Ready: eight stock servers running initdb in WASM at once on two cores take most of this. */
const READY_DEADLINE_MS = 240_000
const LOAD_DEADLINE_MS = 60_000
/** Backstop over a worker's whole run; each of its steps has its own, shorter deadline (ci-worker.ts). */
const SUITE_DEADLINE_MS = 300_000
const RSS_SAMPLE_MS = 200
/** Stock's default is one connection: a pool of four and the bench's migrating connection. */
const STOCK_MAX_CONNECTIONS = 10
const TEMPLATE_DB = 'ci_template'

/** The suite's two tables as a drizzle-kit migration: what the servers apply at start (or, for stock and PostgreSQL, the bench does). */
export const CI_MIGRATION = `CREATE TABLE "ci_users" ("id" integer PRIMARY KEY, "name" text NOT NULL, "balance" integer NOT NULL);
--> statement-breakpoint
CREATE TABLE "ci_posts" ("id" serial PRIMARY KEY, "user_id" integer NOT NULL REFERENCES "ci_users" ("id"), "title" text NOT NULL, "amount" integer NOT NULL);
--> statement-breakpoint
CREATE INDEX "ci_posts_user_id" ON "ci_posts" ("user_id");
`

async function writeMigrations(dir: string): Promise<void> {
  await mkdir(join(dir, 'meta'), { recursive: true })
  await writeFile(join(dir, '0000_ci.sql'), CI_MIGRATION)
  const journal = {
    version: '7',
    dialect: 'postgresql',
    entries: [{ idx: 0, version: '7', when: 1795000000000, tag: '0000_ci', breakpoints: true }],
  }
  await writeFile(join(dir, 'meta', '_journal.json'), JSON.stringify(journal))
}

const withDatabase = (url: string, database: string) => Object.assign(new URL(url), { pathname: `/${database}` }).href
const workerDatabase = (i: number) => `ci_w${i + 1}`

// --- The servers ---

interface Owned {
  processes: Array<{ server: ServerProcess; signal: NodeJS.Signals; withChildren: boolean }>
  dirs: string[]
}

interface CiServer {
  urlFor(worker: number): string
  /** PostgreSQL: the first run makes each worker's database with CREATE DATABASE from the migrated template. */
  adminUrl?: string
}

interface Context {
  scratch: string
  migrations: string
  cacheDir: string
  /** The --baseline checkout's bin, and whether it takes --spare-databases (an older one may not). */
  baseline: { bin: string; spares: boolean } | null
  nodeArgs: string[]
}

let dataDirs = 0

async function spawnOurs(
  mode: 'memory' | 'no-optimizer' | 'spares' | 'data-dir' | 'no-threads' | 'baseline' | 'baseline-no-optimizer',
  workers: number,
  context: Context,
  owned: Owned,
): Promise<CiServer> {
  const dataDir = join(context.scratch, `ci-data-${++dataDirs}`)
  if (mode === 'data-dir') owned.dirs.push(dataDir, `${dataDir}-databases`)
  const modeArgs =
    mode === 'data-dir'
      ? ['--data-dir', dataDir]
      : mode === 'no-threads'
        ? ['--memory', '--no-database-threads']
        : mode === 'no-optimizer' || mode === 'baseline-no-optimizer'
          ? ['--memory', '--no-wasm-optimizer']
          : ['--memory']
  const ofBaseline = mode === 'baseline' || mode === 'baseline-no-optimizer'
  const baseline = ofBaseline ? context.baseline : null
  if (ofBaseline && !baseline) throw new Error(`ci target ${mode} needs --baseline DIR`)
  // A spare database per worker, as pglite-dev-db/vitest asks for one per Vitest worker.
  const spares = !baseline || baseline.spares ? ['--spare-databases', String(workers)] : []
  const server = spawnServer(
    process.execPath,
    [
      ...context.nodeArgs,
      baseline?.bin ?? OURS_BIN,
      ...modeArgs,
      ...spares,
      '--port',
      '0',
      '--migrations',
      context.migrations,
      '--cache-dir',
      context.cacheDir,
      '--log-level',
      mode === 'spares' ? 'info' : 'warn',
    ],
    // As in the other sections: the other servers answer SSLRequest with N (npm run bench:tls has TLS's cost).
    { cwd: REPO_ROOT, env: { ...process.env, PGLITE_DEV_DB_NO_TLS: '1' } },
  )
  owned.processes.push({ server, signal: 'SIGTERM', withChildren: false })
  // As a test runner whose workers take a while to start (Vitest's, pglite-dev-db/vitest): ready once the spares are.
  const sparesLoaded =
    mode === 'spares'
      ? server.waitForLine((line) => line.includes('databases loaded ahead'), READY_DEADLINE_MS, 'spares loaded')
      : null
  const url = await server.waitForLine(
    (line) => line.startsWith('postgres://'),
    READY_DEADLINE_MS,
    'pglite-dev-db URL line',
  )
  await sparesLoaded
  return { urlFor: (i) => withDatabase(url, workerDatabase(i)) }
}

/** One stock server per worker, each its own PGlite in memory (initdb in WASM), migrated over the wire once listening. */
async function spawnStock(workers: number, owned: Owned): Promise<CiServer> {
  const urls = await Promise.all(
    Array.from({ length: workers }, async () => {
      const port = await freePort()
      const server = spawnServer(
        process.execPath,
        [STOCK_BIN, '--db=memory://', `--port=${port}`, `--host=${HOST}`, `--max-connections=${STOCK_MAX_CONNECTIONS}`],
        { cwd: REPO_ROOT },
      )
      owned.processes.push({ server, signal: 'SIGTERM', withChildren: false })
      await server.waitForLine(
        (line) => line.includes('listening'),
        READY_DEADLINE_MS,
        'stock pglite-socket listening line',
      )
      const url = `postgres://postgres@${HOST}:${port}/postgres`
      await runAdmin(url, CI_MIGRATION, 60_000)
      return url
    }),
  )
  return { urlFor: (i) => urls[i]! }
}

/** initdb, start, and a template database holding the migration, which each worker's CREATE DATABASE copies. */
async function spawnPostgresCluster(context: Context, owned: Owned): Promise<CiServer> {
  const dir = join(context.scratch, `ci-postgres-${++dataDirs}`)
  owned.dirs.push(dir)
  const { server, url } = await spawnPostgres(dir)
  owned.processes.push({ server, signal: 'SIGINT', withChildren: true })
  await runAdmin(url, `create database ${TEMPLATE_DB}`, 60_000)
  await runAdmin(withDatabase(url, TEMPLATE_DB), CI_MIGRATION, 60_000)
  return { urlFor: (i) => withDatabase(url, workerDatabase(i)), adminUrl: url }
}

function spawnTarget(name: CiTargetName, workers: number, context: Context, owned: Owned): Promise<CiServer> {
  if (name === 'ours-memory') return spawnOurs('memory', workers, context, owned)
  if (name === 'ours-no-optimizer') return spawnOurs('no-optimizer', workers, context, owned)
  if (name === 'ours-spares') return spawnOurs('spares', workers, context, owned)
  if (name === 'ours-data-dir') return spawnOurs('data-dir', workers, context, owned)
  if (name === 'ours-no-threads') return spawnOurs('no-threads', workers, context, owned)
  if (name === 'baseline-memory') return spawnOurs('baseline', workers, context, owned)
  if (name === 'baseline-no-optimizer') return spawnOurs('baseline-no-optimizer', workers, context, owned)
  if (name === 'stock') return spawnStock(workers, owned)
  return spawnPostgresCluster(context, owned)
}

// --- The workers ---

interface Report {
  message: WorkerMessage
  at: number
}

interface Worker {
  index: number
  child: ChildProcess
  loaded: Promise<void>
  report: Promise<Report>
  kill(): void
  stop(): Promise<void>
}

function forkWorker(index: number, config: WorkerConfig): Worker {
  const child = fork(WORKER_SCRIPT, [JSON.stringify(config)], {
    cwd: REPO_ROOT,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const lines: string[] = []
  const note = (text: string) => {
    lines.push(...text.split('\n').filter(Boolean))
    lines.splice(0, lines.length - 5)
  }
  for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (chunk: Buffer) => note(chunk.toString()))
  // A 'go' sent to a worker that already died: its exit reports it.
  child.on('error', (error) => note(`IPC: ${error.message}`))
  const exited = new Promise<string>((resolve) =>
    child.once('exit', (code, signal) =>
      resolve(`exited (${code ?? signal}) without a report${lines.length ? `: ${lines.join(' / ')}` : ''}`),
    ),
  )
  const loaded = Promise.race([
    new Promise<void>((resolve) => child.on('message', (m: WorkerMessage) => m.type === 'loaded' && resolve())),
    exited.then((why): never => {
      throw new Error(`worker ${index + 1} ${why}`)
    }),
  ])
  const report = Promise.race([
    new Promise<Report>((resolve) =>
      child.on(
        'message',
        (message: WorkerMessage) => message.type !== 'loaded' && resolve({ message, at: performance.now() }),
      ),
    ),
    exited.then((why): Report => ({
      message: { type: 'failed', verdict: 'error', detail: why },
      at: performance.now(),
    })),
  ])
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  const tracked = track(async () => kill(), kill)
  return {
    index,
    child,
    loaded,
    report,
    kill,
    async stop() {
      // A worker exits by itself after its report; one that does not within the deadline is killed.
      await withDeadline(exited, 10_000, `worker ${index + 1} exit`).catch((error: unknown) => {
        if (!(error instanceof StalledError)) throw error
        kill()
      })
      tracked.forget()
    },
  }
}

const VERDICT_RANK: Record<CiVerdict, number> = { ok: 0, stalled: 1, error: 2, wrong: 3 }
const worst = (a: CiVerdict, b: CiVerdict): CiVerdict => (VERDICT_RANK[b] > VERDICT_RANK[a] ? b : a)

/** Every worker loads its modules first (not timed: that is the test runner's cost), then all start at one 'go'. */
async function runSuite(configs: WorkerConfig[], sample: () => void, serverCpuSeconds: () => number): Promise<CiRun> {
  const workers = configs.map((config, i) => forkWorker(i, config))
  const timer = setInterval(sample, RSS_SAMPLE_MS)
  try {
    const loading = performance.now()
    await withDeadline(Promise.all(workers.map((w) => w.loaded)), LOAD_DEADLINE_MS, 'workers loading')
    // Not timed, but the server may work meanwhile (spares load): worth seeing.
    progress(`ci: workers loaded their modules in ${(performance.now() - loading).toFixed(0)} ms (not timed)`)
    const go = performance.now()
    const serverCpuAtGo = serverCpuSeconds()
    for (const w of workers) w.child.send({ type: 'go' })
    const stalled = (): Report => ({
      message: { type: 'failed', verdict: 'stalled', detail: `no report within ${SUITE_DEADLINE_MS} ms` },
      at: performance.now(),
    })
    const reports = await Promise.all(
      workers.map((w) =>
        withDeadline(w.report, SUITE_DEADLINE_MS, `worker ${w.index + 1}`).catch((error: unknown) => {
          if (error instanceof StalledError) return stalled()
          throw error
        }),
      ),
    )
    const serverCpuMs = (serverCpuSeconds() - serverCpuAtGo) * 1000
    const run: CiRun = {
      verdict: 'ok',
      ms: null,
      firstQueryMs: [],
      testsMs: [],
      slowestTestMs: [],
      serverCpuMs: null,
      workersCpuMs: null,
    }
    let workersCpuMs = 0
    const problems: string[] = []
    for (const [i, { message }] of reports.entries()) {
      if (message.type === 'done') {
        run.firstQueryMs.push(message.firstQueryMs)
        run.testsMs.push(message.testsMs)
        run.slowestTestMs.push(message.slowestTestMs)
        workersCpuMs += message.cpuMs
      } else if (message.type === 'failed') {
        run.verdict = worst(run.verdict, message.verdict)
        problems.push(`worker ${i + 1} ${message.verdict}: ${message.detail}`)
      }
    }
    if (run.verdict === 'ok')
      Object.assign(run, { ms: Math.max(...reports.map((r) => r.at)) - go, serverCpuMs, workersCpuMs })
    else run.detail = problems.join('; ')
    return run
  } catch (error) {
    for (const w of workers) w.kill()
    return {
      verdict: error instanceof StalledError ? 'stalled' : 'error',
      detail: (error as Error).message,
      ms: null,
      firstQueryMs: [],
      testsMs: [],
      slowestTestMs: [],
    }
  } finally {
    clearInterval(timer)
    await Promise.all(workers.map((w) => w.stop()))
  }
}

// --- One row: a target at N workers through one driver ---

async function runCell(
  target: CiTargetName,
  workers: number,
  driver: DriverName,
  tests: number,
  context: Context,
): Promise<CiRecord> {
  const record: CiRecord = {
    target,
    workers,
    driver,
    tests,
    verdict: 'ok',
    spawnToReadyMs: null,
    first: null,
    second: null,
    spawnToGreenMs: null,
    peakRssMb: null,
  }
  const owned: Owned = { processes: [], dirs: [] }
  const what = `${CI_TARGET_LABELS[target]}, ${workers} workers, ${driver}`
  try {
    const spawned = performance.now()
    let server: CiServer
    try {
      server = await spawnTarget(target, workers, context, owned)
    } catch (error) {
      record.verdict = error instanceof StalledError ? 'stalled' : 'error'
      record.detail = `spawn: ${(error as Error).message.split('\n')[0]}`
      return record
    }
    record.spawnToReadyMs = performance.now() - spawned
    progress(`ci: ${what}: ready in ${record.spawnToReadyMs.toFixed(0)} ms`)

    let peakRssKb = 0
    let peakPssKb = 0
    // One sample is the sum over the server's processes at one instant.
    const sample = () => {
      peakRssKb = Math.max(
        peakRssKb,
        owned.processes.reduce((sum, p) => sum + usageOf(p.server.pid, p.withChildren).rssKb, 0),
      )
      if (target === 'postgres')
        peakPssKb = Math.max(
          peakPssKb,
          owned.processes.reduce((sum, p) => sum + pssOf(p.server.pid, true), 0),
        )
    }
    const configs = (first: boolean): WorkerConfig[] =>
      Array.from({ length: workers }, (_, i) => ({
        url: server.urlFor(i),
        driver,
        tests,
        ...(first && server.adminUrl
          ? { create: { adminUrl: server.adminUrl, database: workerDatabase(i), template: TEMPLATE_DB } }
          : {}),
      }))
    const serverCpu = () =>
      owned.processes.reduce((sum, p) => sum + usageOf(p.server.pid, p.withChildren).cpuSeconds, 0)
    record.first = await runSuite(configs(true), sample, serverCpu)
    record.peakRssMb = peakRssKb / 1024
    if (target === 'postgres') record.peakPssMb = peakPssKb / 1024
    if (record.first.ms !== null) record.spawnToGreenMs = record.spawnToReadyMs + record.first.ms
    progress(`ci: ${what}: first run ${describeRun(record.first)}`)
    // A stalled server may still be wedged: the second run would only stall again.
    if (record.first.verdict !== 'stalled') {
      record.second = await runSuite(configs(false), () => {}, serverCpu)
      progress(`ci: ${what}: second run ${describeRun(record.second)}`)
    }
    for (const run of [record.first, record.second]) {
      if (!run || run.verdict === 'ok') continue
      record.verdict = worst(record.verdict, run.verdict)
      record.detail ??= `${run === record.first ? 'first run' : 'second run'}: ${run.detail}`
    }
    return record
  } finally {
    if (record.verdict === 'wrong') progress(`ci: !!! WRONG RESULT from ${what}: ${record.detail}`)
    await Promise.all(owned.processes.map((p) => p.server.stop(p.signal)))
    await Promise.all(owned.dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  }
}

function describeRun(run: CiRun | null): string {
  if (!run) return 'not run'
  if (run.verdict !== 'ok') return `${run.verdict.toUpperCase()}: ${run.detail}`
  return `${run.ms!.toFixed(0)} ms (first queries ${run.firstQueryMs.map((ms) => ms.toFixed(0)).join(', ')} ms; CPU: server ${run.serverCpuMs!.toFixed(0)} ms, workers ${run.workersCpuMs!.toFixed(0)} ms)`
}

const BASELINE_TARGETS: readonly CiTargetName[] = ['baseline-memory', 'baseline-no-optimizer']

/** The --baseline checkout's bin for its targets; whether it takes --spare-databases, from its --help. */
function baselineOf(options: CiOptions): Context['baseline'] {
  if (!options.baseline || !options.targets.some((t) => BASELINE_TARGETS.includes(t))) return null
  const bin = join(options.baseline, 'bin', 'pglite-dev-db.js')
  const help = execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' })
  return { bin, spares: help.includes('--spare-databases') }
}

/**
 * Every target at every worker count, the targets of one count one after another so they see the same load. The
 * migrated template is built once before (a start that is not timed, as a CI cache of node_modules keeps it).
 */
export async function runCiSuite(options: CiOptions): Promise<CiRecord[]> {
  const context: Context = {
    scratch: options.scratch,
    migrations: join(options.scratch, 'ci-migrations'),
    cacheDir: join(options.scratch, 'ci-cache'),
    baseline: baselineOf(options),
    nodeArgs: options.nodeArgs ?? [],
  }
  await writeMigrations(context.migrations)
  const kinds = [
    ...(options.targets.some((t) => t.startsWith('ours')) ? (['memory'] as const) : []),
    ...(options.targets.some((t) => BASELINE_TARGETS.includes(t)) ? (['baseline'] as const) : []),
  ]
  for (const kind of kinds) {
    progress(
      `ci: building the migrated template and its image in the cache dir${kind === 'baseline' ? ', for the baseline' : ''} (not timed)`,
    )
    const owned: Owned = { processes: [], dirs: [] }
    try {
      // Until a new database answers: by then the template is built and the image its copies start from is kept. A
      // server stopped at its URL line left the cache without them in some runs, and the timed one made them.
      const server = await spawnOurs(kind, 1, context, owned)
      await runAdmin(server.urlFor(-1), 'select 1', READY_DEADLINE_MS) // ci_w0: no worker's database
    } finally {
      await Promise.all(owned.processes.map((p) => p.server.stop(p.signal)))
    }
  }
  const targets = options.targets.filter((t) => t !== 'postgres' || hasPostgres())
  if (targets.length < options.targets.length)
    progress(
      'ci: PostgreSQL: pg_config not found: skipped (the suite needs one started from scratch, so --oracle does not stand in)',
    )
  const records: CiRecord[] = []
  for (const workers of options.workers) {
    for (const driver of options.drivers) {
      for (const target of targets) records.push(await runCell(target, workers, driver, options.tests, context))
    }
  }
  return records
}

export interface CiEngine {
  /** Tests timed, one after another, on one PGlite in the bench's process. */
  tests: number
  msPerTest: number
  /** The bench process's CPU per test: PGlite's calls, and V8 still compiling its hot paths on helper threads. */
  cpuMsPerTest: number
}

/** Tests run before the timed ones, as many as a worker's first run: V8 compiles PGlite's hot paths meanwhile. */
const ENGINE_WARM_TESTS = 20

/**
 * The engine alone: one PGlite in this process, with the suite's tables, runs `tests` of the suite's tests one after
 * another (each test's concurrent statements queue on its one session, as on a server; each statement prepared once,
 * as postgres.js does), after ENGINE_WARM_TESTS untimed. N workers' tests need N times this CPU, whatever serves them.
 */
export async function measureCiEngine(tests: number): Promise<CiEngine> {
  const db = await PGlite.create()
  try {
    for (const statement of CI_MIGRATION.split('--> statement-breakpoint')) await db.exec(statement)
    const pool = openInProcessRaw(db)
    for (const n of range(ENGINE_WARM_TESTS, 1)) await runTest(pool, n)
    const cpu = process.cpuUsage()
    const started = performance.now()
    for (const n of range(tests, 1)) await runTest(pool, n)
    const used = process.cpuUsage(cpu)
    return {
      tests,
      msPerTest: (performance.now() - started) / tests,
      cpuMsPerTest: (used.user + used.system) / 1000 / tests,
    }
  } finally {
    await db.close()
  }
}
