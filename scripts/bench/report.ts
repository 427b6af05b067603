// What a run measured, as JSON records, as Markdown tables (ratios first: only ratios measured in one run mean
// anything on a shared machine), and the issue's goals each marked met or missed.

import { CI_TARGET_LABELS, type CiEngine, type CiRecord, type CiRun } from './ci.ts'
import type { CeilingName, DriverName } from './drivers.ts'
import type {
  ConnectionCost,
  ExtraDatabaseRss,
  FirstQueryRecord,
  PgbenchResult,
  StartupResult,
  StartupRun,
} from './extras.ts'
import { HEAVY_RUNS, HEAVY_STATEMENT } from './extras.ts'
import type { Verdict } from './loop.ts'
import { TARGET_LABELS, type TargetName } from './targets.ts'
import { WORKLOADS, type WorkloadName } from './workloads.ts'

export interface CellRecord {
  target: TargetName | 'in-process'
  workload: WorkloadName
  clients: number
  driver: DriverName | CeilingName
  verdict: Verdict
  detail?: string
  /** Operations completed inside the window. */
  ops: number
  windowMs: number
  qps: number | null
  p50Ms: number | null
  p99Ms: number | null
  /** Peak RSS of the server during the window (PostgreSQL: summed over its processes). */
  serverRssMb: number | null
  /** PostgreSQL only: proportional set size of the cluster at the end of the window. */
  serverPssMb?: number | null
  /** CPU the server used during the window (in process: the whole benchmark process). */
  serverCpuS: number | null
  /** Of that, its main thread's (a PGlite server's event loop; absent for PostgreSQL and older results). */
  serverMainThreadCpuS?: number | null
  /** CPU the benchmark process (the clients) used during the window. */
  clientCpuS: number
}

export interface IdleRecord {
  target: string
  rssMb: number
  pssMb?: number
  /** The highest RSS sampled from the URL line until rssMb was read (pglite-dev-db's start-up runs). */
  peakMb?: number
}

export interface Results {
  meta: {
    date: string
    command: string
    node: string
    cpus: number
    cpuModel: string
    memoryGb: number
    loadAverage: { start: number[]; end: number[] }
    seconds: number
    warmupSeconds: number
    runSeconds: number
    notes: string[]
  }
  cells: CellRecord[]
  idle: IdleRecord[]
  startup: StartupResult | null
  connections: ConnectionCost | null
  pgbench: Array<{ target: TargetName; results: PgbenchResult[] }>
  /** The CI-shaped suite; absent from runs made before it existed. */
  ci?: CiRecord[]
  /** The CI-shaped suite's tests on one PGlite in the bench's process; absent from older runs. */
  ciEngine?: CiEngine
  goals: Goal[]
}

export interface Goal {
  goal: string
  measured: string
  isMet: boolean | null
}

// --- Lookups and ratios ---

const workloadOf = (name: WorkloadName) => WORKLOADS.find((w) => w.name === name)!

function find(
  results: Results,
  target: CellRecord['target'],
  workload: WorkloadName,
  clients: number,
  driver: CellRecord['driver'],
): CellRecord | undefined {
  return results.cells.find(
    (c) => c.target === target && c.workload === workload && c.clients === clients && c.driver === driver,
  )
}

const okQps = (cell: CellRecord | undefined): number | null => (cell && cell.verdict === 'ok' ? cell.qps : null)
/** Server CPU per operation, in µs (in process: the benchmark process's). */
const cpuPerOpUs = (cell: CellRecord | undefined): number | null =>
  cell && cell.verdict === 'ok' && cell.serverCpuS !== null && cell.ops > 0 ? (cell.serverCpuS * 1e6) / cell.ops : null

/** Server CPU per operation as text: the total, then its main thread's + its other threads', when read. */
function cpuPerOpText(cell: CellRecord | undefined): string {
  const total = cpuPerOpUs(cell)
  const main = cell?.serverMainThreadCpuS
  if (total === null || main === undefined || main === null) return num(total)
  const mainUs = (main * 1e6) / cell!.ops
  return `${num(total)} (${num(mainUs)} + ${num(total - mainUs)})`
}

function ceiling(results: Results, workload: WorkloadName, name: CeilingName | 'raw'): number | null {
  const which = name === 'raw' ? (workloadOf(workload).rawCeiling === 'simple' ? 'raw simple' : 'raw extended') : name
  return okQps(find(results, 'in-process', workload, 1, which))
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b
}

// --- Formatting ---

const x = (r: number | null): string => (r === null ? '—' : `${r.toFixed(2)}x`)
const num = (n: number | null, digits = 0): string => (n === null || Number.isNaN(n) ? '—' : n.toFixed(digits))
const ms = (n: number | null): string => (n === null || Number.isNaN(n) ? '—' : n < 10 ? n.toFixed(2) : n.toFixed(1))
const mb = (kb: number): string => (kb / 1024).toFixed(0)
const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)] ?? Number.NaN

function verdictText(cell: CellRecord | undefined): string {
  if (!cell) return 'not run'
  if (cell.verdict === 'ok') return num(cell.qps)
  return `**${cell.verdict}**${cell.detail ? `: ${cell.detail.replaceAll('|', '/').replaceAll('\n', ' ').slice(0, 70)}` : ''}`
}

function table(header: string[], rows: string[][]): string[] {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ]
}

// --- Sections ---

