// The figures that are not closed loops: pgbench's own tps, pglite-dev-db's start-up time and idle memory, what an
// idle connection costs it, and the top self-time functions of a server CPU profile.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import type { Socket } from 'node:net'
import { join, relative } from 'node:path'
import pg from 'pg'
import { fileURLToPath } from 'node:url'
import { runPgbench } from '../../harness/scenarios/pgbench.ts'
import { openIdleConnection } from './wire.ts'
import { sleep, spawnServer, usageOf, withDeadline } from './procs.ts'
import { MIGRATIONS_DIR, OURS_BIN, REPO_ROOT, copyTemplate, startOurs, type Target } from './targets.ts'
import type { Verdict } from './loop.ts'
import { COLLECT_WHEN_IDLE_MS } from '../../src/engine/collect-garbage.ts'

// --- pgbench ---

export type PgbenchMode = 'simple' | 'extended' | 'prepared'
export const PGBENCH_MODES: readonly PgbenchMode[] = ['simple', 'extended', 'prepared']
export const PGBENCH_CLIENTS = 8

export interface PgbenchResult {
  mode: PgbenchMode
  tps: number | null
  verdict: Verdict
  detail?: string
}

const lastLine = (text: string): string =>
  text
    .trim()
    .split('\n')
    .filter((line) => !line.startsWith('progress:'))
    .pop() ?? ''

/**
 * `pgbench -i -s 1` (server-side generation, -I dtGvp: the default client-side COPY kills a stock PGlite),
 * then -c 8 -j 8 -T seconds in each query mode (-j = -c: libpq's PQprepare blocks its thread, see harness/scenarios/pgbench.ts).
 * A target that fails a mode is restarted and initialised again before the next.
 */
export async function pgbenchSuite(target: Target, seconds: number): Promise<PgbenchResult[]> {
  const results: PgbenchResult[] = []
  let needsInit = true
  for (const mode of PGBENCH_MODES) {
    if (needsInit) {
      const init = await runPgbench(target.url, ['-i', '-s', '1', '-I', 'dtGvp', '-q'], {
        runDeadlineMs: 120_000,
        idleProgressReports: Infinity,
      })
      if (init.exitCode !== 0) {
        results.push({
          mode,
          tps: null,
          verdict: init.isKilled ? 'stalled' : 'error',
          detail: `pgbench -i: ${lastLine(init.stderr)}`,
        })
        await target.restart()
        continue
      }
      needsInit = false
    }
    // -n: no vacuum before the run (it would truncate history between modes; PGlite and PostgreSQL alike).
    const c = String(PGBENCH_CLIENTS)
    const run = await runPgbench(target.url, ['-n', '-c', c, '-j', c, '-T', String(seconds), '-M', mode, '-P', '1'], {
      runDeadlineMs: (seconds + 30) * 1000,
      idleProgressReports: 3,
    })
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(run.stdout)
    const failed = Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? 0)
    if (run.exitCode === 0 && tps && failed === 0) {
      results.push({ mode, tps: Number(tps[1]), verdict: 'ok' })
      continue
    }
    const aborted = /aborted in command \d+(?: query \d+)?: (.*)/.exec(run.stderr)?.[1]
    results.push({
      mode,
      tps: tps ? Number(tps[1]) : null,
      verdict: run.isKilled ? 'stalled' : 'error',
      detail: run.isKilled
        ? 'no progress: killed'
        : (aborted ?? (failed > 0 ? `${failed} failed transactions` : lastLine(run.stderr))).slice(0, 120),
    })
    await target.restart()
    needsInit = true
  }
  return results
}

// --- Start-up time and idle memory of pglite-dev-db ---

