// Limits (issue 14): what one client can do to the server, measured on a fresh pglite-dev-db per scenario and, with
// PG_ORACLE_URL set, on that PostgreSQL: blocked starts, queue and statement timeouts, CancelRequest, COPY misuse, and
// the memory left by unread results, a NOTIFY flood and a long mixed load. Prints a Markdown table to stdout,
// progress to stderr; the figures go to JSON. Logic in harness/limits/.
// Usage: npm run limits -- [--only LIST] [--soak-minutes N] [--targets ours,postgres] [--storage memory|data-dir] [--write] [--json FILE]
// Exit code: 0 every goal met, 1 a goal missed or a line not measured, 2 usage error.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { queueScenario, sleepScenario } from '../harness/limits/blocking.ts'
import { copyScenario } from '../harness/limits/copy.ts'
import { bigResultScenario, notifyScenario } from '../harness/limits/memory-rows.ts'
import { mixedLoadScenario } from '../harness/limits/mixed-load.ts'
import {
  allMet,
  mergeRecords,
  renderTable,
  type Line,
  type LimitsRecord,
  type TargetLine,
} from '../harness/limits/report.ts'
import { failed, type Measured, type Scenario } from '../harness/limits/scenario.ts'
import {
  openOracle,
  REPO_ROOT,
  startOurs,
  TARGET_LABELS,
  type Storage,
  type Target,
  type TargetName,
} from '../harness/limits/targets.ts'
import { cancelScenario, loopTimeoutScenario, statementTimeoutScenario } from '../harness/limits/timeouts.ts'

const SCENARIOS: readonly Scenario[] = [
  sleepScenario,
  queueScenario,
  statementTimeoutScenario,
  cancelScenario,
  loopTimeoutScenario,
  copyScenario,
  bigResultScenario,
  notifyScenario,
  mixedLoadScenario,
]
const DEFAULT_JSON = 'results/limits.json'
const DEFAULT_SOAK_MINUTES = 2
const USAGE = `usage: npm run limits -- [--only LIST] [--soak-minutes N] [--targets ours,postgres] [--storage memory|data-dir] [--write] [--json FILE]
  --only LIST          scenarios, comma-separated: ${SCENARIOS.map((s) => s.id).join(', ')}
  --soak-minutes N     minutes of mixed load in the soak scenario (default ${DEFAULT_SOAK_MINUTES}; 30 is the long proof)
  --targets LIST       ours, postgres (default: both when PG_ORACLE_URL is set, else ours)
  --storage S          where ours keeps its data: data-dir (a fresh one per scenario, as npm start keeps one; the default) or memory (--memory)
  --write              write the figures to ${DEFAULT_JSON} (with --only: replace those lines, keep the rest)
  --json FILE          write them to FILE instead (merged the same way when it exists)
PG_ORACLE_URL=postgres://... measures the same on a throwaway PostgreSQL database (memory read from /proc when local).`

interface Config {
  scenarios: Scenario[]
  soakMinutes: number
  targets: TargetName[]
  storage: Storage
  json: string | null
}

function parseConfig(argv: string[]): Config | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      'soak-minutes': { type: 'string' },
      targets: { type: 'string' },
      storage: { type: 'string' },
      write: { type: 'boolean' },
      json: { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  })
  if (values.help) return 'help'
  const names = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  for (const name of names ?? [])
    if (!SCENARIOS.some((s) => s.id === name)) throw new Error(`--only: unknown scenario '${name}'`)
  const soakMinutes = Number(values['soak-minutes'] ?? DEFAULT_SOAK_MINUTES)
  if (!(soakMinutes > 0)) throw new Error(`--soak-minutes must be a positive number, got '${values['soak-minutes']}'`)
  const targets = (values.targets?.split(',').map((s) => s.trim()) ??
    (process.env.PG_ORACLE_URL ? ['postgres', 'ours'] : ['ours'])) as TargetName[]
  for (const t of targets) if (t !== 'ours' && t !== 'postgres') throw new Error(`--targets: unknown target '${t}'`)
  if (targets.includes('postgres') && !process.env.PG_ORACLE_URL)
    throw new Error('--targets postgres needs PG_ORACLE_URL')
  const storage = (values.storage ?? 'data-dir') as Storage
  if (storage !== 'memory' && storage !== 'data-dir') throw new Error(`--storage: memory or data-dir, got '${storage}'`)
  return {
    scenarios: names ? SCENARIOS.filter((s) => names.includes(s.id)) : [...SCENARIOS],
    soakMinutes,
    targets,
    storage,
    json: values.json ?? (values.write ? DEFAULT_JSON : null),
  }
}

