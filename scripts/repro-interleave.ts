// Runs the interleaving workloads (harness/scenarios, a–e) against any Postgres URL and prints what each produced,
// or (--replay FILE) replays a protocol trace written with pglite-dev-db --trace and compares the replies.
// Usage: tsx scripts/repro-interleave.ts --url postgres://postgres@127.0.0.1:5432/postgres [--scenario NAME] [--json]
//        tsx scripts/repro-interleave.ts --replay FILE --url URL [--types-only] [--deadline-ms MS]
// Exit code: 0 every scenario ok (every connection as traced), 1 any not ok (a difference or a stall), 2 usage error
// (or a trace that cannot be replayed).
import { parseArgs } from 'node:util'
import { replayTrace } from '../harness/replay/replay.ts'
import { interleavingScenarios } from '../harness/scenarios/index.ts'
import { countingStrayRejections, type Outcome } from '../harness/scenarios/outcome.ts'

const USAGE = `usage: repro-interleave --url URL [--scenario NAME] [--json]
       repro-interleave --replay FILE --url URL [--types-only] [--deadline-ms MS]
scenarios: ${interleavingScenarios.map((s) => s.name).join(', ')}
pgbench drops and recreates pgbench_* tables: use a throwaway database.
--replay sends each traced connection's messages (pglite-dev-db --trace FILE) in the recorded order, each once its
connection has the replies the trace shows, then compares what each got: message types, SQLSTATEs, statuses, tags,
columns and values (--types-only: types and SQLSTATEs). --deadline-ms bounds each wait (default 5000).`

interface Row {
  scenario: string
  ms: number
  outcome: Outcome
}

function formatErrors(errors: Record<string, number>): string {
  const entries = Object.entries(errors).sort((a, b) => b[1] - a[1])
  return entries.length === 0 ? '-' : entries.map(([key, count]) => `${key}×${count}`).join(' ')
}

function formatTable(rows: Row[]): string {
  const header = ['scenario', 'verdict', 'queries', 'ok', 'wrong', 'stalled', 'ms', 'errors']
  const cells = rows.map(({ scenario, ms, outcome: { kind, tally } }) => [
    scenario,
    kind,
    String(tally.queries),
    String(tally.ok),
    String(tally.wrong),
    String(tally.stalled),
    String(ms),
    formatErrors(tally.errors),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  const line = (c: string[]) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')
  const samples = rows.flatMap(({ scenario, outcome }) => outcome.tally.samples.map((s) => `  ${scenario}: ${s}`))
  return [line(header), ...cells.map(line), ...(samples.length > 0 ? ['', 'samples:', ...samples] : [])].join('\n')
}

export async function main(argv: string[]): Promise<number> {
  let values: {
    url?: string
    scenario?: string
    json?: boolean
    help?: boolean
    replay?: string
    'types-only'?: boolean
    'deadline-ms'?: string
  }
  try {
    values = parseArgs({
      args: argv,
      options: {
        url: { type: 'string' },
        scenario: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean' },
        replay: { type: 'string' },
        'types-only': { type: 'boolean' },
        'deadline-ms': { type: 'string' },
      },
      strict: true,
    }).values
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  if (values.replay !== undefined) {
    const deadline = values['deadline-ms']
    if (!values.url || (deadline !== undefined && !/^\d+$/.test(deadline))) {
      process.stderr.write(`${values.url ? '--deadline-ms must be a whole number' : '--url is required'}\n${USAGE}\n`)
      return 2
    }
    return replayTrace({
      file: values.replay,
      url: values.url,
      typesOnly: values['types-only'] ?? false,
      ...(deadline !== undefined ? { deadlineMs: Number(deadline) } : {}),
      print: (line) => process.stdout.write(`${line}\n`),
    })
  }
  const selected = interleavingScenarios.filter((s) => values.scenario === undefined || s.name === values.scenario)
  if (!values.url || selected.length === 0) {
    process.stderr.write(`${values.url ? `unknown scenario: ${values.scenario}` : '--url is required'}\n${USAGE}\n`)
    return 2
  }
  const rows: Row[] = []
  for (const scenario of selected) {
    const started = Date.now()
    const outcome = await countingStrayRejections(() => scenario.run(values.url!))
    rows.push({ scenario: scenario.name, ms: Date.now() - started, outcome })
    if (!values.json) process.stderr.write(`${scenario.name}: ${outcome.kind}\n`)
  }
  process.stdout.write(values.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatTable(rows)}\n`)
  return rows.every((r) => r.outcome.kind === 'ok') ? 0 : 1
}

process.exitCode = await main(process.argv.slice(2))