export interface StartupRun {
  ms: number
  /** CPU the server used from spawn to the URL line (user + system): less at the mercy of a loaded machine than ms. */
  cpuMs?: number
  /** RSS IDLE_AFTER_MS after the server is ready (its 'ready' log line), before any client: what an idle server settles at. */
  idleRssKb: number
  /**
   * The highest RSS sampled from the ready line to then. On Node 24 it is far above the settled figure: V8 optimizes
   * PGlite's SQL parser (its largest hot function) in the background for a second or two after the first queries.
   */
  peakRssKb?: number
  /** CPU the server used from spawn to the idle reading: its start, with what V8 compiles meanwhile (absent in older results). */
  idleCpuMs?: number
  /** After the idle reading, HEAVY_STATEMENT's time in each of HEAVY_RUNS runs, one after another (by Node only). */
  heavyMs?: number[]
  /** RSS once those ran: with the optimizer, what it compiled for them. */
  heavyRssKb?: number
}

/** A statement that keeps a few of Postgres's functions busy for a while: what V8's optimizer is for. */
export const HEAVY_STATEMENT = 'select count(*) from generate_series(1, 2000000)'
export const HEAVY_RUNS = 5

/** An idle server's RSS is read this long after its URL line, and sampled every IDLE_SAMPLE_MS until then. */
const IDLE_AFTER_MS = 4000
const IDLE_SAMPLE_MS = 100

/** `node bin/pglite-dev-db.js --port 0 --migrations migrations` plus `modeArgs`: time from spawn to the URL line. */
async function startOnce(modeArgs: string[], node = process.execPath, heavy = false): Promise<StartupRun> {
  const started = performance.now()
  const server = spawnServer(
    node,
    [OURS_BIN, ...modeArgs, '--port', '0', '--migrations', MIGRATIONS_DIR, '--log-level', 'info'],
    { cwd: REPO_ROOT },
  )
  try {
    // The 'ready' log line follows the URL line once the database is open and migrated.
    const ready = server.waitForLine((line) => /\bready url=/.test(line), 60_000, 'pglite-dev-db ready log line')
    const url = await server.waitForLine((line) => line.startsWith('postgres://'), 60_000, 'pglite-dev-db URL line')
    const ms = performance.now() - started
    const cpuMs = usageOf(server.pid).cpuSeconds * 1000
    let rssKb = usageOf(server.pid).rssKb
    let peakRssKb = rssKb
    await ready
    for (let waited = 0; waited < IDLE_AFTER_MS; waited += IDLE_SAMPLE_MS) {
      await sleep(IDLE_SAMPLE_MS)
      rssKb = usageOf(server.pid).rssKb
      peakRssKb = Math.max(peakRssKb, rssKb)
    }
    const run: StartupRun = { ms, cpuMs, idleRssKb: rssKb, peakRssKb, idleCpuMs: usageOf(server.pid).cpuSeconds * 1000 }
    if (heavy) {
      run.heavyMs = await timeHeavyStatement(url.trim())
      run.heavyRssKb = usageOf(server.pid).rssKb
    }
    return run
  } finally {
    await server.stop('SIGTERM')
  }
}

async function timeHeavyStatement(url: string): Promise<number[]> {
  const client = new pg.Client({ connectionString: url })
  try {
    await withDeadline(client.connect(), 30_000, 'connect for the heavy statement')
    const times: number[] = []
    for (let i = 0; i < HEAVY_RUNS; i++) {
      const started = performance.now()
      await withDeadline(client.query(HEAVY_STATEMENT), 60_000, HEAVY_STATEMENT)
      times.push(performance.now() - started)
    }
    return times
  } finally {
    await client.end()
  }
}

export interface StartupResult {
  memory: StartupRun[]
  dataDir: StartupRun[]
  /** A data dir that does not exist yet: a user's first start (absent in older results). */
  newDataDir?: StartupRun[]
  /** `--memory` and the reopened data dir with `--no-wasm-optimizer` (absent in older results). */
  withoutOptimizer?: { memory: StartupRun[]; dataDir: StartupRun[] }
  /** The reopened data dir on each Node of --startup-nodes, with V8's WASM optimizer and without (absent in older results). */
  idleByNode?: Array<{ node: string; optimizer: boolean; runs: StartupRun[] }>
  /** `--memory`, no spares: the server's RSS each database beyond the first adds, once idle (absent in older results). */
  extraDatabase?: ExtraDatabaseRss
  /** Spawn to the URL line and to a first query answered, per Node version and checkout (absent in older results). */
  firstQuery?: FirstQueryRecord[]
}

