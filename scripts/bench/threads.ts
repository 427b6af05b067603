// Benchmark (issue 6): several databases served by one process, each PGlite in the main thread or in its own worker
// thread (src/db-thread.ts). pgbench drives every database at once; we report total tps, the thread/main ratio and
// how many cores the server process used. Only ratios of one run mean anything: the 2 cores are shared with pgbench.
// Usage: npm run bench:threads -- [--seconds N] [--repeats N] [--clients N] [--databases 1,2,4] [--workloads read,write,scan] [--json PATH] [--skip overhead]

import { readdirSync, readFileSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '../../src/server/server.ts'
import { runPgbench } from '../../harness/scenarios/pgbench.ts'
import { progress } from './cells.ts'
import { CLOCK_TICKS_PER_SECOND, releaseAll, spawnServer, usageOf } from './procs.ts'
import { REPO_ROOT, copyTemplate, createScratch } from './targets.ts'
import { measureOverhead, type OverheadRow } from './threads-overhead.ts'

type Mode = 'main' | 'thread'
/**
 * read: pgbench -S (one primary-key select per transaction); write: pgbench's TPC-B-like transaction (7 statements,
 * 3 updates and an insert); scan: one aggregate over 5,000 rows per transaction, a heavier statement (~2 ms in PGlite).
 */
const WORKLOAD_NAMES = ['read', 'write', 'scan'] as const
type WorkloadName = (typeof WORKLOAD_NAMES)[number]
const SCAN_SCRIPT =
  '\\set a random(1, 95000)\nselect count(*), sum(abalance) from pgbench_accounts where aid between :a and :a + 5000;\n'
let scanScript = ''
const workloadArgs = (name: WorkloadName): string[] =>
  name === 'read' ? ['-S'] : name === 'write' ? ['-b', 'tpcb-like'] : ['-f', scanScript]

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    repeats: { type: 'string', default: '3' },
    clients: { type: 'string', default: '4' },
    databases: { type: 'string', default: '1,2,4' },
    workloads: { type: 'string', default: WORKLOAD_NAMES.join(',') },
    json: { type: 'string', default: 'results/benchmarks-threads.json' },
    skip: { type: 'string', default: '' },
  },
})
const seconds = Number(values.seconds)
const repeats = Number(values.repeats)
const clients = Number(values.clients)
const databaseCounts = values.databases.split(',').map(Number)
const workloads = values.workloads.split(',') as WorkloadName[]
for (const w of workloads)
  if (!WORKLOAD_NAMES.includes(w)) throw new Error(`unknown workload ${w} (known: ${WORKLOAD_NAMES.join(', ')})`)

/** One timed run of one workload on every database of one server at once. */
interface Run {
  /** Sum over the databases of pgbench's tps (without connection time). */
  tps: number
  perDatabase: number[]
  /** Server process CPU seconds per wall second: all threads, the main thread, and the busiest other thread. */
  cores: number
  mainThreadCores: number
  busiestOtherThreadCores: number
  /** Server CPU per transaction (µs): what a transaction costs whatever share of the machine the server got. */
  cpuPerTxUs: number
  rssMb: number
  failures: string[]
}

/** The repeats of one (databases, workload, mode), with the medians the table shows. */
interface Cell {
  databases: number
  workload: WorkloadName
  mode: Mode
  tps: number
  cores: number
  mainThreadCores: number
  cpuPerTxUs: number
  /** thread/main tps of each pair of runs made back to back (thread cells only): the spread the load caused. */
  pairRatios: number[]
  runs: Run[]
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** CPU ticks of each thread of `pid` (/proc/PID/task/TID/stat, utime + stime). */
function threadTicks(pid: number): Map<number, number> {
  const ticks = new Map<number, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    ticks.set(Number(tid), Number(fields[11]) + Number(fields[12]))
  }
  return ticks
}