function ceilingSection(results: Results): string[] {
  const rows = WORKLOADS.filter((w) =>
    results.cells.some((c) => c.target === 'in-process' && c.workload === w.name),
  ).map((w) => {
    const cells = (['db.query', 'raw simple', 'raw extended'] as const).map((name) =>
      find(results, 'in-process', w.name, 1, name),
    )
    return [
      w.title,
      ...cells.flatMap((cell) => [verdictText(cell), ms(cell?.p50Ms ?? null)]),
      w.rawCeiling === 'simple' ? 'raw simple' : 'raw extended',
    ]
  })
  if (rows.length === 0) return []
  return [
    '### In-process ceilings (one loop on one PGlite in the benchmark process)',
    '',
    ...table(
      ['workload', 'db.query q/s', 'p50 ms', 'raw simple q/s', 'p50 ms', 'raw extended q/s', 'p50 ms', '"× raw" uses'],
      rows,
    ),
  ]
}

/** With --baseline: every cell of this checkout's server beside the same cell of the other checkout's. */
function baselineSection(results: Results): string[] {
  const cells = results.cells.filter((c) => c.target === 'baseline')
  if (cells.length === 0) return []
  const rows = cells.map((base) => {
    const ours = find(results, 'ours', base.workload, base.clients, base.driver as DriverName)
    return [
      base.workload,
      String(base.clients),
      base.driver,
      verdictText(ours),
      ms(ours?.p50Ms ?? null),
      ms(ours?.p99Ms ?? null),
      verdictText(base),
      ms(base.p50Ms ?? null),
      ms(base.p99Ms ?? null),
      x(ratio(okQps(ours), okQps(base))),
    ]
  })
  return [
    '### This checkout against the baseline (--baseline)',
    '',
    ...table(
      [
        'workload',
        'clients',
        'driver',
        'ours q/s',
        'p50 ms',
        'p99 ms',
        'baseline q/s',
        'p50 ms',
        'p99 ms',
        '× baseline',
      ],
      rows,
    ),
  ]
}

/**
 * With target no-threads: each cell of the server as it runs (a database thread per database) beside the same server
 * with its database in the server's thread, and stock. What the thread hop costs per query, the engine the same.
 */
function threadsSection(results: Results): string[] {
  const cells = results.cells.filter((c) => c.target === 'no-threads')
  if (cells.length === 0) return []
  const rows = cells.map((alone) => {
    const ours = find(results, 'ours', alone.workload, alone.clients, alone.driver as DriverName)
    const stock = find(results, 'stock', alone.workload, alone.clients, alone.driver as DriverName)
    return [
      alone.workload,
      String(alone.clients),
      alone.driver,
      verdictText(ours),
      ms(ours?.p50Ms ?? null),
      cpuPerOpText(ours),
      verdictText(alone),
      ms(alone.p50Ms ?? null),
      cpuPerOpText(alone),
      verdictText(stock),
      cpuPerOpText(stock),
      x(ratio(okQps(ours), okQps(alone))),
      x(ratio(okQps(alone), okQps(stock))),
    ]
  })
  return [
    '### Database threads against none (target no-threads: `--no-database-threads`)',
    '',
    ...table(
      [
        'workload',
        'clients',
        'driver',
        'ours q/s',
        'p50 ms',
        'server CPU µs/op (its thread + others)',
        'no threads q/s',
        'p50 ms',
        'server CPU µs/op (its thread + others)',
        'stock q/s',
        'server CPU µs/op (its thread + others)',
        'ours × no threads',
        'no threads × stock',
      ],
      rows,
    ),
  ]
}

/**
 * What the machine allows any server: PGlite's own CPU per query in process (the raw ceiling's), plus what a server
 * with no engine spends per select 1 (target no-engine: the event loop and the sockets), plus what the clients spend
 * per query with ours, on the run's cores, bounds the rate. A ratio goal above the bound's is out of reach of any
 * path to PGlite here. At one client the wait for each answer bounds it first, and the bound is loose.
 */
function boundSection(results: Results): string[] {
  const rows: string[][] = []
  for (const ours of results.cells.filter((c) => c.target === 'ours' && c.verdict === 'ok' && c.ops > 0)) {
    const driver = ours.driver as DriverName
    const engine = cpuPerOpUs(
      find(
        results,
        'in-process',
        ours.workload,
        1,
        workloadOf(ours.workload).rawCeiling === 'simple' ? 'raw simple' : 'raw extended',
      ),
    )
    if (engine === null) continue
    const sockets = cpuPerOpUs(find(results, 'no-engine', 'select1', ours.clients, driver)) ?? 0
    const client = (ours.clientCpuS * 1e6) / ours.ops
    const busy = ours.serverCpuS === null ? null : (ours.serverCpuS + ours.clientCpuS) / (ours.windowMs / 1000)
    const best = (results.meta.cpus * 1e6) / (engine + sockets + client)
    const stock = okQps(find(results, 'stock', ours.workload, ours.clients, driver))
    const pg = okQps(find(results, 'postgres', ours.workload, ours.clients, driver))
    rows.push([
      ours.workload,
      String(ours.clients),
      ours.driver,
      num(engine),
      sockets > 0 ? num(sockets) : '—',
      num(client),
      cpuPerOpText(ours),
      cpuPerOpText(find(results, 'stock', ours.workload, ours.clients, driver)),
      num(busy, 2),
      num(best),
      num(ours.qps),
      x(ratio(best, stock)),
      x(ratio(ours.qps, stock)),
      x(ratio(best, pg)),
      x(ratio(ours.qps, pg)),
    ])
  }
  if (rows.length === 0) return []
  return [
    '### What this machine allows a server (CPU per query)',
    '',
    `A server that spent on a query only what PGlite spends in process (engine) and what a server with no engine spends on the same clients (sockets: \`--targets no-engine\`, select 1 only; — where not run, counted as 0), beside clients that spend what they do here, could do at most ${results.meta.cpus} cores' worth: best q/s. A ratio goal above best × stock or best × PG15 is beyond any path to PGlite on this machine. One client waits for each answer, so there the bound is loose; the point select's engine figure parses its statement each time, which a prepared client does not ask for.`,
    '',
    ...table(
      [
        'workload',
        'clients',
        'driver',
        'engine µs/op',
        'sockets µs/op',
        'clients µs/op',
        'ours server µs/op (its thread + others)',
        'stock server µs/op (its thread + others)',
        'cores busy',
        'best q/s',
        'ours q/s',
        'best × stock',
        'ours × stock',
        'best × PG15',
        'ours × PG15',
      ],
      rows,
    ),
  ]
}

