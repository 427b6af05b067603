// A server's memory over time: readings taken on a fixed period (100 ms for the short rows, 10 s for the soak), marks
// for the phases of a row, and the figures the goals use (idle before, peak, what is left 60 s after the clients left).
import type { MemoryReading, Target } from './targets.ts'

/** The goal's allowance: back within this much of the idle figure 60 s after the clients left. */
export const IDLE_ALLOWANCE_MB = 64

export interface Sample {
  /** Since the sampler started. */
  ms: number
  rssMb: number
  pssMb?: number
}

export interface Sampler {
  /** Milliseconds since the sampler started: the time base of samples and marks. */
  now(): number
  mark(name: string): void
  marks(): Record<string, number>
  samples(): Sample[]
  stop(): void
}

export function startSampler(target: Target, everyMs: number): Sampler {
  const started = performance.now()
  const taken: Sample[] = []
  const marks: Record<string, number> = {}
  const now = () => performance.now() - started
  const take = (): void => {
    const reading: MemoryReading | null = target.readMemory()
    if (reading)
      taken.push({
        ms: Math.round(now()),
        rssMb: round1(reading.rssMb),
        ...(reading.pssMb !== undefined ? { pssMb: round1(reading.pssMb) } : {}),
      })
  }
  take()
  const timer = setInterval(take, everyMs)
  return {
    now,
    mark: (name) => {
      marks[name] = Math.round(now())
    },
    marks: () => ({ ...marks }),
    samples: () => taken,
    stop: () => {
      take()
      clearInterval(timer)
    },
  }
}

export const round1 = (n: number): number => Math.round(n * 10) / 10

function median(values: number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

type Field = 'rssMb' | 'pssMb'
const within = (samples: Sample[], from: number, to: number) => samples.filter((s) => s.ms >= from && s.ms <= to)
const valuesOf = (samples: Sample[], field: Field) =>
  samples.map((s) => s[field]).filter((v): v is number => v !== undefined)

export interface MemoryFigures {
  /** Median over the idle window before the clients came. */
  idleMb: number | null
  peakMb: number | null
  /** Median over the last second before `afterMs`. */
  afterMb: number | null
  /** How long after the clients left it first came within the allowance of idle (null: it never did). */
  backAfterMs: number | null
  isBack: boolean | null
}

/**
 * `idle` [from, to] is the window before the workload; the workload runs from `idle[1]` to `left`; `afterMs` is when
 * the after figure is read (60 s after `left`).
 */
export function memoryFigures(
  samples: Sample[],
  field: Field,
  idle: [number, number],
  left: number,
  afterMs: number,
): MemoryFigures {
  const idleMb = median(valuesOf(within(samples, idle[0], idle[1]), field))
  const busy = valuesOf(within(samples, idle[1], afterMs), field)
  const peakMb = busy.length ? Math.max(...busy) : null
  const afterMb = median(valuesOf(within(samples, afterMs - 1_000, afterMs + 200), field))
  let backAfterMs: number | null = null
  if (idleMb !== null) {
    const back = within(samples, left, afterMs + 200).find((s) => (s[field] ?? Infinity) <= idleMb + IDLE_ALLOWANCE_MB)
    if (back) backAfterMs = back.ms - left
  }
  const isBack = idleMb === null || afterMb === null ? null : afterMb <= idleMb + IDLE_ALLOWANCE_MB
  return { idleMb: maybeRound(idleMb), peakMb: maybeRound(peakMb), afterMb: maybeRound(afterMb), backAfterMs, isBack }
}

const maybeRound = (n: number | null): number | null => (n === null ? null : round1(n))

/** `idle 290 → peak 351 → 60 s after 301 MB` */
export function describeMemory(f: MemoryFigures, label = 'RSS'): string {
  const mb = (n: number | null) => (n === null ? '?' : n.toFixed(0))
  return `${label} idle ${mb(f.idleMb)}, peak ${mb(f.peakMb)}, 60 s after ${mb(f.afterMb)} MB`
}

/** Least-squares slope (MB per minute) of `field` over the samples in [from, to]. */
export function slopeMbPerMinute(samples: Sample[], field: Field, from: number, to: number): number | null {
  const points = within(samples, from, to).filter((s) => s[field] !== undefined)
  if (points.length < 3) return null
  const xs = points.map((s) => s.ms / 60_000)
  const ys = points.map((s) => s[field]!)
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length
  const my = ys.reduce((a, b) => a + b, 0) / ys.length
  let num = 0
  let den = 0
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my)
    den += (xs[i]! - mx) ** 2
  }
  return den === 0 ? null : num / den
}

export function meanOf(samples: Sample[], field: Field, from: number, to: number): number | null {
  const values = valuesOf(within(samples, from, to), field)
  return values.length ? round1(values.reduce((a, b) => a + b, 0) / values.length) : null
}
