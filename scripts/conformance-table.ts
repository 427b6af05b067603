// Runs every client workload of harness/scenarios against real PostgreSQL (--oracle URL, optional), stock
// pglite-socket 0.2.17 and pglite-dev-db, each on a fresh server per workload, and writes the table of verdicts
// to docs/conformance.md (every figure in results/conformance.json). Every cell is a measured run, never a hand-written one.
// Usage: tsx scripts/conformance-table.ts [--oracle postgres://...] [--out docs/conformance.md]
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { parseArgs } from 'node:util'
import { createLogger } from '../src/log.ts'
import { startDevDb } from '../src/databases/dev-db.ts'
import { interleavingScenarios } from '../harness/scenarios/index.ts'
import { countingStrayRejections, type Outcome, type Scenario } from '../harness/scenarios/outcome.ts'

const SERVER_START_DEADLINE_MS = 30_000
const STOCK_MAX_CONNECTIONS = 100

interface Server {
  url: string
  close(): Promise<void>
}

type TargetName = 'postgres' | 'stock' | 'pglite-dev-db'

async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as net.AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + SERVER_START_DEADLINE_MS
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`stock server exited with ${child.exitCode}`)
    const socket = net.connect(port, '127.0.0.1')
    const connected = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true))
      socket.once('error', () => resolve(false))
    })
    socket.destroy()
    if (connected) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error('stock server did not listen in time')
}

/** Stock's own CLI in a child process: a wedged stock PGlite can spin, and only a kill stops it. */
async function startStock(): Promise<Server> {
  // The package's exports do not list its bin; find it beside the package's resolved package.json directory.
  const require = createRequire(import.meta.url)
  const script = join(dirname(require.resolve('pglite-socket-stock')), 'scripts', 'server.js')
  const port = await freePort()
  const child = spawn(process.execPath, [script, `--port=${port}`, `--max-connections=${STOCK_MAX_CONNECTIONS}`], {
    stdio: 'ignore',
  })
  await waitForPort(port, child)
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async close() {
      child.kill('SIGKILL')
      if (child.exitCode === null) await once(child, 'exit')
    },
  }
}

async function startOurs(): Promise<Server> {
  const dev = await startDevDb({ migrations: false, logger: createLogger({ level: 'error' }) })
  return { url: dev.url, close: () => dev.close() }
}

async function runOn(name: TargetName, scenario: Scenario, oracle: string | undefined): Promise<Outcome | null> {
  if (name === 'postgres' && !oracle) return null
  const server: Server =
    name === 'postgres'
      ? { url: oracle!, close: async () => {} }
      : name === 'stock'
        ? await startStock()
        : await startOurs()
  try {
    return await countingStrayRejections(() => scenario.run(server.url))
  } finally {
    await server.close()
  }
}

function cell(outcome: Outcome | null): string {
  if (!outcome) return 'not run'
  const { kind, tally } = outcome
  if (kind === 'ok') return `ok (${tally.ok}/${tally.queries})`
  const errors = Object.entries(tally.errors)
    .sort((a, b) => b[1] - a[1])
    .map(([key, count]) => `${key}×${count}`)
  const parts = [
    `${tally.ok}/${tally.queries} ok`,
    ...(tally.wrong > 0 ? [`${tally.wrong} wrong`] : []),
    ...(tally.stalled > 0 ? [`${tally.stalled} stalled`] : []),
    ...errors,
  ]
  return `**${kind}**: ${parts.join(', ')}`
}

