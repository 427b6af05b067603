// npm run bench:handoff: what a client's socket served by a worker thread would cost and save, against the two ways
// a thread can serve a socket today (issue 27, route 1). Three toy servers, each answering every byte with 64 bytes:
//   same-thread  the thread that accepts reads and answers (the server's thread, as without database threads);
//   hop          the server's thread reads, and a worker thread answers through shared memory and writeSync on the
//                socket's fd (as a database thread answers today);
//   handoff      the server's thread accepts with pauseOnConnect and posts the fd to a worker, which serves it with
//                new net.Socket({ fd }). Node cannot give a socket's fd up without closing it, so the accepting thread
//                keeps its paused handle (never closed: the worker's socket owns the fd): the memory that costs is
//                measured after the connect/close cycles, beyond what the same-thread server grew by over them.
// For each Node given (default: this one): round trips per second from one client, then connect / round trip / close
// cycles, 20 at a time, each checked (its 64 bytes, then the end), and the server's RSS and open descriptors after.
// Prints a table; writes JSON (default results/handoff.json).
// Usage: npm run bench:handoff -- [--nodes PATH,PATH] [--round-trips N] [--cycles N] [--json PATH]
import { spawn } from 'node:child_process'
import { readdirSync, writeSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { dirname } from 'node:path'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

const REPLY = Buffer.alloc(64, 120)
const MODES = ['same-thread', 'hop', 'handoff']
const DEADLINE_MS = 120_000

/** The server: `serve MODE`; prints its port, and its figures as JSON on SIGUSR2. */
function serve(mode) {
  const words = new Int32Array(new SharedArrayBuffer(8))
  const worker = mode === 'same-thread' ? null : new Worker(new URL(import.meta.url), { workerData: { mode, words } })
  worker?.unref()
  const kept = []
  const server = net.createServer({ pauseOnConnect: mode === 'handoff' }, (socket) => {
    if (mode === 'handoff') {
      kept.push(socket)
      worker.postMessage(socket._handle.fd)
      return
    }
    socket.on('error', () => socket.destroy())
    socket.on('end', () => socket.end())
    if (mode === 'same-thread') socket.on('data', () => socket.write(REPLY))
    else {
      const fd = socket._handle.fd
      socket.on('data', () => {
        Atomics.store(words, 1, fd)
        Atomics.add(words, 0, 1)
        Atomics.notify(words, 0)
      })
    }
  })
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
  process.on('SIGUSR2', () => {
    globalThis.gc()
    const fds = readdirSync('/proc/self/fd').length
    process.stdout.write(`${JSON.stringify({ rssKb: Math.round(process.memoryUsage().rss / 1024), fds, kept: kept.length })}\n`)
  })
}

function workerSide({ mode, words }) {
  if (mode === 'handoff') {
    parentPort.on('message', (fd) => {
      const socket = new net.Socket({ fd, readable: true, writable: true })
      socket.on('data', () => socket.write(REPLY))
      socket.on('end', () => socket.end())
      socket.on('error', () => socket.destroy())
    })
    return
  }
  // hop: only the round trips use it (a close could overtake the answer still to be written).
  let seen = 0
  for (;;) {
    Atomics.wait(words, 0, seen)
    seen = Atomics.load(words, 0)
    try {
      writeSync(Atomics.load(words, 1), REPLY)
    } catch {
      // The client went away.
    }
  }
}

// --- The measuring side ---

function once(emitter, event) {
  return new Promise((resolve, reject) => {
    emitter.once(event, resolve)
    emitter.once('error', reject)
  })
}

function withDeadline(promise, what) {
  let timer
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no end within ${DEADLINE_MS} ms`)), DEADLINE_MS)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

async function roundTrips(port, n) {
  const socket = net.connect(port, '127.0.0.1')
  socket.setNoDelay(true)
  await once(socket, 'connect')
  let answered = null
  socket.on('data', () => answered?.())
  const one = () =>
    new Promise((resolve) => {
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

async function cycles(port, n) {
  let started = 0
  let bad = 0
  const one = async () => {
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    let got = 0
    socket.on('data', (chunk) => {
      got += chunk.length
    })
    socket.end('q')
    await once(socket, 'close')
    if (got !== REPLY.length) bad++
  }
  const begun = performance.now()
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (started < n) {
        started++
        await one()
      }
    }),
  )
  return { cycles: n, bad, ms: performance.now() - begun }
}

async function figures(server) {
  const line = new Promise((resolve) => server.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk)))))
  server.kill('SIGUSR2')
  return line
}

async function measure(node, mode, options) {
  const server = spawn(node, ['--expose-gc', new URL(import.meta.url).pathname, 'serve', mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const port = Number(String(await withDeadline(once(server.stdout, 'data'), `${mode} server's port`)).trim())
    const before = await figures(server)
    const perSecond = await withDeadline(roundTrips(port, options.roundTrips), `${mode} round trips`)
    const cycled = mode === 'hop' ? null : await withDeadline(cycles(port, options.cycles), `${mode} cycles`)
    const after = await figures(server)
    return { mode, roundTripsPerSecond: perSecond, ...(cycled ?? {}), rssKbBefore: before.rssKb, rssKbAfter: after.rssKb, fdsBefore: before.fds, fdsAfter: after.fds, kept: after.kept }
  } finally {
    server.kill('SIGKILL')
  }
}

