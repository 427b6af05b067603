// What a scenario reports: a verdict (ok / error / wrong / stalled) plus a tally of every request it made,
// so tests assert the verdict and scripts/repro-interleave.ts prints the counts.
import { BackendError, ClosedError, StalledError } from '../raw-client.ts'

export interface Tally {
  /** Requests issued (queries, transactions, or protocol exchanges, as the scenario defines). */
  queries: number
  ok: number
  /** Failures by SQLSTATE; client-side failures by their error code (`CONNECTION_CLOSED`, `ECONNRESET`…). */
  errors: Record<string, number>
  /** Answers that arrived but were not the right ones. */
  wrong: number
  /** Requests that got no answer within their deadline. */
  stalled: number
  /** The first description of each kind of failure (error key, `wrong`, `stalled`), truncated, for the report. */
  samples: string[]
}

export type Verdict =
  | { kind: 'ok' }
  | { kind: 'error'; sqlstate: string; message: string }
  | { kind: 'wrong'; detail: string }
  | { kind: 'stalled'; detail: string }

export type Outcome = Verdict & { tally: Tally; details?: Record<string, unknown> }

/** Server options a scenario may ask for; names as in the constructors (stock ignores what it lacks). */
export interface ServerOptions {
  maxConnections?: number
  /** Stock's name: close a connection idle this long (ms). */
  idleTimeout?: number
  /** Ours only: a client holding the session idle this long gets FATAL 25P03. */
  idleInTransactionTimeoutMs?: number
  /** Ours only: a COPY FROM STDIN larger than this fails with 54000. */
  maxCopyBytes?: number
}

/** How a run bounds its waits on a client, query or tool that stopped answering. */
export interface RunOptions {
  /**
   * Replaces the scenario's own bound on its longest wait (each scenario says which wait that is). The stock block
   * passes a few times what ours needs: stock must still show its defect, but need not sit out a bound meant for a
   * loaded machine once its PGlite has died.
   */
  deadlineMs?: number
}

/** A scenario: the server config it needs (if any) and the workload, which only gets a URL. */
export interface Scenario {
  name: string
  /** Server options this scenario assumes; targets.start(scenario.server). */
  server?: ServerOptions
  run(url: string, options?: RunOptions): Promise<Outcome>
}

const MAX_SAMPLES = 8
const MAX_SAMPLE_LENGTH = 200
const SQLSTATE = /^[0-9A-Z]{5}$/

export function createTally(): Tally {
  return { queries: 0, ok: 0, errors: {}, wrong: 0, stalled: 0, samples: [] }
}

/** Keeps the first sample per key: a thousand copies of one error say less than one of each. */
function sample(tally: Tally, key: string, text: string): void {
  if (tally.samples.length >= MAX_SAMPLES || tally.samples.some((s) => s.startsWith(`${key} `))) return
  const line = `${key} ${text}`
  tally.samples.push(line.length > MAX_SAMPLE_LENGTH ? `${line.slice(0, MAX_SAMPLE_LENGTH)}…` : line)
}

/** The key an error is counted under: its SQLSTATE when it has one, else its client-side code or class name. */
export function errorKey(error: unknown): string {
  if (error instanceof StalledError) return 'STALLED'
  if (error instanceof ClosedError) return 'CLOSED'
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code !== '') return code
  return error instanceof Error ? error.name : 'UNKNOWN'
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export function isSqlState(key: string): boolean {
  return SQLSTATE.test(key)
}

/** Counts one failed request: a StalledError as stalled, anything else under errorKey(). */
export function recordFailure(tally: Tally, error: unknown): void {
  if (error instanceof StalledError) {
    tally.stalled++
    sample(tally, 'stalled', error.message.replace(/^stalled: /, ''))
    return
  }
  const key = errorKey(error)
  tally.errors[key] = (tally.errors[key] ?? 0) + 1
  sample(tally, key, errorMessage(error))
}

export function recordWrong(tally: Tally, detail: string): void {
  tally.wrong++
  sample(tally, 'wrong', detail)
}

/** Counts a server ErrorResponse decoded by the raw client. */
export function recordBackendError(tally: Tally, info: { code: string; severity: string; message: string }): void {
  recordFailure(tally, new BackendError(info))
}

/** Runs `op` as one request of the tally: ok when it resolves true, wrong with its text when it resolves a string. */
export async function attempt(tally: Tally, op: () => Promise<true | string>): Promise<Verdict['kind']> {
  tally.queries++
  try {
    const result = await op()
    if (result === true) {
      tally.ok++
      return 'ok'
    }
    recordWrong(tally, result)
    return 'wrong'
  } catch (error) {
    recordFailure(tally, error)
    return error instanceof StalledError ? 'stalled' : 'error'
  }
}

function sampleOf(tally: Tally, key: string): string {
  return tally.samples.find((s) => s.startsWith(`${key} `))?.slice(key.length + 1) ?? ''
}

/** The verdict a tally implies: stalled beats error beats wrong; ok only when every request was ok. */
export function verdictOf(tally: Tally, details?: Record<string, unknown>): Outcome {
  const extra = details === undefined ? { tally } : { tally, details }
  if (tally.stalled > 0) return { kind: 'stalled', detail: sampleOf(tally, 'stalled'), ...extra }
  const keys = Object.keys(tally.errors).sort((a, b) => tally.errors[b]! - tally.errors[a]!)
  const top = keys.find(isSqlState) ?? keys[0]
  if (top !== undefined) {
    const message = sampleOf(tally, top)
    return { kind: 'error', sqlstate: top, message, ...extra }
  }
  if (tally.wrong > 0) return { kind: 'wrong', detail: sampleOf(tally, 'wrong'), ...extra }
  if (tally.ok !== tally.queries)
    return { kind: 'wrong', detail: `${tally.ok} of ${tally.queries} requests ok`, ...extra }
  return { kind: 'ok', ...extra }
}

/** Closes resources on every path: waits for all, then rethrows the first failure. */
export async function closeAll(closers: Array<() => Promise<unknown> | void>): Promise<void> {
  const results = await Promise.allSettled(closers.map(async (c) => c()))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
}

/**
 * Runs a scenario with every rejection no one handles in the meantime counted in its tally, as a failed request.
 * postgres.js looks up array types on connect in a promise no caller holds (fetchArrayTypes in its
 * src/connection.js): on a server that mixes clients up, that query's error has nowhere else to go. While this
 * listener is on, Node does not crash on such a rejection and vitest leaves it to us (it reports only the rejections
 * no other listener takes). Scenarios run one at a time in a process, so what arrives here is this one's.
 */
export async function countingStrayRejections(run: () => Promise<Outcome>): Promise<Outcome> {
  const strays: unknown[] = []
  const onRejection = (reason: unknown) => {
    strays.push(reason)
  }
  process.on('unhandledRejection', onRejection)
  let outcome: Outcome
  try {
    outcome = await run()
  } finally {
    // Node reports a rejection as unhandled once the microtasks of its turn have run: one more turn lets a rejection
    // of the scenario's last turn reach this listener rather than vitest's.
    await new Promise((resolve) => setImmediate(resolve))
    process.off('unhandledRejection', onRejection)
  }
  if (strays.length === 0) return outcome
  for (const reason of strays) {
    outcome.tally.queries++
    recordFailure(outcome.tally, reason)
  }
  return verdictOf(outcome.tally, outcome.details)
}
