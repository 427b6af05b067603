// npm run bench:handoff: what a client's socket served by a worker thread would cost and save, against the two ways
// a thread can serve a socket today (issue 27, route 1). Three toy servers (handoff-server.mjs), each answering every
// byte with 64 bytes:
//   same-thread  the thread that accepts reads and answers (the server's thread, as without database threads);
//   hop          the server's thread reads, and a worker thread answers through shared memory and writeSync on the
//                socket's fd (as a database thread answers today);
//   handoff      the server's thread accepts with pauseOnConnect and posts the fd to a worker, which serves it with
//                new net.Socket({ fd }). Node cannot give a socket's fd up without closing it, so the accepting thread
//                keeps its paused handle (never closed: the worker's socket owns the fd): the memory that costs is
//                measured after the connect/close cycles, beyond what the same-thread server grew by over them.
// For each Node given (default: this one): round trips per second from one client, then connect / round trip / close
// cycles, 20 at a time, each checked (its 64 bytes, then the end), and the server's RSS (after a collection) and open
// descriptors before and after. Prints a table; writes JSON (default results/handoff.json).
// Usage: npm run bench:handoff -- [--nodes PATH,PATH] [--round-trips N] [--cycles N] [--json PATH]

import { execFileSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import net from 'node:net'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { releaseAll, spawnServer, usageOf, withDeadline, type ServerProcess } from './procs.ts'
import { REPO_ROOT } from './targets.ts'

const SERVER_SCRIPT = join(REPO_ROOT, 'scripts', 'bench', 'handoff-server.mjs')
const MODES = ['same-thread', 'hop', 'handoff'] as const
type Mode = (typeof MODES)[number]
const REPLY_BYTES = 64
const CONCURRENT_CYCLES = 20
const DEADLINE_MS = 120_000

interface Row {
  node: string
  mode: Mode
  roundTripsPerSecond: number
  /** Connect / round trip / close cycles run, and how many did not get exactly the reply then the end (not in hop). */
  cycles?: number
  bad?: number
  cyclesMs?: number
  rssKbBefore: number
  rssKbAfter: number
  fdsBefore: number
  fdsAfter: number
}

async function roundTrips(port: number, n: number): Promise<number> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  let answered: (() => void) | null = null
  socket.on('data', () => answered?.())
  const one = () =>
    new Promise<void>((resolve) => {
      answered = resolve
      socket.write('q')
    })
  for (let i = 0; i < Math.min(2000, n); i++) await one()
  const started = performance.now()
  for (let i = 0; i < n; i++) await one()
  const perSecond = n / ((performance.now() - started) / 1000)
  socket.destroy()
  return perSecond
}

async function cycles(port: number, n: number): Promise<{ bad: number; ms: number }> {
  let started = 0
  let bad = 0
  const one = async () => {
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    let got = 0
    socket.on('data', (chunk: Buffer) => {
      got += chunk.length
    })
    socket.end('q')
    await once(socket, 'close')
    if (got !== REPLY_BYTES) bad++
  }
  const begun = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENT_CYCLES }, async () => {
      while (started < n) {
        started++
        await one()
      }
    }),
  )
  return { bad, ms: performance.now() - begun }
}

/** RSS once the server has collected its garbage, and its open descriptors. */
async function memoryOf(server: ServerProcess): Promise<{ rssKb: number; fds: number }> {
  const collected = server.waitForLine((line) => line === 'collected', DEADLINE_MS, 'the server collecting its garbage')
  server.child.kill('SIGUSR2')
  await collected
  return { rssKb: usageOf(server.pid).rssKb, fds: readdirSync(`/proc/${server.pid}/fd`).length }
}

async function measure(
  node: string,
  label: string,
  mode: Mode,
  options: { roundTrips: number; cycles: number },
): Promise<Row> {
  const server = spawnServer(node, ['--expose-gc', SERVER_SCRIPT, mode], { cwd: REPO_ROOT })
  try {
    const port = Number(await server.waitForLine((line) => /^\d+$/.test(line), DEADLINE_MS, `${mode} server's port`))
    const before = await memoryOf(server)
    const perSecond = await withDeadline(roundTrips(port, options.roundTrips), DEADLINE_MS, `${mode} round trips`)
    const cycled =
      mode === 'hop' ? null : await withDeadline(cycles(port, options.cycles), DEADLINE_MS, `${mode} cycles`)
    const after = await memoryOf(server)
    return {
      node: label,
      mode,
      roundTripsPerSecond: perSecond,
      ...(cycled ? { cycles: options.cycles, bad: cycled.bad, cyclesMs: cycled.ms } : {}),
      rssKbBefore: before.rssKb,
      rssKbAfter: after.rssKb,
      fdsBefore: before.fds,
      fdsAfter: after.fds,
    }
  } finally {
    await server.stop('SIGKILL')
  }
}

function render(rows: Row[]): string {
  const growth = (row: Row) => row.rssKbAfter - row.rssKbBefore
  const lines = [
    '| node | server | round trips/s | × same thread | cycles (bad) | cycles ms | RSS before → after MB (after a GC) | per connection kept, kB beyond same thread | fds before → after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const r of rows) {
    const same = rows.find((o) => o.node === r.node && o.mode === 'same-thread')!
    // The handles kept: the handoff server's growth beyond the same-thread server's over the same cycles (and the
    // round trips' one connection).
    const perKept = r.mode === 'handoff' && r.cycles ? ((growth(r) - growth(same)) / (r.cycles + 1)).toFixed(1) : ''
    lines.push(
      `| ${r.node} | ${r.mode} | ${Math.round(r.roundTripsPerSecond)} | ${(r.roundTripsPerSecond / same.roundTripsPerSecond).toFixed(2)}x | ${r.cycles === undefined ? '—' : `${r.cycles} (${r.bad})`} | ${r.cyclesMs === undefined ? '—' : Math.round(r.cyclesMs)} | ${Math.round(r.rssKbBefore / 1024)} → ${Math.round(r.rssKbAfter / 1024)} | ${perKept} | ${r.fdsBefore} → ${r.fdsAfter} |`,
    )
  }
  return `${lines.join('\n')}\n`
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string' },
      'round-trips': { type: 'string' },
      cycles: { type: 'string' },
      json: { type: 'string' },
    },
  })
  const options = { roundTrips: Number(values['round-trips'] ?? 20000), cycles: Number(values.cycles ?? 10000) }
  const nodes = values.nodes ? values.nodes.split(',') : [process.execPath]
  const rows: Row[] = []
  for (const node of nodes) {
    const label = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim()
    for (const mode of MODES) {
      const row = await measure(node, label, mode, options)
      rows.push(row)
      process.stderr.write(`${label} ${mode}: ${Math.round(row.roundTripsPerSecond)} round trips/s\n`)
    }
  }
  process.stdout.write(render(rows))
  const json = values.json ?? join(REPO_ROOT, 'results', 'handoff.json')
  await mkdir(dirname(json), { recursive: true })
  await writeFile(json, `${JSON.stringify({ date: new Date().toISOString(), options, rows }, null, 2)}\n`)
}

try {
  await main()
} finally {
  await releaseAll()
}
