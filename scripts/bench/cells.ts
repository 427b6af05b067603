// One cell of the benchmark: a workload at N clients through one driver against one target (or the in-process
// ceiling), measured in a closed loop with the server's CPU and memory, checked, and the target made healthy after.
// Also the untimed warm-up every server gets after each (re)start.

import type { PGlite } from '@electric-sql/pglite'
import { connect, inProcessSession, type CeilingName, type DriverName, type Session } from './drivers.ts'
import { classify, percentile, runClosedLoop, type Failure, type LoopResult } from './loop.ts'
import { withDeadline, type Usage } from './procs.ts'
import type { CellRecord } from './report.ts'
import { runAdmin, type Target } from './targets.ts'
import { WORKLOADS, createRng, type Workload, type WorkloadName } from './workloads.ts'

/** How long cells run; see the flags in scripts/bench.ts. */
export interface Timing {
  seconds: number
  warmupSeconds: number
  /** No operation completing for this long is a stall (longer for slow operations at many clients). */
  stallFloorMs: number
}

const CONNECT_DEADLINE_MS = 20_000
const HEALTH_DEADLINE_MS = 3_000

const runStarted = performance.now()
export function progress(text: string): void {
  process.stderr.write(`[${((performance.now() - runStarted) / 1000).toFixed(0).padStart(4)} s] ${text}\n`)
}

// --- One cell ---

interface Meter {
  usage(): Usage | null
  pssKb(): number | null
}

function summarize(
  base: Omit<
    CellRecord,
    | 'verdict'
    | 'ops'
    | 'windowMs'
    | 'qps'
    | 'p50Ms'
    | 'p99Ms'
    | 'serverRssMb'
    | 'serverCpuS'
    | 'serverMainThreadCpuS'
    | 'clientCpuS'
  >,
  loop: LoopResult | null,
  failure: Failure | null,
  meter: MeterReadings,
): CellRecord {
  const sorted = loop ? [...loop.latenciesMs].sort((a, b) => a - b) : []
  const windowMs = loop?.windowMs ?? 0
  return {
    ...base,
    verdict: failure?.verdict ?? 'ok',
    ...(failure ? { detail: failure.detail } : {}),
    ops: sorted.length,
    windowMs,
    qps: windowMs > 0 ? sorted.length / (windowMs / 1000) : null,
    p50Ms: sorted.length ? percentile(sorted, 50) : null,
    p99Ms: sorted.length ? percentile(sorted, 99) : null,
    serverRssMb: meter.peakRssKb === null ? null : meter.peakRssKb / 1024,
    ...(meter.pssKb !== null ? { serverPssMb: meter.pssKb / 1024 } : {}),
    serverCpuS: meter.cpuSeconds,
    ...(meter.mainThreadCpuSeconds !== null ? { serverMainThreadCpuS: meter.mainThreadCpuSeconds } : {}),
    clientCpuS: meter.clientCpuS,
  }
}

interface MeterReadings {
  peakRssKb: number | null
  pssKb: number | null
  cpuSeconds: number | null
  mainThreadCpuSeconds: number | null
  clientCpuS: number
}