function summarySection(results: Results): string[] {
  const rows: string[][] = []
  const keys = new Set(
    results.cells.filter((c) => c.target !== 'in-process').map((c) => `${c.workload}|${c.clients}|${c.driver}`),
  )
  for (const key of keys) {
    const [workload, clientsText, driver] = key.split('|') as [WorkloadName, string, DriverName]
    const clients = Number(clientsText)
    const ours = find(results, 'ours', workload, clients, driver)
    const stock = find(results, 'stock', workload, clients, driver)
    const pg = find(results, 'postgres', workload, clients, driver)
    const q = okQps(ours)
    rows.push([
      workload,
      String(clients),
      driver,
      verdictText(ours),
      ms(ours?.p50Ms ?? null),
      ms(ours?.p99Ms ?? null),
      x(ratio(q, ceiling(results, workload, 'db.query'))),
      x(ratio(q, ceiling(results, workload, 'raw'))),
      verdictText(stock),
      x(ratio(q, okQps(stock))),
      verdictText(pg),
      x(ratio(q, okQps(pg))),
    ])
  }
  if (rows.length === 0) return []
  return [
    '### pglite-dev-db against the ceilings, stock pglite-socket and PostgreSQL 15',
    '',
    ...table(
      [
        'workload',
        'clients',
        'driver',
        'ours q/s',
        'p50 ms',
        'p99 ms',
        '× db.query',
        '× raw',
        'stock q/s',
        '× stock',
        'PG15 q/s',
        '× PG15',
      ],
      rows,
    ),
  ]
}

function detailSection(results: Results): string[] {
  if (results.cells.length === 0) return []
  const rows = results.cells.map((c) => {
    const q = okQps(c)
    return [
      c.target === 'in-process' ? 'in-process' : TARGET_LABELS[c.target],
      c.workload,
      String(c.clients),
      c.driver,
      verdictText(c),
      ms(c.p50Ms),
      ms(c.p99Ms),
      c.clients === 64 && c.p50Ms && c.p99Ms ? (c.p99Ms / c.p50Ms).toFixed(1) : '',
      x(ratio(q, ceiling(results, c.workload, 'db.query'))),
      x(ratio(q, ceiling(results, c.workload, 'raw'))),
      num(c.serverRssMb),
      num(c.serverCpuS, 2),
      c.serverCpuS !== null && c.ops > 0 ? num((c.serverCpuS * 1e6) / c.ops) : '—',
      num(c.clientCpuS, 2),
    ]
  })
  return [
    '### Every cell',
    '',
    'Server RSS is the peak during the window (PostgreSQL: summed over its processes, so shared buffers count once per',
    'process); server CPU is what it used during the window (in-process: the whole benchmark process); client CPU is',
    'the benchmark process (the drivers).',
    '',
    ...table(
      [
        'target',
        'workload',
        'clients',
        'driver',
        'q/s',
        'p50 ms',
        'p99 ms',
        'p99/p50 at 64',
        '× db.query',
        '× raw',
        'server RSS MB',
        'server CPU s',
        'server CPU µs/op',
        'client CPU s',
      ],
      rows,
    ),
  ]
}

function fairnessSection(results: Results): string[] {
  const rows: string[][] = []
  for (const w of WORKLOADS) {
    for (const driver of new Set(
      results.cells.filter((c) => c.workload === w.name && c.clients === 64).map((c) => c.driver),
    )) {
      const cell = (t: TargetName) => {
        const c = find(results, t, w.name, 64, driver)
        return c?.verdict === 'ok' && c.p50Ms && c.p99Ms
          ? `${(c.p99Ms / c.p50Ms).toFixed(1)} (${ms(c.p50Ms)} / ${ms(c.p99Ms)})`
          : c
            ? c.verdict
            : '—'
      }
      rows.push([w.name, driver, cell('ours'), cell('stock'), cell('postgres')])
    }
  }
  if (rows.length === 0) return []
  return [
    '### Fairness at 64 clients: p99 / p50 (p50 ms / p99 ms)',
    '',
    ...table(['workload', 'driver', 'pglite-dev-db', 'stock', 'PostgreSQL 15'], rows),
  ]
}

