// The limits' record: every line with each target's figures, written as JSON and printed as a Markdown table. A run
// of some scenarios (--only) replaces only what it measured in an earlier record.
import type { Measured } from './scenario.ts'
import type { StopOutcome, TargetName } from './targets.ts'

export interface TargetLine extends Measured {
  /** When it was measured, and the load average then (the machine is shared). */
  date: string
  loadAverage: number[]
  /** Ours: how the fresh server of this line's scenario stopped at its end. */
  stop?: StopOutcome | null
}

export interface Line {
  id: string
  scenario: string
  what: string
  goal: string
  postgres: TargetLine | null
  ours: TargetLine | null
}

export interface Run {
  date: string
  command: string
  /** `uptime` at the start and the end. */
  uptime: { start: string; end: string }
  loadAverage: { start: number[]; end: number[] }
  runSeconds: number
  scenarios: string[]
  targets: TargetName[]
  soakMinutes: number
}

export interface LimitsRecord {
  meta: {
    node: string
    cpus: number
    cpuModel: string
    memoryGb: number
    commit: string
    notes: string[]
    /** Every run that measured lines of this record, the latest last. */
    runs: Run[]
  }
  lines: Line[]
}

/** Lines of `fresh` replace the same lines of `base`, target by target; lines it did not measure are kept. */
export function mergeRecords(base: LimitsRecord, fresh: LimitsRecord): LimitsRecord {
  const lines = base.lines.map((line) => {
    const update = fresh.lines.find((l) => l.id === line.id)
    if (!update) return line
    return { ...update, postgres: update.postgres ?? line.postgres, ours: update.ours ?? line.ours }
  })
  for (const line of fresh.lines) if (!lines.some((l) => l.id === line.id)) lines.push(line)
  return { meta: { ...fresh.meta, runs: [...base.meta.runs, ...fresh.meta.runs] }, lines }
}

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

function verdict(line: Line): string {
  if (!line.ours) return '–'
  if (line.ours.met === null) return '–'
  return line.ours.met ? 'yes' : '**NO**'
}

function stopNote(stop: StopOutcome | null | undefined): string {
  if (!stop) return ''
  if (stop.wasDead) return `; the server had died (exit ${stop.exitCode})`
  if (stop.killed) return '; the server ignored SIGTERM for 10 s (SIGKILL)'
  if (stop.exitCode !== 0) return `; the server exited ${stop.exitCode} on SIGTERM`
  return ''
}

export function renderTable(record: LimitsRecord): string {
  const rows = record.lines.map((line) => {
    const pg = line.postgres ? line.postgres.text : 'not measured'
    const ours = line.ours ? `${line.ours.text}${stopNote(line.ours.stop)}` : 'not measured'
    return `| ${cell(line.what)} | ${cell(pg)} | ${cell(ours)} | ${cell(line.goal)} | ${verdict(line)} |`
  })
  return [
    '| what a client did | PostgreSQL | pglite-dev-db | goal | met? |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n')
}

/** Whether every goal measured for ours was met. */
export function allMet(record: LimitsRecord): boolean {
  return record.lines.every((line) => !line.ours || line.ours.met !== false)
}
