// The closed loop: every client runs its next operation as soon as its last one is answered, for a warm-up and
// then a measured window. Counts what completes inside the window, and stops at the first wrong answer, error or stall.

import { StalledError } from './procs.ts'
import { WrongResultError, type Session } from './drivers.ts'
import type { Op } from './workloads.ts'

export type Verdict = 'ok' | 'wrong' | 'error' | 'stalled'

export interface Failure {
  verdict: Exclude<Verdict, 'ok'>
  detail: string
}

export interface LoopOptions {
  /** At least this long, and until every client has completed one operation (queues have filled). */
  warmupMs: number
  /**
   * At least this long, and until half as many operations completed as there are clients (or MAX_WINDOW_FACTOR ×
   * this): with slow operations (COPY at 64 clients) a short window would only see the fastest few.
   */
  durationMs: number
  /** No operation completing for this long (any client) is a stall. */
  stallMs: number
  /** Called when the measured window opens and closes (read the server's CPU and memory there). */
  onWindowStart?: () => void
  onWindowEnd?: () => void
  /** Called every SAMPLE_MS inside the window (peak memory). */
  onSample?: () => void
}

export interface LoopResult {
  failure: Failure | null
  /** Operations completed inside the window, and their latencies (ms). */
  latenciesMs: number[]
  windowMs: number
  /** Operations completed at any time (warm-up and drain too), for tallies such as rows copied. */
  completed: number
  /** False when a stall left operations in flight: the caller must break the connections (kill the server). */
  isSettled: boolean
}

const SAMPLE_MS = 250
/** A window is stretched for slow operations (COPY at 64 clients) at most to this many times its length. */
const MAX_WINDOW_FACTOR = 20
/** After a failure, the other clients get this long to finish what they sent; then their connections are broken. */
const FAILURE_GRACE_MS = 2_000

export function classify(error: unknown): Failure {
  if (error instanceof WrongResultError) return { verdict: 'wrong', detail: error.message }
  if (error instanceof StalledError) return { verdict: 'stalled', detail: error.message }
  const code = (error as { code?: unknown }).code
  const message = (error as Error).message ?? String(error)
  return {
    verdict: 'error',
    detail: typeof code === 'string' && !message.startsWith(code) ? `${code} ${message}` : message,
  }
}

/**
 * An in-process PGlite answers through microtasks only, so a loop over it never lets timers run: the window's edges
 * are therefore checked after every operation, and the loop yields to the event loop at least this often.
 */
const YIELD_EVERY_MS = 20

export async function runClosedLoop(
  sessions: Session[],
  nextOp: (client: number) => Op,
  options: LoopOptions,
): Promise<LoopResult> {
  const latenciesMs: number[] = []
  let failure: Failure | null = null
  let isStopping = false
  let isMeasuring = false
  let windowStart = 0
  let windowEnd = 0
  let completed = 0
  const began = performance.now()
  const opensAt = began + options.warmupMs
  let closesAt = Number.POSITIVE_INFINITY
  let latestCloseAt = Number.POSITIVE_INFINITY
  const warm = new Set<number>()
  let lastProgress = began
  let lastYield = began
  let failedAt = 0

  const closeWindow = (now: number) => {
    isMeasuring = false
    windowEnd = now
    options.onWindowEnd?.()
  }
  const advance = (now: number) => {
    if (windowStart === 0 && !isStopping && now >= opensAt && warm.size === sessions.length) {
      options.onWindowStart?.()
      windowStart = performance.now()
      closesAt = windowStart + options.durationMs
      latestCloseAt = windowStart + MAX_WINDOW_FACTOR * options.durationMs
      isMeasuring = true
    }
    if (isMeasuring && ((now >= closesAt && latenciesMs.length >= sessions.length / 2) || now >= latestCloseAt)) {
      closeWindow(now)
      isStopping = true
    }
  }

  const loops = sessions.map(async (session, client) => {
    while (!isStopping) {
      const op = nextOp(client)
      const started = performance.now()
      try {
        await session.run(op)
      } catch (error) {
        failure ??= classify(error)
        failedAt ||= performance.now()
        isStopping = true
        return
      }
      const ended = performance.now()
      completed++
      lastProgress = ended
      warm.add(client)
      if (isMeasuring) latenciesMs.push(ended - started)
      advance(ended)
      if (ended - lastYield >= YIELD_EVERY_MS) {
        lastYield = ended
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  })

  let resolveStall: () => void = () => {}
  const stalled = new Promise<'stalled'>((resolve) => {
    resolveStall = () => resolve('stalled')
  })
  const watchdog = setInterval(() => {
    const now = performance.now()
    advance(now)
    if (isMeasuring) options.onSample?.()
    const idleMs = now - lastProgress
    if (failedAt > 0 && now - failedAt > FAILURE_GRACE_MS) resolveStall()
    else if (idleMs > options.stallMs) {
      failure ??= {
        verdict: 'stalled',
        detail: `no operation completed for ${Math.round(idleMs)} ms${windowEnd === 0 ? '' : ' (after the window, draining)'}`,
      }
      isStopping = true
      resolveStall()
    }
  }, SAMPLE_MS)
  let isSettled: boolean
  try {
    isSettled = (await Promise.race([Promise.all(loops), stalled])) !== 'stalled'
  } finally {
    clearInterval(watchdog)
  }
  // Stopped early (a failure): close the window where it ended.
  if (isMeasuring) closeWindow(performance.now())
  return { failure, latenciesMs, windowMs: windowStart === 0 ? 0 : windowEnd - windowStart, completed, isSettled }
}

/** Nearest-rank percentile of `values` (ms). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