function resourceSection(results: Results): string[] {
  if (!results.startup && !results.connections && results.idle.length === 0) return []
  const lines = ['### Memory and start-up', '']
  // pglite-dev-db's idle figures are the start-up runs' (median, as the goals use), four seconds after the URL line,
  // with the highest RSS sampled until then.
  const peak = (runs: StartupRun[]) =>
    runs.every((r) => r.peakRssKb !== undefined) ? median(runs.map((r) => r.peakRssKb!)) / 1024 : undefined
  const startupIdle: IdleRecord[] = results.startup
    ? [
        {
          target: 'pglite-dev-db `--memory`',
          rssMb: median(results.startup.memory.map((r) => r.idleRssKb)) / 1024,
          peakMb: peak(results.startup.memory),
        },
        {
          target: 'pglite-dev-db `--data-dir` (reopened)',
          rssMb: median(results.startup.dataDir.map((r) => r.idleRssKb)) / 1024,
          peakMb: peak(results.startup.dataDir),
        },
        ...(results.startup.newDataDir
          ? [
              {
                target: 'pglite-dev-db `--data-dir` (new)',
                rssMb: median(results.startup.newDataDir.map((r) => r.idleRssKb)) / 1024,
                peakMb: peak(results.startup.newDataDir),
              },
            ]
          : []),
        ...Object.entries(results.startup.withoutOptimizer ?? {}).map(([mode, runs]) => ({
          target: `pglite-dev-db ${mode === 'memory' ? '`--memory`' : '`--data-dir` (reopened)'} \`--no-wasm-optimizer\``,
          rssMb: median(runs.map((r) => r.idleRssKb)) / 1024,
          peakMb: peak(runs),
        })),
      ]
    : []
  const rows: string[][] = [...startupIdle, ...results.idle].map((i) => [
    i.target,
    num(i.rssMb),
    i.pssMb === undefined ? '' : num(i.pssMb),
    i.peakMb === undefined ? '' : num(i.peakMb),
  ])
  lines.push(...table(['idle server', 'RSS MB', 'PSS MB', 'peak RSS MB from the URL line on'], rows), '')
  const byNode = results.startup?.idleByNode ?? []
  if (byNode.length > 0) {
    const cell = (node: string, optimizer: boolean, read: (run: StartupRun) => number | undefined) => {
      const runs = byNode.find((r) => r.node === node && r.optimizer === optimizer)?.runs ?? []
      const values = runs.map(read).filter((value): value is number => value !== undefined)
      return values.length > 0 ? num(median(values)) : ''
    }
    lines.push(
      ...table(
        [
          '`--data-dir` (reopened), idle, by Node',
          'RSS MB',
          '`--no-wasm-optimizer`: RSS MB',
          'CPU ms, spawn to the idle reading',
          '`--no-wasm-optimizer`: CPU ms',
          `then a CPU-heavy statement, 1st / last of ${HEAVY_RUNS} runs, ms`,
          '`--no-wasm-optimizer`: 1st / last run, ms',
          'RSS MB after them',
          '`--no-wasm-optimizer`: RSS MB after them',
        ],
        [...new Set(byNode.map((r) => r.node))].map((node) => [
          node,
          cell(node, true, (r) => r.idleRssKb / 1024),
          cell(node, false, (r) => r.idleRssKb / 1024),
          cell(node, true, (r) => r.idleCpuMs),
          cell(node, false, (r) => r.idleCpuMs),
          ...[true, false].map((optimizer) =>
            [0, HEAVY_RUNS - 1]
              .map((index) => cell(node, optimizer, (r) => r.heavyMs?.[index]))
              .join(' / ')
              .replace(/^ \/ $/, ''),
          ),
          ...[true, false].map((optimizer) => cell(node, optimizer, (r) => r.heavyRssKb && r.heavyRssKb / 1024)),
        ]),
      ),
      '',
      `After the idle reading, the same server ran \`${HEAVY_STATEMENT}\` ${HEAVY_RUNS} times through one connection.`,
      '',
    )
  }
  const extra = results.startup?.extraDatabase
  if (extra) {
    lines.push(
      ...table(
        ['`--memory`, no spares, idle', 'server RSS MB', 'per database beyond the first'],
        [
          ['the main database, one query', mb(extra.baseRssKb), ''],
          [
            `${extra.databases} more, one query each`,
            mb(extra.rssKb),
            `${(perExtraDatabaseKb(extra) / 1024).toFixed(1)} MB`,
          ],
        ],
      ),
      '',
    )
  }
  if (results.connections) {
    const c = results.connections
    lines.push(
      ...table(
        [
          'idle connections to pglite-dev-db',
          'server RSS MB',
          'per connection (vs none)',
          'per connection (vs previous row)',
        ],
        [
          ['none (after opening and closing as many once)', mb(c.baseRssKb), '', ''],
          ...c.steps.map((s) => [
            String(s.connections),
            mb(s.rssKb),
            `${s.kbPerConnection.toFixed(1)} kB`,
            `${s.kbPerAddedConnection.toFixed(1)} kB`,
          ]),
        ],
      ),
      '',
    )
  }
  if (results.startup) {
    const s = results.startup
    const cpu = (runs: StartupResult['memory']) =>
      runs.every((r) => r.cpuMs !== undefined) ? (median(runs.map((r) => r.cpuMs!)) / 1000).toFixed(2) : '—'
    const row = (name: string, runs: StartupResult['memory']) => [
      name,
      runs.map((r) => (r.ms / 1000).toFixed(2)).join(', '),
      (median(runs.map((r) => r.ms)) / 1000).toFixed(2),
      cpu(runs),
    ]
    lines.push(
      ...table(
        [
          'pglite-dev-db start-up with the example migrations (spawn → URL line)',
          'runs (s)',
          'median (s)',
          'server CPU to the URL line, median (s)',
        ],
        [row('`--memory` (loads the migrated template)', s.memory), row('`--data-dir` already migrated', s.dataDir)],
      ),
    )
    if (s.firstQuery?.length) lines.push('', ...firstQueryTable(s.firstQuery))
  }
  return lines
}

