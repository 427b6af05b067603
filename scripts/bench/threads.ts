// Benchmark (issue 6): several databases served by one process, each PGlite in the main thread or in its own worker
// thread (src/db-thread.ts). pgbench drives every database at once; we report total tps, the thread/main ratio and
// how many cores the server process used. Only ratios of one run mean anything: the 2 cores are shared with pgbench.
// Usage: npm run bench:threads -- [--seconds N] [--clients N] [--databases 1,2,4] [--workloads read,write] [--json PATH] [--skip overhead]

import { readdirSync, readFileSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '../../src/socket/server.ts'
import { runPgbench } from '../../test/scenarios/pgbench.ts'
import { progress } from './cells.ts'
import { CLOCK_TICKS_PER_SECOND, releaseAll, spawnServer, usageOf } from './procs.ts'
import { REPO_ROOT, copyTemplate, createScratch } from './targets.ts'
import { measureOverhead, type OverheadRow } from './threads-overhead.ts'

type Mode = 'main' | 'thread'
const WORKLOADS = { read: ['-S'], write: ['-b', 'tpcb-like'] } as const
type WorkloadName = keyof typeof WORKLOADS

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' }, clients: { type: 'string', default: '4' }, databases: { type: 'string', default: '1,2,4' },
    workloads: { type: 'string', default: 'read,write' }, json: { type: 'string', default: 'docs/benchmarks-threads.json' }, skip: { type: 'string', default: '' },
  },
})
const seconds = Number(values.seconds)
const clients = Number(values.clients)
const databaseCounts = values.databases.split(',').map(Number)
const workloads = values.workloads.split(',') as WorkloadName[]
for (const w of workloads) if (!(w in WORKLOADS)) throw new Error(`unknown workload ${w} (known: read, write)`)