export type StartupMode = 'memory' | 'dataDir'

export interface FirstQueryRecord {
  /** `process.version` of the Node that ran the server. */
  node: string
  /** This checkout's server, or --baseline's. */
  target: 'ours' | 'baseline'
  mode: StartupMode
  /** Spawn to the URL line, each run. */
  urlMs: number[]
  /** Spawn to the first query answered (a client connecting as soon as the URL line is out), each run. */
  queryMs: number[]
}

/** Where the servers to time come from: the Node binaries (path → version), and --baseline's checkout. */
export interface StartupSetup {
  nodes: ReadonlyArray<{ path: string; version: string }>
  baseline?: string
}

export interface ExtraDatabaseRss {
  databases: number
  /** Idle with its main database, after one query (the same wait as after the databases). */
  baseRssKb: number
  /** Idle again after `databases` more were made, one after another, each answering a query. */
  rssKb: number
}

/** Databases made for the per-database memory figure. */
const EXTRA_DATABASES = 4
/** How long the server is left idle before each reading: past its threads' collection once idle (between one and two COLLECT_WHEN_IDLE_MS). */
const IDLE_COLLECTED_MS = 2 * COLLECT_WHEN_IDLE_MS + 1000

/** `--memory` without spares: RSS idle, then idle again after EXTRA_DATABASES new databases each answered a query. */
async function measureExtraDatabases(): Promise<ExtraDatabaseRss> {
  const server = spawnServer(
    process.execPath,
    [
      OURS_BIN,
      '--memory',
      '--spare-databases',
      '0',
      '--port',
      '0',
      '--migrations',
      MIGRATIONS_DIR,
      '--log-level',
      'warn',
    ],
    { cwd: REPO_ROOT },
  )
  try {
    const url = await server.waitForLine((line) => line.startsWith('postgres://'), 60_000, 'pglite-dev-db URL line')
    const queryIn = async (database: string) => {
      const client = new pg.Client({
        connectionString: url.replace(/\/[^/]*$/, `/${database}`),
        connectionTimeoutMillis: 60_000,
      })
      try {
        await withDeadline(client.connect(), 60_000, `connect to ${database}`)
        await withDeadline(client.query('select count(*) from customers'), 60_000, `first query in ${database}`)
      } finally {
        await client.end()
      }
    }
    await queryIn('postgres')
    await sleep(IDLE_COLLECTED_MS)
    const baseRssKb = usageOf(server.pid).rssKb
    for (let i = 1; i <= EXTRA_DATABASES; i++) await queryIn(`extra_${i}`)
    await sleep(IDLE_COLLECTED_MS)
    return { databases: EXTRA_DATABASES, baseRssKb, rssKb: usageOf(server.pid).rssKb }
  } finally {
    await server.stop('SIGTERM')
  }
}