/** A data dir with pgbench's tables (scale 1), initialised through our server so it is what clients see. */
async function createTemplate(scratch: string): Promise<string> {
  const dir = join(scratch, 'template')
  const db = await PGlite.create({ dataDir: dir })
  const server = new PGLiteSocketServer({ db, port: 0 })
  try {
    await server.start()
    const init = await runPgbench(
      `postgres://postgres@127.0.0.1:${server.port}/postgres`,
      ['-i', '-s', '1', '-I', 'dtGvp', '-q'],
      { runDeadlineMs: 180_000, idleProgressReports: Infinity },
    )
    if (init.exitCode !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`)
  } finally {
    await server.stop()
    await db.close()
  }
  return dir
}

async function runOnce(urls: string[], pid: number, workload: WorkloadName): Promise<Run> {
  const c = String(clients)
  const args = ['-n', ...workloadArgs(workload), '-c', c, '-j', '1', '-T', String(seconds), '-P', '1']
  const before = threadTicks(pid)
  const started = performance.now()
  const runs = await Promise.all(
    urls.map((url) => runPgbench(url, args, { runDeadlineMs: (seconds + 60) * 1000, idleProgressReports: 5 })),
  )
  const wall = (performance.now() - started) / 1000
  const after = threadTicks(pid)
  const used = [...after].map(([tid, ticks]) => ({
    tid,
    seconds: (ticks - (before.get(tid) ?? 0)) / CLOCK_TICKS_PER_SECOND,
  }))
  const perDatabase = runs.map((run) =>
    Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(run.stdout)?.[1] ?? 0),
  )
  const failures = runs.flatMap((run, i) => {
    const failed = Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? 0)
    return run.exitCode === 0 && failed === 0
      ? []
      : [
          `db ${i + 1}: exit ${run.exitCode}${run.isKilled ? ' (stalled, killed)' : ''} ${run.stderr.trim().split('\n').pop() ?? ''}`,
        ]
  })
  const tps = perDatabase.reduce((a, b) => a + b, 0)
  const cores = used.reduce((sum, t) => sum + t.seconds, 0) / wall
  return {
    tps,
    perDatabase,
    cores,
    cpuPerTxUs: (cores * 1e6) / tps,
    mainThreadCores: (used.find((t) => t.tid === pid)?.seconds ?? 0) / wall,
    busiestOtherThreadCores: Math.max(0, ...used.filter((t) => t.tid !== pid).map((t) => t.seconds)) / wall,
    rssMb: usageOf(pid).rssKb / 1024,
    failures,
  }
}

interface Server {
  mode: Mode
  pid: number
  urls: string[]
}

/**
 * Both servers run side by side (an idle one costs nothing) and are driven in turn, ABBA, `repeats` times per
 * workload: the load of the shared machine drifts, and back-to-back pairs see about the same load.
 */
async function runDatabases(template: string, databases: number): Promise<Cell[]> {
  const started: Array<{ server: ReturnType<typeof spawnServer>; dirs: string[] }> = []
  try {
    const servers: Server[] = []
    for (const mode of ['main', 'thread'] as const) {
      const dirs = await Promise.all(Array.from({ length: databases }, () => copyTemplate(template)))
      const server = spawnServer(
        process.execPath,
        ['--import', 'tsx', join(REPO_ROOT, 'scripts/bench/threads-server.ts'), '--mode', mode, ...dirs],
        { cwd: REPO_ROOT },
      )
      started.push({ server, dirs })
      const line = await server.waitForLine((l) => l.startsWith('{"urls"'), 120_000, 'threads-server URLs')
      servers.push({ mode, pid: server.pid, urls: (JSON.parse(line) as { urls: string[] }).urls })
    }
    for (const { urls } of servers) {
      // Warm-up: JIT, WASM tier-up and caches, unmeasured.
      await Promise.all(
        urls.map((url) =>
          runPgbench(url, ['-n', '-S', '-c', String(clients), '-j', '1', '-T', '2'], {
            runDeadlineMs: 60_000,
            idleProgressReports: Infinity,
          }),
        ),
      )
    }
    const cells: Cell[] = []
    for (const workload of workloads) {
      const runs: Record<Mode, Run[]> = { main: [], thread: [] }
      for (let rep = 0; rep < repeats; rep++) {
        for (const server of rep % 2 === 0 ? servers : [...servers].reverse()) {
          const run = await runOnce(server.urls, server.pid, workload)
          runs[server.mode].push(run)
          progress(
            `${databases} db ${workload} ${server.mode} #${rep + 1}: ${run.tps.toFixed(0)} tps, ${run.cores.toFixed(2)} cores (main thread ${run.mainThreadCores.toFixed(2)}), ${run.cpuPerTxUs.toFixed(0)} µs CPU/tx${run.failures.length ? ` FAILURES ${run.failures.join('; ')}` : ''}`,
          )
        }
      }
      for (const mode of ['main', 'thread'] as const) {
        const own = runs[mode]
        cells.push({
          databases,
          workload,
          mode,
          tps: median(own.map((r) => r.tps)),
          cores: median(own.map((r) => r.cores)),
          mainThreadCores: median(own.map((r) => r.mainThreadCores)),
          cpuPerTxUs: median(own.map((r) => r.cpuPerTxUs)),
          pairRatios: mode === 'thread' ? own.map((r, i) => r.tps / runs.main[i]!.tps) : [],
          runs: own,
        })
      }
    }
    return cells
  } finally {
    for (const { server, dirs } of started) {
      await server.stop('SIGTERM', 30_000)
      await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
    }
  }
}