/** Where pglite-dev-db knowingly differs from PostgreSQL, and why (kept with the table so they are read together). */
const LIMITS = [
  '## Where pglite-dev-db differs from PostgreSQL, and why',
  '',
  '- One statement runs at a time (PGlite is one Postgres session): a client waits while another is inside a',
  '  transaction, where on PostgreSQL both would run unless they took the same locks.',
  '- A CancelRequest, `statement_timeout` and `pg_cancel_backend` stop a running statement (Postgres stops it at',
  '  its next interrupt check), but `pg_cancel_backend` of a client running a statement in the same database waits',
  '  for the session like any statement.',
  '- What each backend has of its own is kept per client in the one session: statement names, settings, LISTEN,',
  '  `DISCARD ALL`/`DEALLOCATE`, cursors `WITH HOLD`, temporary objects, advisory locks, `pg_backend_pid()`,',
  "  `pg_stat_activity`. Catalog views show every client's objects under the server's names",
  '  (`pg_prepared_statements`: `pgdd<id>.name`; `pg_class` in `pg_temp`: `pgdd<id>$<oid>`; `pg_locks`: no',
  '  advisory locks). A `pg_advisory_lock` that must wait inside a transaction block fails at once with `55P03`',
  '  (the holder could never run to release it); outside one it waits. A `DEALLOCATE ALL` that reaches PGlite',
  "  (inside a pipeline or a multi-statement query) drops the other clients' SQL `PREPARE`s; their protocol-level",
  "  statements are made again. `CLOSE ALL` closes the other clients' cursors `WITH HOLD` too.",
  '- Settings changed by a function (`set_config(..., false)`) rather than `SET`/`RESET` are not noticed and can',
  '  reach the next client.',
  '- A startup setting PostgreSQL refuses closes the connection at its first query, not at connect: startup settings',
  '  are applied when the client first gets the session, so connecting never waits for another transaction.',
  '- `pg_database` lists only the database you are connected to, `template0` and `template1`: each database is its own',
  '  PGlite cluster, whose one database carries the name clients gave it.',
  '',
]

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { oracle: { type: 'string' }, out: { type: 'string', default: 'docs/conformance.md' } },
  })
  const oracle = values.oracle ?? process.env.PG_ORACLE_URL
  const targets: TargetName[] = ['postgres', 'stock', 'pglite-dev-db']
  const results: Record<string, Record<TargetName, Outcome | null>> = {}
  for (const scenario of interleavingScenarios) {
    const row = {} as Record<TargetName, Outcome | null>
    for (const name of targets) {
      process.stderr.write(`${scenario.name} on ${name}...\n`)
      row[name] = await runOn(name, scenario, oracle)
    }
    results[scenario.name] = row
  }
  const lines = [
    '# Conformance: the same client workloads on real PostgreSQL, stock pglite-socket and pglite-dev-db',
    '',
    `Generated by \`npm run conformance -- --oracle URL\` on ${new Date().toISOString().slice(0, 10)}. Each cell is one run of the`,
    'workload in `harness/scenarios/` on a fresh server: `ok (passed/checks)`, or the verdict with its counts and errors by',
    'SQLSTATE (or client error). `npm test` runs the same workloads against stock and ours (and against real',
    'PostgreSQL, which `npm test` starts unless `PG_ORACLE_URL` names one) and asserts these verdicts. `pg_dump-restore` runs',
    "pg_dump 18 from `@electric-sql/pglite-tools` (WASM) over TCP (`harness/clients/pg-dump.ts`): Debian's pg_dump 15",
    'refuses a server newer than itself, and PGlite is PostgreSQL 18.',
    '',
    `| workload | ${targets.join(' | ')} |`,
    `| --- | ${targets.map(() => '---').join(' | ')} |`,
    ...Object.entries(results).map(([name, row]) => `| ${name} | ${targets.map((t) => cell(row[t])).join(' | ')} |`),
    '',
    ...LIMITS,
  ]
  await writeFile(values.out!, lines.join('\n'))
  await mkdir('results', { recursive: true })
  await writeFile(
    join('results', 'conformance.json'),
    `${JSON.stringify(results, (key, value) => (key === 'samples' ? undefined : value), 2)}\n`,
  )
  process.stdout.write(lines.join('\n'))
}

await main()
