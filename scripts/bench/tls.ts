// What TLS costs a client of the server: the bin in a child process (its CPU read from /proc), then the same work with
// sslmode=disable and with sslmode=require. Per connection: node-postgres connect + `select 1` + end, one after
// another (wall time per connection, server CPU per connection), and libpq's pgbench -C (a new connection per
// transaction). Per query: pgbench on held connections, to show what encrypting the traffic itself costs.
// Usage: npm run bench:tls -- [--connections N] [--seconds S] [--rounds R] [--out FILE]   Prints a table and the JSON.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { releaseAll, spawnServer, usageOf } from './procs.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    out: { type: 'string' },
  },
})
const CONNECTIONS = Number(values.connections)
const SECONDS = Number(values.seconds)
const ROUNDS = Number(values.rounds)
const MODES = ['disable', 'require'] as const
type Mode = (typeof MODES)[number]

interface Row {
  mode: Mode
  /** node-postgres: one connection, one query, end; sequential. */
  nodeConnectMsMedian: number
  nodeConnectMsP95: number
  serverCpuMsPerConnection: number
  /** pgbench -C: libpq connections per second and its own average connection time. */
  libpqConnectionsPerSecond: number
  libpqAverageConnectMs: number
  /** pgbench on 4 held connections: select 1 per second, and server CPU per query. */
  heldQueriesPerSecond: number
  serverCpuUsPerQuery: number
}

const quantile = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
const round = (n: number, digits = 2): number => Number(n.toFixed(digits))

async function nodeConnections(
  url: string,
  mode: Mode,
  pid: number,
): Promise<{ median: number; p95: number; cpuMs: number }> {
  const ssl = mode === 'require' ? { rejectUnauthorized: false as const } : false
  // Warm-up: the first TLS connection loads the server's TLS code.
  for (let i = 0; i < 10; i++) await oneConnection(url, ssl)
  const cpuBefore = usageOf(pid).cpuSeconds
  const times: number[] = []
  for (let i = 0; i < CONNECTIONS; i++) times.push(await oneConnection(url, ssl))
  const cpuMs = ((usageOf(pid).cpuSeconds - cpuBefore) * 1000) / CONNECTIONS
  times.sort((a, b) => a - b)
  return { median: quantile(times, 0.5), p95: quantile(times, 0.95), cpuMs }
}

async function oneConnection(url: string, ssl: false | { rejectUnauthorized: false }): Promise<number> {
  const started = performance.now()
  const client = new pg.Client({ connectionString: url, ssl })
  await client.connect()
  await client.query('select 1')
  await client.end()
  return performance.now() - started
}

async function pgbench(args: string[], conninfo: string): Promise<string> {
  const child = spawn('pgbench', [...args, conninfo], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGGSSENCMODE: 'disable' },
  })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`pgbench ${args.join(' ')} exited ${code}:\n${out}`)
  return out
}

const numberAfter = (text: string, label: RegExp): number => {
  const match = label.exec(text)
  if (!match) throw new Error(`pgbench output has no ${label}:\n${text}`)
  return Number(match[1])
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'bench-tls-'))
  const script = path.join(work, 'select1.sql')
  await writeFile(script, 'select 1;\n')
  const server = spawnServer(
    process.execPath,
    [path.join(ROOT, 'bin', 'pglite-dev-db.js'), '--port', '0', '--memory', '--no-migrations', '--log-level', 'warn'],
    { cwd: ROOT },
  )
  try {
    const url = await server.waitForLine((line) => line.startsWith('postgres://'), 120_000, 'the server URL')
    const { hostname, port } = new URL(url)
    const runs: Row[] = []
    // Interleaved rounds, the median of each figure: the first round also warms the server up.
    for (let pass = 0; pass < ROUNDS; pass++)
      for (const mode of MODES) {
        const node = await nodeConnections(url, mode, server.pid)
        const conninfo = `host=${hostname} port=${port} user=postgres dbname=postgres sslmode=${mode}`
        const perConnection = await pgbench(['-n', '-C', '-f', script, '-T', String(SECONDS)], conninfo)
        const cpuBefore = usageOf(server.pid).cpuSeconds
        const held = await pgbench(['-n', '-c', '4', '-f', script, '-T', String(SECONDS)], conninfo)
        const heldCpu = usageOf(server.pid).cpuSeconds - cpuBefore
        const heldTps = numberAfter(held, /tps = ([\d.]+)/)
        runs.push({
          mode,
          nodeConnectMsMedian: round(node.median),
          nodeConnectMsP95: round(node.p95),
          serverCpuMsPerConnection: round(node.cpuMs),
          libpqConnectionsPerSecond: round(numberAfter(perConnection, /tps = ([\d.]+)/), 0),
          libpqAverageConnectMs: round(numberAfter(perConnection, /average connection time = ([\d.]+) ms/)),
          heldQueriesPerSecond: round(heldTps, 0),
          serverCpuUsPerQuery: round((heldCpu * 1e6) / (heldTps * SECONDS), 0),
        })
      }
    const median = (values: number[]): number => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!
    const rows = MODES.map((mode) => {
      const own = runs.filter((run) => run.mode === mode)
      const pick = (key: Exclude<keyof Row, 'mode'>) => median(own.map((run) => run[key]))
      return {
        mode,
        nodeConnectMsMedian: pick('nodeConnectMsMedian'),
        nodeConnectMsP95: pick('nodeConnectMsP95'),
        serverCpuMsPerConnection: pick('serverCpuMsPerConnection'),
        libpqConnectionsPerSecond: pick('libpqConnectionsPerSecond'),
        libpqAverageConnectMs: pick('libpqAverageConnectMs'),
        heldQueriesPerSecond: pick('heldQueriesPerSecond'),
        serverCpuUsPerQuery: pick('serverCpuUsPerQuery'),
      } satisfies Row
    })
    const header = [
      'sslmode',
      'node-postgres connect+query+end ms (median / p95)',
      'server CPU ms per connection',
      'pgbench -C conn/s',
      'libpq avg connect ms',
      'pgbench 4 held: select 1/s',
      'server CPU us per query',
    ]
    console.log(`| ${header.join(' | ')} |\n|${header.map(() => ' --- ').join('|')}|`)
    for (const r of rows) {
      console.log(
        `| ${r.mode} | ${r.nodeConnectMsMedian} / ${r.nodeConnectMsP95} | ${r.serverCpuMsPerConnection} | ${r.libpqConnectionsPerSecond} | ${r.libpqAverageConnectMs} | ${r.heldQueriesPerSecond} | ${r.serverCpuUsPerQuery} |`,
      )
    }
    const result = {
      node: process.version,
      cores: os.cpus().length,
      loadAverage: os.loadavg().map((n) => round(n)),
      connections: CONNECTIONS,
      seconds: SECONDS,
      rounds: ROUNDS,
      rows,
      runs,
    }
    console.log(JSON.stringify(result, null, 2))
    if (values.out) await writeFile(values.out, `${JSON.stringify(result, null, 2)}\n`)
  } finally {
    await server.stop('SIGINT')
    await rm(work, { recursive: true, force: true })
    await releaseAll()
  }
}

await main()