/** Closed loop over `sessions`, reading `meter` (the server) and this process at the window's edges. */
async function measure(
  sessions: Session[],
  workload: Workload,
  meter: Meter,
  config: Timing,
): Promise<{ loop: LoopResult; readings: MeterReadings }> {
  const rngs = sessions.map((_, i) => createRng(1000 + i))
  const readings: MeterReadings = {
    peakRssKb: null,
    pssKb: null,
    cpuSeconds: null,
    mainThreadCpuSeconds: null,
    clientCpuS: 0,
  }
  let startUsage: Usage | null = null
  let startCpu = process.cpuUsage()
  const sample = () => {
    const usage = meter.usage()
    if (usage) readings.peakRssKb = Math.max(readings.peakRssKb ?? 0, usage.rssKb)
    return usage
  }
  const loop = await runClosedLoop(sessions, (i) => workload.next(rngs[i]!), {
    warmupMs: config.warmupSeconds * 1000,
    durationMs: config.seconds * 1000,
    stallMs: Math.max(config.stallFloorMs, 2 * config.seconds * 1000, sessions.length * workload.typicalOpMs),
    onWindowStart: () => {
      startUsage = sample()
      startCpu = process.cpuUsage()
    },
    onSample: sample,
    onWindowEnd: () => {
      const usage = sample()
      const cpu = process.cpuUsage(startCpu)
      readings.clientCpuS = (cpu.user + cpu.system) / 1e6
      if (usage && startUsage) readings.cpuSeconds = usage.cpuSeconds - startUsage.cpuSeconds
      if (usage?.mainThreadCpuSeconds !== undefined && startUsage?.mainThreadCpuSeconds !== undefined)
        readings.mainThreadCpuSeconds = usage.mainThreadCpuSeconds - startUsage.mainThreadCpuSeconds
      readings.pssKb = meter.pssKb()
    },
  })
  return { loop, readings }
}

async function closeSessions(sessions: Session[]): Promise<void> {
  for (const outcome of await Promise.allSettled(sessions.map((s) => s.close()))) {
    if (outcome.status === 'rejected')
      progress(`  a client did not close cleanly: ${(outcome.reason as Error).message}`)
  }
}

export async function runWireCell(
  target: Target,
  workload: Workload,
  clients: number,
  driver: DriverName,
  config: Timing,
): Promise<CellRecord> {
  const base = { target: target.name, workload: workload.name, clients, driver }
  const none: MeterReadings = {
    peakRssKb: null,
    pssKb: null,
    cpuSeconds: null,
    mainThreadCpuSeconds: null,
    clientCpuS: 0,
  }
  if (workload.resetSql) await adminWithRestart(target, workload.resetSql)
  const attempts = await withDeadline(
    Promise.allSettled(Array.from({ length: clients }, () => connect(driver, target.url))),
    CONNECT_DEADLINE_MS,
    `connect ${clients} clients`,
  ).catch((error: unknown) => error as Error)
  if (attempts instanceof Error || attempts.some((a) => a.status === 'rejected')) {
    const reason =
      attempts instanceof Error
        ? attempts
        : (attempts.find((a) => a.status === 'rejected') as PromiseRejectedResult).reason
    const failure = classify(reason)
    await target.restart()
    if (!(attempts instanceof Error))
      await closeSessions(attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : [])))
    return summarize(base, null, { verdict: failure.verdict, detail: `connect: ${failure.detail}` }, none)
  }
  const sessions = attempts.map((a) => (a as PromiseFulfilledResult<Session>).value)
  const { loop, readings } = await measure(sessions, workload, target, config)
  // A stalled loop still has operations in flight: breaking the server's sockets is what ends them.
  if (!loop.isSettled) await target.restart()
  await closeSessions(sessions)
  let failure = loop.failure
  if (!failure && workload.tally) {
    try {
      const found = Number(await runAdmin(target.url, workload.tally.sql))
      const expected = workload.tally.expected(loop.completed)
      if (found !== expected)
        failure = {
          verdict: 'wrong',
          detail: `table holds ${found} rows after ${loop.completed} operations, expected ${expected}`,
        }
    } catch (error) {
      failure = classify(error)
      failure.detail = `checking the table: ${failure.detail}`
    }
  }
  if (failure) {
    if (loop.isSettled && target.name !== 'postgres') await target.restart()
  } else if (!(await isHealthy(target))) {
    progress(`  ${target.name} does not answer after the cell: restarting`)
    await target.restart()
  } else if (workload.resetSql) {
    await adminWithRestart(target, workload.resetSql)
  }
  return summarize(base, loop, failure, readings)
}