/** `--memory` (initdb in WASM every time) and a data dir that is already migrated (a copy of the template). */
export async function measureStartup(
  template: string,
  runs: number,
  setup: StartupSetup = { nodes: [] },
): Promise<StartupResult> {
  const result: StartupResult = { memory: [], dataDir: [], firstQuery: [] }
  for (let i = 0; i < runs; i++) result.memory.push(await startOnce(['--memory']))
  const dataDir = await copyTemplate(template)
  for (let i = 0; i < runs; i++) result.dataDir.push(await startOnce(['--data-dir', dataDir]))
  result.newDataDir = []
  for (let i = 0; i < runs; i++) {
    const parent = await mkdtemp(join(tmpdir(), 'pglite-bench-new-'))
    try {
      result.newDataDir.push(await startOnce(['--data-dir', join(parent, 'data')]))
    } finally {
      await rm(parent, { recursive: true, force: true })
    }
  }
  // The same idle servers without V8's optimizing compiler for Postgres's WASM, whose work at start is most of the
  // difference in their memory (`--no-wasm-optimizer`).
  const withoutOptimizer = { memory: [] as StartupRun[], dataDir: [] as StartupRun[] }
  for (let i = 0; i < runs; i++) withoutOptimizer.memory.push(await startOnce(['--memory', '--no-wasm-optimizer']))
  for (let i = 0; i < runs; i++)
    withoutOptimizer.dataDir.push(await startOnce(['--data-dir', dataDir, '--no-wasm-optimizer']))
  result.withoutOptimizer = withoutOptimizer
  // Per Node version asked for (--startup-nodes): what the optimizer costs a reopened data dir's idle server on each,
  // and what it gains a CPU-heavy statement.
  result.idleByNode = []
  for (const node of setup.nodes)
    for (const optimizer of [true, false]) {
      const record = { node: node.version, optimizer, runs: [] as StartupRun[] }
      for (let i = 0; i < runs; i++)
        record.runs.push(
          await startOnce(['--data-dir', dataDir, ...(optimizer ? [] : ['--no-wasm-optimizer'])], node.path, true),
        )
      result.idleByNode.push(record)
    }
  result.extraDatabase = await measureExtraDatabases()
  const targets = setup.baseline ? (['ours', 'baseline'] as const) : (['ours'] as const)
  const nodes = setup.nodes.length > 0 ? setup.nodes : [{ path: process.execPath, version: process.version }]
  // Once each, unmeasured: a checkout's first --memory start may build its migrated template (its own cache).
  for (const target of targets)
    await firstQueryOnce(process.execPath, target === 'baseline' ? setup.baseline! : REPO_ROOT, ['--memory'])
  for (const node of nodes) {
    for (const mode of ['dataDir', 'memory'] as const) {
      const records = targets.map((target): FirstQueryRecord => ({
        node: node.version,
        target,
        mode,
        urlMs: [],
        queryMs: [],
      }))
      const dirs = await Promise.all(targets.map(() => (mode === 'dataDir' ? copyTemplate(template) : null)))
      // Alternating, so that the two checkouts meet the same moments of a shared machine.
      for (let i = 0; i < runs; i++) {
        for (const [t, target] of targets.entries()) {
          const checkout = target === 'baseline' ? setup.baseline! : REPO_ROOT
          const run = await firstQueryOnce(node.path, checkout, dirs[t] ? ['--data-dir', dirs[t]] : ['--memory'])
          records[t]!.urlMs.push(run.urlMs)
          records[t]!.queryMs.push(run.queryMs)
        }
      }
      result.firstQuery!.push(...records)
    }
  }
  return result
}

/**
 * The bin of `checkout` run by `node` with the example migrations: ms from spawn to its URL line, and to the answer
 * of a first query that a client sends as soon as that line is out (it waits for the database if it must).
 */
async function firstQueryOnce(
  node: string,
  checkout: string,
  modeArgs: string[],
): Promise<{ urlMs: number; queryMs: number }> {
  const started = performance.now()
  const server = spawnServer(
    node,
    [
      join(checkout, 'bin', 'pglite-dev-db.js'),
      ...modeArgs,
      '--port',
      '0',
      '--migrations',
      MIGRATIONS_DIR,
      '--log-level',
      'warn',
    ],
    { cwd: checkout },
  )
  try {
    const url = await server.waitForLine((line) => line.startsWith('postgres://'), 60_000, 'pglite-dev-db URL line')
    const urlMs = performance.now() - started
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 60_000 })
    try {
      await withDeadline(client.connect(), 60_000, 'first connect')
      await withDeadline(client.query('select count(*) from customers'), 60_000, 'first query')
    } catch (error) {
      throw new Error(
        `first query to ${checkout} (${node} ${modeArgs.join(' ')}) failed: ${(error as Error).message}\n${server.tail()}`,
        { cause: error },
      )
    } finally {
      await client.end()
    }
    return { urlMs, queryMs: performance.now() - started }
  } finally {
    await server.stop('SIGTERM')
  }
}