/** Spawn to the URL line and to a first query answered, per Node and mode; with --baseline, its figures and ours as a share of them. */
function firstQueryTable(records: FirstQueryRecord[]): string[] {
  const withBaseline = records.some((r) => r.target === 'baseline')
  const ms = (values: number[]) => Math.round(median(values)).toLocaleString('en-US')
  const rows = records
    .filter((r) => r.target === 'ours')
    .map((ours) => {
      const mode = ours.mode === 'memory' ? '`--memory`' : 'data dir'
      const row = [ours.node, mode, ms(ours.urlMs), ms(ours.queryMs)]
      const base = records.find((r) => r.target === 'baseline' && r.node === ours.node && r.mode === ours.mode)
      if (!withBaseline) return row
      if (!base) return [...row, '—', '—', '—', '—']
      return [
        ...row,
        ms(base.urlMs),
        ms(base.queryMs),
        x(median(ours.urlMs) / median(base.urlMs)),
        x(median(ours.queryMs) / median(base.queryMs)),
      ]
    })
  const header = [
    'Node',
    'mode',
    'spawn → URL line, median ms',
    'spawn → first query answered, median ms',
    ...(withBaseline ? ['baseline URL ms', 'baseline first query ms', 'URL × baseline', 'first query × baseline'] : []),
  ]
  return table(header, rows)
}

function pgbenchSection(results: Results): string[] {
  if (results.pgbench.length === 0) return []
  const get = (t: TargetName, mode: string) =>
    results.pgbench.find((p) => p.target === t)?.results.find((r) => r.mode === mode)
  const text = (r: PgbenchResult | undefined) =>
    !r
      ? '—'
      : r.verdict === 'ok'
        ? num(r.tps)
        : `**${r.verdict}**${r.detail ? `: ${r.detail.replaceAll('|', '/').slice(0, 60)}` : ''}`
  const tps = (r: PgbenchResult | undefined) => (r?.verdict === 'ok' ? r.tps : null)
  // --baseline: its columns too.
  const withBaseline = results.pgbench.some((p) => p.target === 'baseline')
  const rows = ['simple', 'extended', 'prepared'].map((mode) => {
    const [ours, stock, pg, baseline] = (['ours', 'stock', 'postgres', 'baseline'] as const).map((t) => get(t, mode))
    const row = [mode, text(ours), text(stock), text(pg), x(ratio(tps(ours), tps(stock))), x(ratio(tps(ours), tps(pg)))]
    return withBaseline ? [...row, text(baseline), x(ratio(tps(ours), tps(baseline)))] : row
  })
  const header = [
    '-M',
    'ours tps',
    'stock tps',
    'PG15 tps',
    'ours/stock',
    'ours/PG15',
    ...(withBaseline ? ['baseline tps', 'ours/baseline'] : []),
  ]
  return ['### pgbench TPC-B (`-s 1`, `-c 8 -j 8`), its own tps', '', ...table(header, rows)]
}

const wholeMs = (n: number | null | undefined): string =>
  n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US')
const ciShort = (r: CiRecord) =>
  r.target === 'ours-memory'
    ? '`--memory`'
    : r.target === 'ours-no-optimizer'
      ? '`--memory --no-wasm-optimizer`'
      : r.target === 'ours-spares'
        ? '`--memory`, spares loaded'
        : r.target === 'ours-data-dir'
          ? 'data dir'
          : r.target === 'ours-no-threads'
            ? 'no threads'
            : r.target === 'baseline-memory'
              ? 'baseline `--memory`'
              : r.target === 'baseline-no-optimizer'
                ? 'baseline `--memory --no-wasm-optimizer`'
                : r.target
const postgresOf = (records: CiRecord[], r: CiRecord) =>
  records.find(
    (p) => p.target === 'postgres' && p.workers === r.workers && p.driver === r.driver && p.tests === r.tests,
  )

function ciSection(results: Results): string[] {
  const records = results.ci ?? []
  if (records.length === 0) return []
  const engine = results.ciEngine
  const run = (r: CiRun | null) => (!r ? 'not run' : r.verdict === 'ok' ? wholeMs(r.ms) : `**${r.verdict}**`)
  const firstQueries = (r: CiRun | null) =>
    r?.verdict === 'ok' ? `${wholeMs(median(r.firstQueryMs))} / ${wholeMs(Math.max(...r.firstQueryMs))}` : '—'
  const rows = records.map((r) => {
    const pg = postgresOf(records, r)
    return [
      CI_TARGET_LABELS[r.target],
      String(r.workers),
      r.driver,
      r.spawnToReadyMs === null ? `**${r.verdict}**` : wholeMs(r.spawnToReadyMs),
      run(r.first),
      wholeMs(r.spawnToGreenMs),
      run(r.second),
      x(ratio(r.spawnToGreenMs, pg?.spawnToGreenMs ?? null)),
      x(ratio(r.second?.ms ?? null, pg?.second?.ms ?? null)),
      firstQueries(r.first),
      `${num(r.peakRssMb)}${r.peakPssMb === undefined ? '' : ` (PSS ${num(r.peakPssMb)})`}`,
      engine ? wholeMs((r.workers * r.tests * engine.cpuMsPerTest) / results.meta.cpus) : '—',
      r.second?.serverCpuMs != null
        ? `${wholeMs(r.second.serverCpuMs)} / ${wholeMs(r.second.workersCpuMs ?? null)}`
        : '—',
      engine && pg?.second?.workersCpuMs != null
        ? wholeMs((r.workers * r.tests * engine.cpuMsPerTest + pg.second.workersCpuMs) / results.meta.cpus)
        : '—',
    ]
  })
  const tests = [...new Set(records.map((r) => r.tests))].join(', ')
  const failures = records
    .filter((r) => r.verdict !== 'ok')
    .map(
      (r) => `- ${CI_TARGET_LABELS[r.target]}, ${r.workers} workers, ${r.driver}: **${r.verdict}**: ${r.detail ?? ''}`,
    )
  return [
    `### CI-shaped suite: a server spawned, N worker processes each on a database of its own (a pool of four), ${tests} tests each (ms)`,
    '',
    "A test empties its two tables, inserts 40 rows, reads five users' posts at once, runs three short transactions",
    "with `FOR UPDATE` at once and checks the sums. The first run makes the databases (a worker's first query on",
    "pglite-dev-db, its `CREATE DATABASE` on PostgreSQL; stock's were made at spawn, a server each); the second finds",
    'them there. Spawn to green = spawn to ready + the first run. Ratios are ours / PostgreSQL 15 (lower is better).',
    'Worker processes load their modules once the server is ready, before a common start (not timed: the test',
    'runner\'s cost; the server may work meanwhile, as while a runner starts its workers). The row "its workers started',
    'once it loaded a database each ahead" starts them when its log says `databases loaded ahead`: what a runner slower',
    'to start its workers finds (Vitest with four workers asked 2.6 s after the server was ready, on this machine). pglite-dev-db',
    'copies a migrated template built before the timing (as a CI that caches node_modules keeps it); PostgreSQL runs',
    'initdb, starts, and migrates a template database that each `CREATE DATABASE` copies; stock servers run initdb in',
    "WASM and are migrated over the wire. Data dirs on tmpfs; memory summed over the server's processes.",
    ...(engine
      ? [
          `The engine alone: one PGlite in the bench's process ran ${engine.tests} of these tests one after another, each statement prepared once, in ${engine.msPerTest.toFixed(1)} ms and ${engine.cpuMsPerTest.toFixed(1)} ms of CPU a test;`,
          `"the engine alone, on the cores" is the workers' tests at that CPU on the run's ${results.meta.cpus} cores: no PGlite server does the second run faster;`,
          'the last column adds the CPU its clients (the workers) spent against PostgreSQL in the second run, on the same cores.',
          "The CPU of the second run: the server's processes, and the workers summed.",
        ]
      : []),
    '',
    ...table(
      [
        'server',
        'workers',
        'driver',
        'spawn to ready',
        'suite, databases made inside it',
        'spawn to green',
        'the suite again, databases there',
        'spawn to green ÷ PG15',
        'again ÷ PG15',
        "a worker's first query, p50 / max",
        'peak memory in the first run, MB',
        'the engine alone, on the cores',
        'the suite again: CPU, server / workers',
        "the engine and PG15's clients, on the cores",
      ],
      rows,
    ),
    ...(failures.length ? ['', ...failures] : []),
  ]
}

