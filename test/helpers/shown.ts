// How backend messages are compared in the misbehaving-client tests: each message shown as one short string
// (`Z:I`, `D:["1"]`, `C:SELECT 1`, `E:ERROR 26000 <message>`), matched exactly or by pattern.
import * as wire from '../../harness/wire.ts'

/** A message as tests compare it: `Z:I`, `D:["1"]`, `C:SELECT 1`, `E:ERROR 26000 <message>`, or the bare code. */
export type Shown = string
/** Matches one shown message exactly (string) or by pattern. */
export type Matcher = string | RegExp

/** Backend messages a case does not assert on: ParameterStatus, notices and notifications may come at any time. */
const UNASSERTED = new Set(['S', 'N', 'A'])

export function show(m: wire.BackendMessage): Shown {
  switch (m.code) {
    case 'Z':
      return `Z:${wire.decodeReadyForQuery(m.body)}`
    case 'D':
      return `D:${JSON.stringify(wire.decodeDataRow(m.body))}`
    case 'C':
      return `C:${wire.decodeCommandComplete(m.body)}`
    case 'E': {
      const e = wire.decodeError(m.body)
      return `E:${e.severity} ${e.code} ${e.message}`
    }
    default:
      return m.code
  }
}

export function shown(messages: wire.BackendMessage[]): Shown[] {
  return messages.filter((m) => !UNASSERTED.has(m.code)).map(show)
}

/** A case's outcome did not match: what was sent, what was expected, what came. */
export class CaseMismatch extends Error {
  override name = 'CaseMismatch'
}

export function expectShown(got: Shown[], want: Matcher[], what: string): void {
  const ok =
    got.length === want.length && want.every((m, i) => (typeof m === 'string' ? got[i] === m : m.test(got[i]!)))
  if (!ok) throw new CaseMismatch(`${what}: expected ${JSON.stringify(want.map(String))}, got ${JSON.stringify(got)}`)
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
export const fatal = (code: string, message: string | RegExp): RegExp =>
  new RegExp(`^E:FATAL ${code} ${typeof message === 'string' ? `${escape(message)}$` : message.source}`)
export const error = (code: string, message: string | RegExp): RegExp =>
  new RegExp(`^E:ERROR ${code} ${typeof message === 'string' ? `${escape(message)}$` : message.source}`)
