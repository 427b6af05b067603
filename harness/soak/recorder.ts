// The soak's books: every operation by kind (ok, expected errors, unexpected results), every error by SQLSTATE or
// client error code split into expected and unexpected, the first samples of each unexpected kind, and the table.
import { withDeadline } from '../raw-client.ts'
import { errorKey, errorMessage } from '../scenarios/outcome.ts'

export interface KindCount {
  ops: number
  ok: number
  /** Errors the operation provoked on purpose (division by zero, CopyFail, a client it cut off). */
  expectedErrors: number
  /** Wrong results, unexpected errors and stalls. */
  unexpected: number
}

export interface ErrorCount {
  expected: number
  unexpected: number
}

export interface SoakTally {
  kinds: Record<string, KindCount>
  errors: Record<string, ErrorCount>
  /** The first few descriptions of unexpected results, per kind. */
  samples: string[]
}

/** What a check returns: true, or a description of what was wrong. */
export type Verdict = true | string

const SAMPLES_PER_KIND = 3
const MAX_SAMPLES = 40
const MAX_SAMPLE_LENGTH = 300

export interface Recorder {
  readonly tally: SoakTally
  /**
   * Runs one operation of `kind` under a deadline: ok when it resolves true, unexpected when it resolves a
   * description or throws (unless the error's code is in `expectedCodes`). Resolves the verdict or the error.
   */
  run(
    kind: string,
    op: () => Promise<Verdict>,
    options?: { expectedCodes?: readonly string[] },
  ): Promise<Verdict | Error>
  /** One event the soak did not ask for but checks as it comes (a notification delivered). */
  check(kind: string, verdict: Verdict): void
  /** An error an operation provoked and got, counted inside it (the operation itself may still be ok). */
  expectedError(kind: string, code: string): void
  /** Something wrong noticed outside run(): a notification on the wrong channel, a failed final check. */
  unexpected(kind: string, detail: string): void
  /** An unexpected error noticed outside run() ('error' events of idle clients). */
  unexpectedError(kind: string, error: unknown): void
  readonly unexpectedCount: number
}

export function createRecorder(opDeadlineMs: number): Recorder {
  const tally: SoakTally = { kinds: {}, errors: {}, samples: [] }
  const perKindSamples = new Map<string, number>()
  let unexpectedCount = 0
  const kind = (name: string) => (tally.kinds[name] ??= { ops: 0, ok: 0, expectedErrors: 0, unexpected: 0 })
  const error = (code: string) => (tally.errors[code] ??= { expected: 0, unexpected: 0 })
  const unexpected = (name: string, detail: string) => {
    kind(name).unexpected++
    unexpectedCount++
    const taken = perKindSamples.get(name) ?? 0
    if (taken >= SAMPLES_PER_KIND || tally.samples.length >= MAX_SAMPLES) return
    perKindSamples.set(name, taken + 1)
    const line = `${name}: ${detail}`
    tally.samples.push(line.length > MAX_SAMPLE_LENGTH ? `${line.slice(0, MAX_SAMPLE_LENGTH)}…` : line)
  }
  const unexpectedError = (name: string, failure: unknown) => {
    const code = errorKey(failure)
    error(code).unexpected++
    unexpected(name, `${code} ${errorMessage(failure)}`)
  }
  return {
    tally,
    get unexpectedCount() {
      return unexpectedCount
    },
    async run(name, op, options = {}) {
      kind(name).ops++
      try {
        const verdict = await withDeadline(op(), opDeadlineMs, name)
        if (verdict === true) kind(name).ok++
        else unexpected(name, verdict)
        return verdict
      } catch (failure) {
        const code = errorKey(failure)
        if (options.expectedCodes?.includes(code)) {
          kind(name).expectedErrors++
          error(code).expected++
        } else {
          unexpectedError(name, failure)
        }
        return failure instanceof Error ? failure : new Error(String(failure))
      }
    },
    check(name, verdict) {
      kind(name).ops++
      if (verdict === true) kind(name).ok++
      else unexpected(name, verdict)
    },
    expectedError(name, code) {
      kind(name).expectedErrors++
      error(code).expected++
    },
    unexpected,
    unexpectedError,
  }
}

/** Resolves true when `op` rejects with SQLSTATE `code` (counted as expected), a description otherwise. */
export async function expectCode(
  recorder: Recorder,
  kind: string,
  code: string,
  op: Promise<unknown>,
): Promise<Verdict> {
  try {
    const value = await op
    return `expected ${code}, got ${JSON.stringify(value)?.slice(0, 100)}`
  } catch (failure) {
    if (errorKey(failure) !== code) throw failure
    recorder.expectedError(kind, code)
    return true
  }
}

export const same = (what: string, got: unknown, want: unknown): Verdict =>
  JSON.stringify(got) === JSON.stringify(want)
    ? true
    : `${what}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`

/** The first failed verdict, or true. */
export const all = (...verdicts: Verdict[]): Verdict => verdicts.find((v) => v !== true) ?? true

export function formatTally(tally: SoakTally): string {
  const table = (header: string[], rows: string[][]) => {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
    const line = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
    return [line(header), ...rows.map(line)].join('\n')
  }
  const kinds = Object.entries(tally.kinds).sort(([a], [b]) => a.localeCompare(b))
  const total: KindCount = { ops: 0, ok: 0, expectedErrors: 0, unexpected: 0 }
  for (const [, k] of kinds) {
    total.ops += k.ops
    total.ok += k.ok
    total.expectedErrors += k.expectedErrors
    total.unexpected += k.unexpected
  }
  const kindRows = [...kinds, ['total', total] as const].map(([name, k]) => [
    name,
    String(k.ops),
    String(k.ok),
    String(k.expectedErrors),
    String(k.unexpected),
  ])
  const errors = Object.entries(tally.errors).sort(([a], [b]) => a.localeCompare(b))
  const parts = [table(['operation', 'ops', 'ok', 'expected errors', 'unexpected'], kindRows)]
  parts.push(
    errors.length === 0
      ? 'errors: none'
      : table(
          ['error', 'expected', 'unexpected'],
          errors.map(([code, e]) => [code, String(e.expected), String(e.unexpected)]),
        ),
  )
  if (tally.samples.length > 0) parts.push(['unexpected results:', ...tally.samples.map((s) => `  ${s}`)].join('\n'))
  return parts.join('\n\n')
}