function goalsSection(results: Results): string[] {
  const mark = (g: Goal) => (g.isMet === null ? 'not measured' : g.isMet ? 'met' : '**missed**')
  return [
    '### Goals (issue 5; the CI-shaped suite: issues 27 and 28)',
    '',
    ...table(
      ['goal', 'measured', ''],
      results.goals.map((g) => [g.goal, g.measured, mark(g)]),
    ),
  ]
}

export function renderMarkdown(results: Results): string {
  const m = results.meta
  return [
    `Run ${m.date}: ${m.cpus} × ${m.cpuModel}, ${m.memoryGb.toFixed(0)} GB, Node ${m.node}; load average ${m.loadAverage.start.map((l) => l.toFixed(2)).join(' ')} at start, ${m.loadAverage.end.map((l) => l.toFixed(2)).join(' ')} at end.`,
    `${results.cells.length > 0 ? `Each cell: ${m.warmupSeconds} s warm-up, then a ${m.seconds} s window; whole` : 'Whole'} run ${(m.runSeconds / 60).toFixed(1)} min. \`${m.command}\``,
    ...m.notes.map((n) => `- ${n}`),
    '',
    // A section this run did not measure is left out.
    ...[
      goalsSection,
      ceilingSection,
      summarySection,
      boundSection,
      baselineSection,
      threadsSection,
      fairnessSection,
      resourceSection,
      pgbenchSection,
      ciSection,
      detailSection,
    ]
      .map((section) => section(results))
      .filter((lines) => lines.length > 0)
      .flatMap((lines) => [...lines, '']),
  ].join('\n')
}

// --- Goals ---

function listRatios(parts: Array<[string, number | null]>): string {
  return parts.map(([name, r]) => `${name} ${x(r)}`).join(', ')
}

function allAtLeast(parts: Array<[string, number | null]>, min: number): boolean | null {
  const known = parts.filter(([, r]) => r !== null)
  if (known.length === 0) return null
  return known.length === parts.length && known.every(([, r]) => r! >= min)
}

function allAtMost(parts: Array<[string, number | null]>, max: number): boolean | null {
  const known = parts.filter(([, r]) => r !== null)
  if (known.length === 0) return null
  return known.length === parts.length && known.every(([, r]) => r! <= max)
}

/** Issue 27's floors for select 1 and the point select, by clients: against stock, and against PostgreSQL 15. */
const PATH_FLOORS: ReadonlyArray<{ workload: WorkloadName; clients: number; stock: number; postgres: number }> = [
  { workload: 'select1', clients: 1, stock: 1.0, postgres: 0.6 },
  { workload: 'select1', clients: 16, stock: 1.3, postgres: 0.8 },
  { workload: 'select1', clients: 64, stock: 1.3, postgres: 1.0 },
  { workload: 'point', clients: 1, stock: 1.0, postgres: 0.5 },
  { workload: 'point', clients: 16, stock: 1.3, postgres: 0.7 },
  { workload: 'point', clients: 64, stock: 1.3, postgres: 0.9 },
]

/** Server CPU per select 1 at 16 clients may exceed raw in-process PGlite's by this much (issue 27). */
const CPU_OVER_RAW_US = 20

/** Each driver's server CPU per select 1 at 16 clients on `target`, for the drivers it was measured with. */
function cpuAt16(
  results: Results,
  target: CellRecord['target'],
  drivers: DriverName[],
): Array<readonly [DriverName, number]> {
  return drivers.flatMap((d) => {
    const us = cpuPerOpUs(find(results, target, 'select1', 16, d))
    return us === null ? [] : [[d, us] as const]
  })
}