async function version(node) {
  const child = spawn(node, ['--version'], { stdio: ['ignore', 'pipe', 'inherit'] })
  return String(await once(child.stdout, 'data')).trim()
}

async function main() {
  const { values } = parseArgs({ options: { nodes: { type: 'string' }, 'round-trips': { type: 'string' }, cycles: { type: 'string' }, json: { type: 'string' } } })
  const options = { roundTrips: Number(values['round-trips'] ?? 20000), cycles: Number(values.cycles ?? 10000) }
  const nodes = values.nodes ? values.nodes.split(',') : [process.execPath]
  const rows = []
  for (const node of nodes) {
    const label = await version(node)
    for (const mode of MODES) {
      const row = { node: label, ...(await measure(node, mode, options)) }
      rows.push(row)
      process.stderr.write(`${label} ${mode}: ${Math.round(row.roundTripsPerSecond)} round trips/s\n`)
    }
  }
  const lines = [
    '| node | server | round trips/s | × same thread | cycles (bad) | cycles ms | RSS before → after MB (after a GC) | per connection kept, kB beyond same thread | fds before → after |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for (const r of rows) {
    const same = rows.find((o) => o.node === r.node && o.mode === 'same-thread')
    // What the kept handles hold: the server's growth beyond the same-thread server's over the same cycles.
    const growth = (row) => row.rssKbAfter - row.rssKbBefore
    const perKept = r.kept > 0 ? ((growth(r) - growth(same)) / r.kept).toFixed(1) : ''
    lines.push(
      `| ${r.node} | ${r.mode} | ${Math.round(r.roundTripsPerSecond)} | ${(r.roundTripsPerSecond / same.roundTripsPerSecond).toFixed(2)}x | ${r.cycles === undefined ? '—' : `${r.cycles} (${r.bad})`} | ${r.ms === undefined ? '—' : Math.round(r.ms)} | ${Math.round(r.rssKbBefore / 1024)} → ${Math.round(r.rssKbAfter / 1024)} | ${perKept} | ${r.fdsBefore} → ${r.fdsAfter} |`,
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  const json = values.json ?? 'results/handoff.json'
  await mkdir(dirname(json), { recursive: true })
  await writeFile(json, `${JSON.stringify({ date: new Date().toISOString(), options, rows }, null, 2)}\n`)
}

if (!isMainThread) workerSide(workerData)
else if (process.argv[2] === 'serve') serve(process.argv[3])
else await main()