interface Cell {
  databases: number
  workload: WorkloadName
  mode: Mode
  /** Sum over the databases of pgbench's tps (without connection time). */
  tps: number
  perDatabase: number[]
  /** Server process CPU seconds per wall second: all threads, the main thread, and the busiest other thread. */
  cores: number
  mainThreadCores: number
  busiestOtherThreadCores: number
  rssMb: number
  failures: string[]
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
    const init = await runPgbench(`postgres://postgres@127.0.0.1:${server.port}/postgres`, ['-i', '-s', '1', '-I', 'dtGvp', '-q'], { runDeadlineMs: 180_000, idleProgressReports: Infinity })
    if (init.exitCode !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`)
  } finally {
    await server.stop()
    await db.close()
  }
  return dir
}

async function runCell(urls: string[], pid: number, workload: WorkloadName): Promise<Omit<Cell, 'databases' | 'workload' | 'mode'>> {
  const c = String(clients)
  const args = ['-n', ...WORKLOADS[workload], '-c', c, '-j', '1', '-T', String(seconds), '-P', '1']
  const before = threadTicks(pid)
  const started = performance.now()
  const runs = await Promise.all(urls.map((url) => runPgbench(url, args, { runDeadlineMs: (seconds + 60) * 1000, idleProgressReports: 5 })))
  const wall = (performance.now() - started) / 1000
  const after = threadTicks(pid)
  const used = [...after].map(([tid, ticks]) => ({ tid, seconds: (ticks - (before.get(tid) ?? 0)) / CLOCK_TICKS_PER_SECOND }))
  const perDatabase = runs.map((run) => Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(run.stdout)?.[1] ?? 0))
  const failures = runs.flatMap((run, i) => {
    const failed = Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? 0)
    return run.exitCode === 0 && failed === 0 ? [] : [`db ${i + 1}: exit ${run.exitCode}${run.isKilled ? ' (stalled, killed)' : ''} ${run.stderr.trim().split('\n').pop() ?? ''}`]
  })
  return {
    tps: perDatabase.reduce((a, b) => a + b, 0),
    perDatabase,
    cores: used.reduce((sum, t) => sum + t.seconds, 0) / wall,
    mainThreadCores: (used.find((t) => t.tid === pid)?.seconds ?? 0) / wall,
    busiestOtherThreadCores: Math.max(0, ...used.filter((t) => t.tid !== pid).map((t) => t.seconds)) / wall,
    rssMb: usageOf(pid).rssKb / 1024,
    failures,
  }
}

async function runServer(template: string, databases: number, mode: Mode): Promise<Cell[]> {
  const dirs = await Promise.all(Array.from({ length: databases }, () => copyTemplate(template)))
  const server = spawnServer(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/bench/threads-server.ts'), '--mode', mode, ...dirs], { cwd: REPO_ROOT })
  try {
    const line = await server.waitForLine((l) => l.startsWith('{"urls"'), 120_000, 'threads-server URLs')
    const { urls } = JSON.parse(line) as { urls: string[] }
    // Warm-up: JIT and caches, unmeasured.
    await Promise.all(urls.map((url) => runPgbench(url, ['-n', '-S', '-c', String(clients), '-j', '1', '-T', '2'], { runDeadlineMs: 60_000, idleProgressReports: Infinity })))
    const cells: Cell[] = []
    for (const workload of workloads) {
      const cell = { databases, workload, mode, ...(await runCell(urls, server.pid, workload)) }
      progress(`${databases} db ${workload} ${mode}: ${cell.tps.toFixed(0)} tps, ${cell.cores.toFixed(2)} cores (main thread ${cell.mainThreadCores.toFixed(2)})${cell.failures.length ? ` FAILURES ${cell.failures.join('; ')}` : ''}`)
      cells.push(cell)
    }
    return cells
  } finally {
    await server.stop('SIGTERM', 30_000)
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  }
}

function render(overhead: OverheadRow[], cells: Cell[]): string {
  const lines = [
    `Several databases in one server process: PGlite in the main thread vs one worker thread each (${clients} pgbench clients per database, ${seconds} s per cell, ${os.cpus().length} cores shared with pgbench)`,
    '',
    '| databases | workload | main tps | thread tps | thread/main | cores used main | cores used thread | main thread main | main thread thread |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const databases of databaseCounts) {
    for (const workload of workloads) {
      const main = cells.find((c) => c.databases === databases && c.workload === workload && c.mode === 'main')
      const thread = cells.find((c) => c.databases === databases && c.workload === workload && c.mode === 'thread')
      if (!main || !thread) continue
      lines.push(`| ${databases} | ${workload} | ${main.tps.toFixed(0)} | ${thread.tps.toFixed(0)} | ${(thread.tps / main.tps).toFixed(2)} | ${main.cores.toFixed(2)} | ${thread.cores.toFixed(2)} | ${main.mainThreadCores.toFixed(2)} | ${thread.mainThreadCores.toFixed(2)} |`)
    }
  }
  if (overhead.length > 0) {
    lines.push('', 'Per call, in process, no sockets (best of 3 rounds):', '', '| call | output bytes | main µs | thread µs | added µs |', '| --- | ---: | ---: | ---: | ---: |')
    for (const r of overhead) lines.push(`| ${r.call} | ${r.bytes.toFixed(0)} | ${r.mainUs.toFixed(1)} | ${r.threadUs.toFixed(1)} | ${r.addedUs.toFixed(1)} |`)
  }
  return `${lines.join('\n')}\n`
}

async function main(): Promise<void> {
  const loadStart = os.loadavg()
  const scratch = await createScratch()
  progress('template: pgbench -i -s 1')
  const template = await createTemplate(scratch)
  let overhead: OverheadRow[] = []
  if (!values.skip.includes('overhead')) {
    progress('per-call overhead')
    overhead = await measureOverhead(await copyTemplate(template), await copyTemplate(template))
  }
  const cells: Cell[] = []
  for (const databases of databaseCounts) {
    for (const mode of ['main', 'thread'] as const) cells.push(...(await runServer(template, databases, mode)))
  }
  const results = {
    meta: { date: new Date().toISOString(), command: `npm run bench:threads -- ${process.argv.slice(2).join(' ')}`.trim(), node: process.version, cpus: os.cpus().length, loadAverage: { start: loadStart, end: os.loadavg() }, seconds, clientsPerDatabase: clients },
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