/** Setup SQL between cells; a PGlite server that cannot run it (stock after a failure) is restarted and asked again. */
async function adminWithRestart(target: Target, sql: string): Promise<void> {
  try {
    await runAdmin(target.url, sql)
  } catch (error) {
    if (target.name === 'postgres') throw error
    progress(`  ${target.name} refused '${sql}' (${(error as Error).message}): restarting`)
    await target.restart()
    await runAdmin(target.url, sql)
  }
}

/** Untimed load after every (re)start, so no server is measured while V8 still compiles its JS and PGlite's WASM. */
const WARM_UP: readonly WorkloadName[] = ['select1', 'point', 'tpcb']
const WARM_UP_MS = 200

export async function warmUp(
  sessionFor: (driver: DriverName | CeilingName) => Promise<Session>,
  drivers: ReadonlyArray<DriverName | CeilingName>,
  workloads: readonly WorkloadName[] = WARM_UP,
): Promise<void> {
  for (const driver of drivers) {
    for (const name of workloads) {
      const workload = WORKLOADS.find((w) => w.name === name)!
      const session = await withDeadline(sessionFor(driver), CONNECT_DEADLINE_MS, 'warm-up connection')
      try {
        const rng = createRng(7)
        const { failure } = await runClosedLoop([session], () => workload.next(rng), {
          warmupMs: 0,
          durationMs: WARM_UP_MS,
          stallMs: 5_000,
        })
        if (failure) progress(`  warm-up ${name} with ${driver}: ${failure.verdict} ${failure.detail}`)
      } finally {
        await session.close()
      }
    }
  }
}

/** The same target, warmed up after each restart (stock is restarted after every failure). */
export async function warmed(
  target: Target,
  drivers: readonly DriverName[],
  workloads?: readonly WorkloadName[],
): Promise<Target> {
  const warm = () => warmUp((driver) => connect(driver as DriverName, target.url), drivers, workloads)
  await warm()
  return {
    ...target,
    get url() {
      return target.url
    },
    async restart() {
      await target.restart()
      await warm()
    },
  }
}

async function isHealthy(target: Target): Promise<boolean> {
  try {
    return (await runAdmin(target.url, 'select 1', HEALTH_DEADLINE_MS)) === '1'
  } catch (error) {
    progress(`  health check: ${(error as Error).message}`)
    return false
  }
}

export async function runCeilingCell(
  db: PGlite,
  workload: Workload,
  ceiling: CeilingName,
  config: Timing,
): Promise<CellRecord> {
  const base = { target: 'in-process' as const, workload: workload.name, clients: 1, driver: ceiling }
  if (workload.resetSql) await db.exec(workload.resetSql)
  const self: Meter = {
    usage: () => {
      const cpu = process.cpuUsage()
      return { rssKb: 0, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
    },
    pssKb: () => null,
  }
  const { loop, readings } = await measure([inProcessSession(ceiling, db)], workload, self, config)
  let failure = loop.failure
  if (!failure && workload.tally) {
    const found = Number((await db.query<{ count: number }>(workload.tally.sql)).rows[0]?.count)
    if (found !== workload.tally.expected(loop.completed))
      failure = { verdict: 'wrong', detail: `table holds ${found} rows after ${loop.completed} operations` }
  }
  if (workload.resetSql) await db.exec(workload.resetSql)
  return summarize(base, loop, failure, { ...readings, peakRssKb: null })
}

export function describeCell(cell: CellRecord): string {
  const where = cell.target === 'in-process' ? `in-process ${cell.driver}` : `${cell.driver} on ${cell.target}`
  const figures =
    cell.qps === null
      ? ''
      : `${cell.qps.toFixed(0)} q/s, p50 ${cell.p50Ms?.toFixed(2)} ms, p99 ${cell.p99Ms?.toFixed(2)} ms`
  return `${cell.workload} ×${cell.clients} ${where}: ${cell.verdict === 'ok' ? figures : `${cell.verdict} ${cell.detail ?? ''} ${figures}`}`
}
