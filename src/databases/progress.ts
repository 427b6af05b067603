// Start-up steps that run long say so: one info line naming the step once it has run PROGRESS_AFTER_MS, then one
// every PROGRESS_EVERY_MS while it still runs. Lines, not a spinner: they read the same in a CI log and as JSON.
// PGlite's WASM holds the event loop while it works, so a line comes at the first turn of the loop after the mark.

import type { Logger } from '../log.ts'

export const DEFAULT_PROGRESS_AFTER_MS = 2_000
const PROGRESS_EVERY_MS = 10_000

export interface ProgressOptions {
  /** Report after this long; 0 reports every step at the loop's next turn. Default 2000. */
  afterMs?: number
}

/**
 * Runs `work`, logging `still working {step, ms}` while it takes longer than `afterMs`. `step` says what is being
 * done, in words a person reads ("building the database template (initdb + 12 migrations)").
 */
export async function reportSlowStep<T>(
  log: Logger,
  step: string,
  work: () => Promise<T>,
  options: ProgressOptions = {},
): Promise<T> {
  if (!log.enabled('info')) return work()
  const started = performance.now()
  const report = () => log.info('still working', { step, ms: Math.round(performance.now() - started) })
  let every: NodeJS.Timeout | null = null
  const first = setTimeout(() => {
    report()
    every = setInterval(report, PROGRESS_EVERY_MS).unref()
  }, options.afterMs ?? DEFAULT_PROGRESS_AFTER_MS).unref()
  try {
    return await work()
  } finally {
    clearTimeout(first)
    if (every !== null) clearInterval(every)
  }
}

/** "12 migrations", "1 migration". */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}