const listUs = (parts: ReadonlyArray<readonly [DriverName, number]>): string =>
  parts.map(([d, us]) => `${d} ${num(us)} µs`).join(', ')

/** Issue 27's goals, for the cells this run measured: a cell whose comparison did not run is left out. */
function pathGoals(results: Results, drivers: DriverName[]): Goal[] {
  const goals: Goal[] = []
  for (const floor of PATH_FLOORS) {
    for (const [against, min] of [
      ['stock', floor.stock],
      ['postgres', floor.postgres],
    ] as const) {
      const parts = drivers
        .filter(
          (d) =>
            find(results, 'ours', floor.workload, floor.clients, d) &&
            find(results, against, floor.workload, floor.clients, d),
        )
        .map((d): [string, number | null] => [
          d,
          ratio(
            okQps(find(results, 'ours', floor.workload, floor.clients, d)),
            okQps(find(results, against, floor.workload, floor.clients, d)),
          ),
        ])
      if (parts.length === 0) continue
      const name = against === 'stock' ? 'stock pglite-socket' : 'PostgreSQL 15'
      goals.push({
        goal: `${floor.workload} ×${floor.clients} ≥ ${min.toFixed(1)}x ${name} (issue 27)`,
        measured: listRatios(parts),
        isMet: allAtLeast(parts, min),
      })
    }
  }
  const raw = cpuPerOpUs(find(results, 'in-process', 'select1', 1, 'raw simple'))
  const at16 = cpuAt16(results, 'ours', drivers)
  const noEngine = cpuAt16(results, 'no-engine', drivers)
  if (raw !== null && at16.length > 0) {
    goals.push({
      goal: `server CPU per select 1 at 16 clients ≤ raw in-process PGlite + ${CPU_OVER_RAW_US} µs (issue 27)`,
      measured: `${listUs(at16)}; raw ${num(raw)} µs${noEngine.length > 0 ? `; a server with no engine: ${listUs(noEngine)}` : ''}`,
      isMet: at16.every(([, us]) => us <= raw + CPU_OVER_RAW_US),
    })
  }
  return goals
}

/** Ours (both modes) against PostgreSQL 15 at each worker count: a missing or failed row counts as missed. */
function ciGoals(records: CiRecord[], engine: CiEngine | undefined, cpus: number): Goal[] {
  const ours = records.filter((r) => ['ours-memory', 'ours-no-optimizer', 'ours-data-dir'].includes(r.target))
  if (ours.length === 0) return []
  const drivers = new Set(ours.map((r) => r.driver)).size > 1
  const name = (r: CiRecord) => `${ciShort(r)} ×${r.workers}${drivers ? ` ${r.driver}` : ''}`
  const against = (value: (r: CiRecord | undefined) => number | null) =>
    ours.map((r): [string, number | null] => [name(r), ratio(value(r), value(postgresOf(records, r)))])
  const green = against((r) => r?.spawnToGreenMs ?? null)
  const again = against((r) => r?.second?.ms ?? null)
  const firsts = ours.map((r) => ({ r, ms: r.first?.verdict === 'ok' ? r.first.firstQueryMs : null }))
  return [
    {
      goal: 'CI-shaped suite, spawn to green ≤ 1.5x PostgreSQL 15 (issue 28)',
      measured: listRatios(green),
      isMet: allAtMost(green, 1.5),
    },
    {
      goal: 'CI-shaped suite again, databases there, ≤ 1.2x PostgreSQL 15 (issue 27)',
      measured: `${listRatios(again)}${floors(records, engine, cpus)}`,
      isMet: allAtMost(again, 1.2),
    },
    {
      goal: "CI-shaped suite, a worker's first query right after start (its database made): p50 ≤ 150 ms, max ≤ 500 ms (issue 28)",
      measured: firsts
        .map(({ r, ms }) => `${name(r)} ${ms ? `${wholeMs(median(ms))} / ${wholeMs(Math.max(...ms))} ms` : '—'}`)
        .join(', '),
      isMet: firsts.every(({ ms }) => ms === null)
        ? null
        : firsts.every(({ ms }) => ms !== null && median(ms) <= 150 && Math.max(...ms) <= 500),
    },
  ]
}

/** The least any PGlite server could take for the second run, as a ratio to PostgreSQL's: its engine's and clients' CPU on the cores. */
function floors(records: CiRecord[], engine: CiEngine | undefined, cpus: number): string {
  if (!engine) return ''
  const listed = records
    .filter((r) => r.target === 'postgres' && r.second?.ms && r.second.workersCpuMs != null)
    .map((pg) => {
      const floorMs = (pg.workers * pg.tests * engine.cpuMsPerTest + pg.second!.workersCpuMs!) / cpus
      return `×${pg.workers} ${x(ratio(floorMs, pg.second!.ms))}`
    })
  return listed.length > 0
    ? `; no PGlite server under ${listed.join(', ')} (the engine alone and PostgreSQL's clients, on the cores)`
    : ''
}