// --- Idle connections ---

export interface ConnectionCost {
  baseRssKb: number
  /** RSS after each count of idle connections was reached; per connection against the base and against the previous step. */
  steps: Array<{ connections: number; rssKb: number; kbPerConnection: number; kbPerAddedConnection: number }>
}

const CONNECT_BATCH = 50
const SETTLE_MS = 1000

async function openIdle(hostname: string, port: number, sockets: Socket[], upTo: number): Promise<void> {
  while (sockets.length < upTo) {
    const batch = Math.min(CONNECT_BATCH, upTo - sockets.length)
    sockets.push(
      ...(await withDeadline(
        Promise.all(Array.from({ length: batch }, () => openIdleConnection(hostname, port))),
        30_000,
        `${batch} idle connections`,
      )),
    )
  }
}

/**
 * Open idle connections (startup, then nothing) to a fresh pglite-dev-db and read its RSS at each count. A first
 * round of the largest count is opened and closed before the base is read: the allocations it makes let V8 collect
 * the start-up garbage, which would otherwise be freed during the measured rounds and hide their cost.
 */
export async function measureConnectionCost(template: string, counts: readonly number[]): Promise<ConnectionCost> {
  const max = Math.max(...counts)
  const target = await startOurs({ template, maxConnections: max + 10 })
  const sockets: Socket[] = []
  const { hostname, port } = new URL(target.url)
  try {
    await openIdle(hostname, Number(port), sockets, max)
    for (const socket of sockets.splice(0)) socket.destroy()
    await sleep(IDLE_COLLECTED_MS)
    const baseRssKb = target.usage()!.rssKb
    const steps: ConnectionCost['steps'] = []
    let previous = { connections: 0, rssKb: baseRssKb }
    for (const count of [...counts].sort((a, b) => a - b)) {
      await openIdle(hostname, Number(port), sockets, count)
      await sleep(SETTLE_MS)
      const rssKb = target.usage()!.rssKb
      steps.push({
        connections: count,
        rssKb,
        kbPerConnection: (rssKb - baseRssKb) / count,
        kbPerAddedConnection: (rssKb - previous.rssKb) / (count - previous.connections),
      })
      previous = { connections: count, rssKb }
    }
    return { baseRssKb, steps }
  } finally {
    for (const socket of sockets) socket.destroy()
    await target.stop()
  }
}

// --- CPU profile: self time per function ---

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
}

export interface ProfileEntry {
  name: string
  where: string
  selfMs: number
  percent: number
}

/**
 * Top self-time functions of a V8 .cpuprofile, and the same by area (WASM, PGlite's JS, our src/, Node, idle, GC).
 * `skipMs`: leave out the samples of the profile's first milliseconds (a server's start-up).
 */
export async function summarizeProfile(
  path: string,
  top: number,
  skipMs = 0,
): Promise<{ functions: ProfileEntry[]; areas: ProfileEntry[]; totalMs: number }> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as {
    nodes: ProfileNode[]
    startTime: number
    endTime: number
    samples: number[]
    timeDeltas: number[]
  }
  // Each sample stands for the time since the previous one (µs), so a loaded machine's sparse sampling still adds up.
  const hits = new Map<number, number>()
  let at = 0
  for (const [i, id] of profile.samples.entries()) {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (at / 1000 >= skipMs) hits.set(id, (hits.get(id) ?? 0) + delta / 1000)
  }
  const byFunction = new Map<string, ProfileEntry>()
  const byArea = new Map<string, ProfileEntry>()
  const add = (map: Map<string, ProfileEntry>, key: string, name: string, where: string, ms: number) => {
    const entry = map.get(key) ?? { name, where, selfMs: 0, percent: 0 }
    entry.selfMs += ms
    map.set(key, entry)
  }
  let totalMs = 0
  for (const node of profile.nodes) {
    const ms = hits.get(node.id) ?? 0
    if (ms === 0) continue
    totalMs += ms
    const { functionName } = node.callFrame
    const { url, where } = await placeOf(node.callFrame)
    add(byFunction, `${functionName}@${where}`, functionName || '(anonymous)', where, ms)
    add(byArea, areaOf(functionName, url), areaOf(functionName, url), '', ms)
  }
  const ranked = (map: Map<string, ProfileEntry>, n: number) =>
    [...map.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, n)
      .map((e) => ({ ...e, percent: (100 * e.selfMs) / totalMs }))
  return { functions: ranked(byFunction, top), areas: ranked(byArea, 20), totalMs }
}