function render(overhead: OverheadRow[], cells: Cell[]): string {
  const lines = [
    `Several databases in one server process: PGlite in the main thread vs one worker thread each (${clients} pgbench clients per database, ${repeats} × ${seconds} s per mode, ${os.cpus().length} cores shared with pgbench)`,
    '',
    'tps, cores and CPU/tx are medians of the runs; "pairs": thread/main of runs made back to back. "cores": server CPU seconds per second,',
    'all threads (main thread alone in brackets); "CPU/tx": server CPU per transaction.',
    '',
    '| databases | workload | main tps | thread tps | thread/main | pairs (min–max) | cores, main | cores, thread | CPU/tx main µs | CPU/tx thread µs |',
    '| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |',
  ]
  for (const databases of databaseCounts) {
    for (const workload of workloads) {
      const main = cells.find((c) => c.databases === databases && c.workload === workload && c.mode === 'main')
      const thread = cells.find((c) => c.databases === databases && c.workload === workload && c.mode === 'thread')
      if (!main || !thread) continue
      const cores = (c: Cell) => `${c.cores.toFixed(2)} (${c.mainThreadCores.toFixed(2)})`
      const pairs = `${Math.min(...thread.pairRatios).toFixed(2)}–${Math.max(...thread.pairRatios).toFixed(2)}`
      lines.push(
        `| ${databases} | ${workload} | ${main.tps.toFixed(0)} | ${thread.tps.toFixed(0)} | ${(thread.tps / main.tps).toFixed(2)} | ${pairs} | ${cores(main)} | ${cores(thread)} | ${main.cpuPerTxUs.toFixed(0)} | ${thread.cpuPerTxUs.toFixed(0)} |`,
      )
    }
  }
  if (overhead.length > 0) {
    lines.push(
      '',
      'Per call, in process, no sockets (best of 3 rounds):',
      '',
      '| call | output bytes | main µs | thread µs | added µs |',
      '| --- | ---: | ---: | ---: | ---: |',
    )
    for (const r of overhead)
      lines.push(
        `| ${r.call} | ${r.bytes.toFixed(0)} | ${r.mainUs.toFixed(1)} | ${r.threadUs.toFixed(1)} | ${r.addedUs.toFixed(1)} |`,
      )
  }
  return `${lines.join('\n')}\n`
}

async function main(): Promise<void> {
  const loadStart = os.loadavg()
  const scratch = await createScratch()
  progress('template: pgbench -i -s 1')
  const template = await createTemplate(scratch)
  scanScript = join(scratch, 'scan.sql')
  await writeFile(scanScript, SCAN_SCRIPT)
  let overhead: OverheadRow[] = []
  if (!values.skip.includes('overhead')) {
    progress('per-call overhead')
    overhead = await measureOverhead(await copyTemplate(template), await copyTemplate(template))
  }
  const cells: Cell[] = []
  for (const databases of databaseCounts) cells.push(...(await runDatabases(template, databases)))
  const results = {
    meta: {
      date: new Date().toISOString(),
      command: `npm run bench:threads -- ${process.argv.slice(2).join(' ')}`.trim(),
      node: process.version,
      cpus: os.cpus().length,
      loadAverage: { start: loadStart, end: os.loadavg() },
      seconds,
      repeats,
      clientsPerDatabase: clients,
    },
    overhead,
    cells,
  }
  await writeFile(values.json, `${JSON.stringify(results, null, 2)}\n`)
  process.stdout.write(render(overhead, cells))
  process.stdout.write(`\n${JSON.stringify(results)}\n`)
}

try {
  await main()
} finally {
  await releaseAll()
}