export function evaluateGoals(results: Results): Goal[] {
  const goals: Goal[] = []
  const drivers = [...new Set(results.cells.filter((c) => c.target === 'ours').map((c) => c.driver as DriverName))]
  const ours = (w: WorkloadName, clients: number, d: DriverName) => okQps(find(results, 'ours', w, clients, d))

  for (const w of WORKLOADS.filter((w) =>
    results.cells.some((c) => c.target === 'ours' && c.workload === w.name && c.clients === 1),
  )) {
    const parts = drivers.map((d): [string, number | null] => [
      d,
      ratio(ours(w.name, 1, d), ceiling(results, w.name, 'db.query')),
    ])
    goals.push({
      goal: `1 client ≥ 1.0x in-process db.query: ${w.name}`,
      measured: listRatios(parts),
      isMet: allAtLeast(parts, 1.0),
    })
  }
  for (const clients of [16, 64]) {
    const parts = drivers.map((d): [string, number | null] => [
      d,
      ratio(ours('select1', clients, d), ceiling(results, 'select1', 'raw simple')),
    ])
    goals.push({
      goal: `${clients} clients select 1 ≥ 0.8x raw simple-Query ceiling`,
      measured: listRatios(parts),
      isMet: allAtLeast(parts, 0.8),
    })
  }
  {
    const parts = [1, 8, 16, 64].map((n): [string, number | null] => [
      `${n} cl.`,
      ratio(ours('point', n, 'postgres.js'), ceiling(results, 'point', 'raw extended')),
    ])
    goals.push({
      goal: 'prepared point select (postgres.js) ≥ 1.0x raw Parse/Bind/Describe/Execute/Sync ceiling',
      measured: listRatios(parts),
      isMet: allAtLeast(parts, 1.0),
    })
  }
  {
    const pairs = results.cells
      .filter((c) => c.target === 'ours')
      .map((c) => ({ c, stock: find(results, 'stock', c.workload, c.clients, c.driver) }))
    const comparable = pairs.filter((p) => p.c.verdict === 'ok' && p.stock?.verdict === 'ok')
    const ratios = comparable.map((p) => ({ p, r: ratio(p.c.qps, p.stock!.qps)! }))
    const below = ratios.filter((r) => r.r < 1.3)
    const failedStock = pairs.filter((p) => p.stock && p.stock.verdict !== 'ok').length
    const min = ratios.length ? Math.min(...ratios.map((r) => r.r)) : null
    goals.push({
      goal: '≥ 1.3x stock pglite-socket (q/s, every cell where stock answered correctly)',
      measured: `${ratios.length - below.length}/${ratios.length} cells ≥ 1.3x (lowest ${x(min)}${below.length ? `; below: ${below.map((b) => `${b.p.c.workload}×${b.p.c.clients} ${b.p.c.driver} ${x(b.r)}`).join(', ')}` : ''}); stock failed in ${failedStock} more`,
      isMet: ratios.length ? below.length === 0 : null,
    })
  }
  {
    const at64 = results.cells.filter((c) => c.target === 'ours' && c.clients === 64)
    const over = at64.filter((c) => c.verdict !== 'ok' || !c.p50Ms || !c.p99Ms || c.p99Ms / c.p50Ms > 2)
    goals.push({
      goal: '64 clients: p99 ≤ 2x p50 (every workload and driver)',
      measured: `${at64.length - over.length}/${at64.length} cells${over.length ? `; over: ${over.map((c) => `${c.workload} ${c.driver} ${c.p50Ms && c.p99Ms ? (c.p99Ms / c.p50Ms).toFixed(1) : c.verdict}`).join(', ')}` : ''}`,
      isMet: at64.length ? over.length === 0 : null,
    })
  }
  if (results.startup) {
    const s = results.startup
    const idleRuns: Array<[string, StartupRun[] | undefined]> = [
      ['`--data-dir` (reopened)', s.dataDir],
      ['`--data-dir` (new)', s.newDataDir],
      ['`--memory`', s.memory],
      ['`--data-dir` (reopened) `--no-wasm-optimizer`', s.withoutOptimizer?.dataDir],
      ['`--memory` `--no-wasm-optimizer`', s.withoutOptimizer?.memory],
    ]
    for (const [name, runs] of idleRuns) {
      if (!runs) continue
      const rss = median(runs.map((r) => r.idleRssKb)) / 1024
      goals.push({ goal: `idle server ≤ 150 MB RSS, ${name}`, measured: `${rss.toFixed(0)} MB`, isMet: rss <= 150 })
    }
    if (s.extraDatabase) {
      const perMb = perExtraDatabaseKb(s.extraDatabase) / 1024
      goals.push({
        goal: 'each database beyond the first ≤ 50 MB RSS (`--memory`, idle)',
        measured: `${perMb.toFixed(1)} MB`,
        isMet: perMb <= 50,
      })
    }
    for (const [name, runs] of [
      ['`--memory`', s.memory],
      ['`--data-dir` already migrated', s.dataDir],
    ] as const) {
      const seconds = median(runs.map((r) => r.ms)) / 1000
      goals.push({
        goal: `start-up with migrations < 0.5 s, ${name}`,
        measured: `${seconds.toFixed(2)} s (median of ${runs.length})`,
        isMet: seconds < 0.5,
      })
    }
    for (const r of (s.firstQuery ?? []).filter((each) => each.target === 'ours')) {
      const seconds = median(r.urlMs) / 1000
      goals.push({
        goal: `spawn to the URL line ≤ 0.5 s, Node ${r.node}, ${r.mode === 'memory' ? '`--memory`' : 'data dir'}`,
        measured: `${seconds.toFixed(2)} s (median of ${r.urlMs.length})`,
        isMet: seconds <= 0.5,
      })
    }
  }
  if (results.connections) {
    const last = results.connections.steps.at(-1)
    if (last)
      goals.push({
        goal: `${last.connections} idle connections add ≤ 100 kB each`,
        measured: `${last.kbPerConnection.toFixed(1)} kB each`,
        isMet: last.kbPerConnection <= 100,
      })
  }
  goals.push(...pathGoals(results, drivers))
  goals.push(...ciGoals(results.ci ?? [], results.ciEngine, results.meta.cpus))
  return goals
}

function perExtraDatabaseKb(extra: ExtraDatabaseRss): number {
  return (extra.rssKb - extra.baseRssKb) / extra.databases
}
