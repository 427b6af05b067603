// Where the CPU of making databases goes: a `--memory` server is spawned with N spares, and once its log says they
// are loaded, the CPU of each of its threads is read from /proc: the main thread, the threads Node had started by the
// URL line (V8's helpers, which compile and collect garbage for every isolate, and Node's own), and the threads
// started after it (each database's thread, libuv's pool). Node options to try go to the server (--node-args).
// Usage: npm run -s bench:spares-cpu -- [--spares 4] [--runs 3] [--node-args=--liftoff-only]... [--json PATH]
// (each --node-args is one row; none: the server as it is). Linux only (/proc).

import { readFileSync, readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { spawnServer } from './procs.ts'
import { REPO_ROOT } from './targets.ts'

const OURS_BIN = join(REPO_ROOT, 'bin', 'pglite-dev-db.js')
const DEADLINE_MS = 60_000

interface Run {
  loadedMs: number
  cpuMs: { main: number; startedByUrl: number; startedAfter: number; total: number }
}

/** CPU (ms) of each thread of `pid`, by thread id. */
function threadCpu(pid: number): Map<number, number> {
  const cpu = new Map<number, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks of 10 ms.
    cpu.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * 10)
  }
  return cpu
}

async function runOnce(spares: number, nodeArgs: string[]): Promise<Run> {
  const started = performance.now()
  const server = spawnServer(
    process.execPath,
    [...nodeArgs, OURS_BIN, '--memory', '--spare-databases', String(spares), '--port', '0', '--log-level', 'info'],
    { cwd: REPO_ROOT },
  )
  try {
    const loaded = server.waitForLine((line) => line.includes('databases loaded ahead'), DEADLINE_MS, 'spares loaded')
    await server.waitForLine((line) => line.startsWith('postgres://'), DEADLINE_MS, 'URL line')
    const byUrl = new Set(threadCpu(server.pid).keys())
    await loaded
    const loadedMs = performance.now() - started
    const cpu = threadCpu(server.pid)
    const sum = (keep: (tid: number) => boolean) =>
      [...cpu].filter(([tid]) => keep(tid)).reduce((total, [, ms]) => total + ms, 0)
    return {
      loadedMs,
      cpuMs: {
        main: cpu.get(server.pid) ?? 0,
        startedByUrl: sum((tid) => tid !== server.pid && byUrl.has(tid)),
        startedAfter: sum((tid) => !byUrl.has(tid)),
        total: sum(() => true),
      },
    }
  } finally {
    await server.stop('SIGTERM')
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const { values } = parseArgs({
  options: {
    spares: { type: 'string', default: '4' },
    runs: { type: 'string', default: '3' },
    'node-args': { type: 'string', multiple: true },
    json: { type: 'string', default: join(REPO_ROOT, 'results', 'spares-cpu.json') },
  },
})
const spares = Number(values.spares)
const runs = Number(values.runs)
if (!(spares > 0) || !(runs > 0)) throw new Error('--spares and --runs take positive integers')
const variants = values['node-args'] ?? ['']
const rows: Array<{ nodeArgs: string; runs: Run[] }> = variants.map((nodeArgs) => ({ nodeArgs, runs: [] }))
// Runs of the variants alternate, so that a change in the machine's load falls on all of them alike.
for (let i = 0; i < runs; i++)
  for (const row of rows) row.runs.push(await runOnce(spares, row.nodeArgs.split(' ').filter(Boolean)))

const lines = [
  `A \`--memory\` server loading ${spares} spares, ${runs} runs each (medians, ms), Node ${process.version}:`,
  '',
  '| node args | spawn to spares loaded | CPU, whole process | main thread | threads started by the URL line (V8 helpers, Node) | threads started after (databases, libuv pool) |',
  '| --- | --- | --- | --- | --- | --- |',
  ...rows.map(({ nodeArgs, runs: done }) => {
    const of = (pick: (run: Run) => number) => Math.round(median(done.map(pick))).toLocaleString('en-US')
    return `| ${nodeArgs || '(none)'} | ${of((r) => r.loadedMs)} | ${of((r) => r.cpuMs.total)} | ${of((r) => r.cpuMs.main)} | ${of((r) => r.cpuMs.startedByUrl)} | ${of((r) => r.cpuMs.startedAfter)} |`
  }),
]
process.stdout.write(`${lines.join('\n')}\n`)
await mkdir(dirname(values.json), { recursive: true })
await writeFile(values.json, `${JSON.stringify({ node: process.version, spares, rows }, null, 2)}\n`)
process.stderr.write(`JSON in ${values.json}\n`)
