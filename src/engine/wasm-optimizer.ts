// V8 compiles Postgres's WASM twice: at once with its baseline compiler, then again, in its helper threads, with its
// optimizing one, each function that has run enough (its tiering budget, roughly bytes run). At V8's own budget,
// opening a database makes about a hundred of Postgres's functions hot, its parser (a 127 kB function) among them,
// though most run only then: optimizing them took 0.7 s of CPU in every process (Node keeps no compiled WASM between
// runs), just when the databases start, and the compiler's memory stays with V8's helpers (about 60 MB idle).

import { setFlagsFromString } from 'node:v8'

let set = false

/**
 * A budget that the start of a database does not spend, and that a function running a long statement, or a query's
 * path run many times, does within a few seconds. V8's own is 1.8 M (Node 20) or 13 M (Node 22, 24).
 */
export const LATE_TIERING_BUDGET = 2_000_000_000

/**
 * Set once V8 runs, `--liftoff-only` stops the optimizing on Node 20 and 22, not on 24, whose V8 reads it at start
 * only. Its filter of the one function allowed to be optimized is read each time one gets hot, on every version: an
 * index no function has leaves none.
 */
const NEVER = ['--liftoff-only', `--wasm-tier-up-filter=${0x7fff_ffff}`]

/** Read when a module is instantiated: set before any database starts, it holds for all. */
const LATE = [`--wasm-tiering-budget=${LATE_TIERING_BUDGET}`]

/**
 * From now on, in the whole process: V8 optimizes only the WASM that stays hot (`optimize: true`), or none
 * (`false`: a short run, such as a CI job's). A budget the user gave Node (on its command line or in NODE_OPTIONS)
 * is left as it is.
 */
export function setWasmOptimizer(optimize: boolean): void {
  if (set) return
  set = true
  if (!optimize) for (const flag of NEVER) setFlagsFromString(flag)
  else if (!givenToNode('--wasm-tiering-budget')) for (const flag of LATE) setFlagsFromString(flag)
}

function givenToNode(flag: string): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  // V8 takes its flags' names with - or _.
  return given.some((arg) => arg.split('=')[0]!.replace(/_/g, '-') === flag)
}
