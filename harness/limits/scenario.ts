// What a scenario of the limits is: the server it needs, the lines of the table it fills, and how it measures them on
// one target. The same code runs against PostgreSQL and pglite-dev-db; only ours is judged against the goals.
import type { OursOptions, Storage, Target } from './targets.ts'

export interface Measured {
  /** The figure as the table shows it. */
  text: string
  /** Whether it meets the line's goal; null when the goal does not apply or the figure could not be read. */
  met: boolean | null
  figures: Record<string, unknown>
}

export interface LineSpec {
  id: string
  what: string
  goal: string
}

export interface RunContext {
  soakMinutes: number
  /** Where ours keeps its data (the soak says how much of its RSS the database itself is). */
  storage: Storage
  /** Progress, to stderr. */
  log(line: string): void
}

export interface Scenario {
  /** The name --only takes. */
  id: string
  /** Options for the fresh pglite-dev-db this scenario runs on. */
  ours?: OursOptions
  lines: LineSpec[]
  /** Measures every line on one target (a fresh pglite-dev-db, or the PostgreSQL oracle). */
  run(target: Target, context: RunContext): Promise<Record<string, Measured>>
}

/** A line the scenario could not measure: it says why in the table and fails the goal. */
export function failed(why: string, figures: Record<string, unknown> = {}): Measured {
  return { text: `not measured: ${why}`, met: false, figures: { failure: why, ...figures } }
}