const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} limits: ${line}\n`)

const uptime = (): string => execFileSync('uptime', { encoding: 'utf8' }).trim()

function commitOf(): string {
  const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim()
  const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'bin'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  }).trim()
  return dirty ? `${head} with uncommitted changes in src/ or bin/` : head
}

/** One scenario on one target; a scenario that throws fails its lines with the reason (and ours' last log lines). */
async function measure(scenario: Scenario, target: Target, config: Config): Promise<Record<string, Measured>> {
  try {
    return await scenario.run(target, { soakMinutes: config.soakMinutes, storage: config.storage, log })
  } catch (error) {
    const why = `${(error as Error).message}${target.tail() ? ` (server log: ${target.tail().split('\n').slice(-3).join(' / ')})` : ''}`
    log(`${scenario.id} on ${TARGET_LABELS[target.name]} failed: ${why}`)
    return Object.fromEntries(scenario.lines.map((l) => [l.id, failed(why)]))
  }
}

async function runAll(config: Config): Promise<Line[]> {
  const lines: Line[] = config.scenarios.flatMap((s) =>
    s.lines.map((l) => ({ ...l, scenario: s.id, postgres: null, ours: null })),
  )
  const oracle = config.targets.includes('postgres') ? await openOracle(process.env.PG_ORACLE_URL!) : null
  try {
    for (const scenario of config.scenarios) {
      for (const name of config.targets) {
        log(`${scenario.id} on ${TARGET_LABELS[name]}`)
        const target =
          name === 'postgres' ? oracle!.target : await startOurs({ ...scenario.ours, storage: config.storage })
        const date = new Date().toISOString()
        const loadAverage = os.loadavg().map((n) => Math.round(n * 100) / 100)
        const measured = await measure(scenario, target, config)
        const stop = await target.stop()
        for (const line of lines.filter((l) => l.scenario === scenario.id)) {
          const result: TargetLine = {
            ...(measured[line.id] ?? failed('the scenario returned nothing for this line')),
            date,
            loadAverage,
            ...(name === 'ours' ? { stop } : {}),
          }
          line[name] = result
          log(`  ${line.id}: ${result.text}${result.met === false ? '  (goal MISSED)' : ''}`)
        }
      }
    }
  } finally {
    await oracle?.close()
  }
  return lines
}

export async function main(argv: string[]): Promise<number> {
  let config: Config | 'help'
  try {
    config = parseConfig(argv)
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (config === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const started = performance.now()
  const run = {
    date: new Date().toISOString(),
    command: `npm run limits${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    uptime: { start: uptime(), end: '' },
    loadAverage: { start: os.loadavg(), end: [] as number[] },
    runSeconds: 0,
    scenarios: config.scenarios.map((s) => s.id),
    targets: config.targets,
    storage: config.storage,
    soakMinutes: config.soakMinutes,
  }
  log(
    `${run.scenarios.join(', ')} on ${config.targets.map((t) => TARGET_LABELS[t]).join(' and ')}; ${run.uptime.start}`,
  )
  const lines = await runAll(config)
  run.uptime.end = uptime()
  run.loadAverage.end = os.loadavg()
  run.runSeconds = Math.round((performance.now() - started) / 1000)
  let record: LimitsRecord = {
    meta: {
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
      memoryGb: Math.round(os.totalmem() / 2 ** 30),
      commit: commitOf(),
      notes: [
        `Each scenario runs on a fresh pglite-dev-db (\`node bin/pglite-dev-db.js ${config.storage === 'memory' ? '--memory' : '--data-dir <fresh dir>'} --port 0 --no-tls\`), killed at its end (SIGTERM, SIGKILL after 10 s); PostgreSQL is the one PG_ORACLE_URL names, shared by every scenario.`,
        "pglite-dev-db's memory is its process's VmRSS (every database runs in a worker thread of that process). PostgreSQL's is summed over its postmaster, its helper processes and the backends of this script's clients (application_name limits*), other clients left out: RSS counts the shared buffers once per process that touched them, PSS divides them among those processes.",
        'Clients and servers share one 2-core machine with other work: read the load average of each line, and compare figures within a run.',
      ],
      runs: [run],
    },
    lines,
  }
  if (config.json) {
    if (existsSync(config.json))
      record = mergeRecords(JSON.parse(await readFile(config.json, 'utf8')) as LimitsRecord, record)
    await writeFile(config.json, `${JSON.stringify(record, null, 2)}\n`)
    log(`figures in ${config.json}`)
  }
  process.stdout.write(`${renderTable(record)}\n`)
  log(`done in ${(run.runSeconds / 60).toFixed(1)} min; ${run.uptime.end}`)
  return allMet(record) ? 0 : 1
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.once('SIGINT', () => process.exit(130))
  process.once('SIGTERM', () => process.exit(143))
  process.on('unhandledRejection', (reason) =>
    log(`unhandled rejection (the run goes on): ${(reason as Error)?.message ?? String(reason)}`),
  )
  const status = await main(process.argv.slice(2))
  process.exitCode = status
  // Sockets a stalled server left open must not keep the process alive; servers are killed at exit.
  setTimeout(() => process.exit(status), 1000).unref()
}
