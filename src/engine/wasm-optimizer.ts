// V8 compiles Postgres's WASM twice: at once with its baseline compiler, then again, in its helper threads, with its
// optimizing one, each function that gets hot. The first databases of a process make a hundred or more of Postgres's
// functions hot, its parser (a 127 kB function) among them, and optimizing them takes 1-1.5 s of CPU in every
// process (Node keeps no compiled WASM between runs), just when the databases start and their clients want the
// cores. A short run (a CI job's tests) gains less from the optimized code than that costs; a CPU-heavy statement
// takes up to twice as long without it. Not kept: a larger tiering budget, which left a query's path at the baseline
// compiler too (point selects took about half as much CPU again), and a filter lifted once databases started: V8
// decides whether a function can be optimized when it first compiles it, so the functions of a start would never be.

import { setFlagsFromString } from 'node:v8'

let skipped = false

/**
 * Set once V8 runs, `--liftoff-only` stops the optimizing on Node 20 and 22, not on 24, whose V8 reads it at start
 * only. Its filter of the one function allowed to be optimized is read each time one gets hot, on every version: an
 * index no function has leaves none.
 */
const FLAGS = ['--liftoff-only', `--wasm-tier-up-filter=${0x7fff_ffff}`]

/**
 * V8 optimizes JavaScript (PGlite's calls and file system, the server's) in the same helper threads, again for each
 * database's thread (an isolate of its own): in a short run, about as much CPU as the WASM's. At three times V8's
 * threshold it waits for what stays hot (eight times left a second run slower). V8 12 (Node 22) counts calls; V8 11
 * (Node 20) spends a budget; Node 24's V8 reads its count at start only, so there this changes nothing.
 */
const LATER_JAVASCRIPT =
  Number(process.versions.v8.split('.')[0]) >= 12
    ? `--invocation-count-for-turbofan=${3 * 3000}`
    : `--interrupt-budget=${3 * 66 * 1024}`

/**
 * From now on, in the whole process: WASM runs as V8's baseline compiler made it, never optimized, and JavaScript is
 * optimized later.
 */
export function skipWasmOptimizer(): void {
  if (skipped) return
  skipped = true
  for (const flag of [...FLAGS, LATER_JAVASCRIPT]) setFlagsFromString(flag)
}