/**
 * Where a profile's function is: in the CLI's bundle (bin/cli-bundle.js), the src/ file it came from (`url` then that
 * file's, for areaOf); elsewhere its file, line and column.
 */
export async function placeOf({
  url,
  lineNumber,
  columnNumber,
}: ProfileNode['callFrame']): Promise<{ url: string; where: string }> {
  const source = await bundleSource(url, lineNumber)
  if (source) return { url: `${REPO_ROOT}${source}`, where: `${source} (bundle line ${lineNumber + 1})` }
  return { url, where: url ? `${shortUrl(url)}:${lineNumber + 1}:${columnNumber + 1}` : '' }
}

/** The two tables `--profile` prints: self time by area, then the top functions. */
export function renderProfile(summary: Awaited<ReturnType<typeof summarizeProfile>>, title: string): string {
  const rows = (entries: ProfileEntry[]) =>
    entries.map((e) => `| ${e.name} | ${e.where} | ${e.selfMs.toFixed(0)} | ${e.percent.toFixed(1)}% |`)
  return [
    `${title}; ${(summary.totalMs / 1000).toFixed(1)} s sampled`,
    '',
    '| area | | self ms | share |',
    '| --- | --- | --- | --- |',
    ...rows(summary.areas),
    '',
    '| function | where | self ms | share |',
    '| --- | --- | --- | --- |',
    ...rows(summary.functions),
    '',
  ].join('\n')
}

/** Per bundle file: the line each module starts at, from esbuild's `// src/...` comments (unminified output). */
const bundleModules = new Map<string, Promise<Array<{ line: number; source: string }>>>()

async function bundleSource(url: string, line: number): Promise<string | null> {
  if (!/\/dist\/cli-[0-9a-f]+\/[^/]+\.mjs$/.test(url)) return null
  let modules = bundleModules.get(url)
  if (!modules) {
    modules = readFile(fileURLToPath(url), 'utf8').then(
      (text) =>
        text
          .split('\n')
          .flatMap((content, index) =>
            /^\/\/ (src\/\S+\.ts)$/.exec(content)?.[1]
              ? [{ line: index, source: /^\/\/ (\S+)$/.exec(content)![1]! }]
              : [],
          ),
      () => [],
    )
    bundleModules.set(url, modules)
  }
  return (await modules).findLast((m) => m.line <= line)?.source ?? null
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '')
  return path.startsWith(REPO_ROOT) ? relative(REPO_ROOT, path) : path
}

function areaOf(functionName: string, url: string): string {
  if (functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(program)')
    return functionName
  // A database thread's blocking waits (src/engine/ring.ts): time asleep, which the profile counts as this function's.
  if (functionName === 'blockedWait') return '(asleep in Atomics.wait)'
  if (url.startsWith('wasm://') || /^(wasm-function|\$)/.test(functionName)) return 'PGlite WASM (Postgres)'
  if (url.includes('/@electric-sql/pglite/')) return "PGlite's JS"
  const folder = /\/src\/([a-z-]+)\//.exec(url)?.[1]
  if (folder) return `pglite-dev-db src/${folder}`
  if (url.includes('/node_modules/')) return 'other packages (tsx, drizzle, ...)'
  if (url.startsWith('node:') || url === '') return 'Node.js internals and natives'
  return 'other'
}
