// Misbehaving clients after startup, on a connected client: out-of-order, missing and malformed messages the
// connection survives (Postgres answers ERROR, discards until Sync, carries on), and the endings that close it
// (FATAL protocol violations, crashes mid-message, Terminate). Expected answers are PostgreSQL 15's.
import * as wire from '../../harness/wire.ts'
import { ClosedError, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { TYPED_CODES, UNKNOWN_CODES, badLength, header, postgresLimits, typedMessage } from './frame-fuzz.ts'
import { CaseMismatch, error, expectShown, fatal, shown, type Matcher, type Shown } from './shown.ts'
import type { Rng } from '../../harness/seed.ts'

const hex = (b: Buffer) => b.toString('hex')

/** Collects messages through `count` ReadyForQuery messages (or up to the close, for a FATAL). */
async function collect(client: RawClient, count: number, deadlineMs: number): Promise<Shown[]> {
  const out: Shown[] = []
  for (let i = 0; i < count; i++) out.push(...shown(await client.until('Z', { deadlineMs })))
  return out
}

/** A simple query whose one value the caller chose; also drops the unnamed statement, as any simple Query does. */
export function checkQuery(value: string): { frame: Buffer; want: Matcher[] } {
  return { frame: wire.query(`select '${value}' as v`), want: ['T', `D:["${value}"]`, 'C:SELECT 1', 'Z:I'] }
}

const missingName = (rng: Rng) => (rng.chance(0.4) ? '' : `fz_missing_${rng.int(0, 99999)}`)
const statementMissing = (name: string) =>
  name === '' ? 'unnamed prepared statement does not exist' : `prepared statement "${name}" does not exist`

/** Flips 1–3 bytes in the bodies of `frames` (never a header), so the framing stays valid and the content does not. */
function mutateBodies(rng: Rng, frames: Buffer[]): Buffer[] {
  const out = frames.map((f) => Buffer.from(f))
  for (let n = rng.int(1, 3); n > 0; n--) {
    const withBody = out.filter((f) => f.length > 5)
    const frame = rng.pick(withBody)
    frame[rng.int(5, frame.length - 1)] = rng.int(0, 255)
  }
  return out
}

export interface SessionCase {
  kind: string
  description: string
  run(client: RawClient): Promise<void>
}

/** One misbehaviour the connection survives, followed by a checked query on the same connection. */
export function sessionCase(rng: Rng, deadlineMs: number, value: string): SessionCase {
  const kind = rng.pick([
    'bind-before-parse',
    'execute-missing-portal',
    'describe-missing',
    'close-missing',
    'copy-outside-copy',
    'bind-parameter-count',
    'bad-subtype',
    'malformed-body',
    'random-body',
    'mutated-pipeline',
  ] as const)
  const check = checkQuery(value)
  const exact = (description: string, frames: Buffer[], syncs: number, want: Matcher[]): SessionCase => ({
    kind,
    description,
    async run(client) {
      await client.send(...frames, check.frame)
      expectShown(await collect(client, syncs + 1, deadlineMs), [...want, ...check.want], `${kind} ${description}`)
    },
  })
  switch (kind) {
    case 'bind-before-parse': {
      const statement = missingName(rng)
      const portal = rng.chance(0.5) ? '' : `fz_p${rng.int(0, 99)}`
      const frames = [wire.bind(portal, statement, rng.chance(0.3) ? ['1'] : [])]
      if (rng.chance(0.5)) frames.push(wire.describe('P', portal))
      if (rng.chance(0.7)) frames.push(wire.execute(portal))
      return exact(
        `Bind(portal "${portal}", statement "${statement}") with no Parse, then ${frames.length - 1} more and Sync`,
        [...frames, wire.sync()],
        1,
        [error('26000', statementMissing(statement)), 'Z:I'],
      )
    }
    case 'execute-missing-portal': {
      const portal = missingName(rng)
      return exact(
        `Execute(portal "${portal}") with no Bind, Sync`,
        [wire.execute(portal, rng.int(0, 10)), wire.sync()],
        1,
        [error('34000', `portal "${portal}" does not exist`), 'Z:I'],
      )
    }
    case 'describe-missing': {
      const name = missingName(rng)
      const isStatement = rng.chance(0.5)
      const want = isStatement
        ? error('26000', statementMissing(name))
        : error('34000', `portal "${name}" does not exist`)
      return exact(
        `Describe(${isStatement ? 'S' : 'P'} "${name}") of nothing, Sync`,
        [wire.describe(isStatement ? 'S' : 'P', name), wire.sync()],
        1,
        [want, 'Z:I'],
      )
    }
    case 'close-missing': {
      // Closing what does not exist is not an error.
      const name = missingName(rng)
      const which = rng.pick(['S', 'P'] as const)
      return exact(`Close(${which} "${name}") of nothing, Sync`, [wire.close(which, name), wire.sync()], 1, [
        '3',
        'Z:I',
      ])
    }
    case 'copy-outside-copy': {
      // postgres.c accepts and ignores CopyData/CopyDone/CopyFail outside COPY (a COPY that failed may leave some).
      const frames = Array.from({ length: rng.int(1, 5) }, () =>
        rng.pick([
          () => wire.copyData(rng.bytes(rng.int(0, 100))),
          () => wire.copyDone(),
          () => wire.copyFail(`fuzz ${rng.int(0, 999)}`),
        ])(),
      )
      const withSync = rng.chance(0.5)
      const codes = frames.map((f) => String.fromCharCode(f[0]!)).join('')
      return exact(
        `copy messages "${codes}" outside COPY${withSync ? ', Sync' : ''}`,
        withSync ? [...frames, wire.sync()] : frames,
        withSync ? 1 : 0,
        withSync ? ['Z:I'] : [],
      )
    }
    case 'bind-parameter-count': {
      const count = rng.pick([0, 2, 3])
      const params = Array.from({ length: count }, (_, i) => String(i))
      const frames = [wire.parse('', 'select $1::int as v'), wire.bind('', '', params), wire.execute(''), wire.sync()]
      return exact(`Parse(select $1::int), Bind with ${count} parameters, Execute, Sync`, frames, 1, [
        '1',
        error('08P01', `bind message supplies ${count} parameters, but prepared statement "" requires 1`),
        'Z:I',
      ])
    }
    case 'bad-subtype': {
      let subtype: number
      do subtype = rng.int(0, 255)
      while (subtype === 0x53 || subtype === 0x50)
      const isDescribe = rng.chance(0.5)
      const frame = typedMessage(isDescribe ? 0x44 : 0x43, Buffer.concat([Buffer.from([subtype]), Buffer.from('x\0')]))
      return exact(`${isDescribe ? 'Describe' : 'Close'} with subtype ${subtype}, Sync`, [frame, wire.sync()], 1, [
        error('08P01', `invalid ${isDescribe ? 'DESCRIBE' : 'CLOSE'} message subtype ${subtype}`),
        'Z:I',
      ])
    }
    case 'malformed-body': {
      const junk = Buffer.from(rng.bytes(rng.int(1, 20)).toString('hex'))
      switch (rng.int(0, 3)) {
        case 0:
          return exact(`Sync with a ${junk.length}-byte body`, [typedMessage(0x53, junk)], 1, [
            error('08P01', 'invalid message format'),
            'Z:I',
          ])
        case 1:
          return exact(`Flush with a ${junk.length}-byte body, Sync`, [typedMessage(0x48, junk), wire.sync()], 1, [
            error('08P01', 'invalid message format'),
            'Z:I',
          ])
        case 2:
          return exact(`Query "${junk.toString()}" without its terminator`, [typedMessage(0x51, junk)], 1, [
            error('08P01', 'invalid string in message'),
            'Z:I',
          ])
        default:
          return exact(
            `Query "select 1" with bytes after its terminator`,
            [typedMessage(0x51, Buffer.concat([Buffer.from('select 1\0'), junk]))],
            1,
            [error('08P01', 'invalid message format'), 'Z:I'],
          )
      }
    }
    case 'random-body':
    case 'mutated-pipeline': {
      let frames: Buffer[]
      let description: string
      if (kind === 'random-body') {
        const code = rng.pick(TYPED_CODES.filter((c) => c !== 0x58))
        const body = rng.bytes(rng.int(0, 64))
        frames = [typedMessage(code, body)]
        description = `message ${String.fromCharCode(code)} with random body ${hex(body)}, Sync`
      } else {
        const name = rng.chance(0.5) ? '' : `fz_s${rng.int(0, 9)}`
        const base = [
          wire.parse(name, 'select $1::int + 1 as v'),
          wire.bind('', name, [String(rng.int(0, 1000))]),
          wire.describe('P', ''),
          wire.execute('', rng.int(0, 2)),
        ]
        frames = mutateBodies(rng, base)
        description = `mutated pipeline ${frames.map(hex).join(' ')}, Sync`
      }
      // Whatever the content, the answer is ERRORs or results, a ReadyForQuery, and the connection stays usable.
      return {
        kind,
        description,
        async run(client) {
          await client.send(...frames, wire.sync(), check.frame)
          const got: Shown[] = []
          while (!got.includes(`D:["${value}"]`)) {
            const batch = await collect(client, 1, deadlineMs)
            got.push(...batch)
            if (got.some((m) => m.startsWith('E:FATAL'))) break
          }
          const tail = got.slice(got.indexOf(`D:["${value}"]`) - 1)
          if (got.some((m) => m.startsWith('E:FATAL')) || tail.join() !== check.want.join()) {
            throw new CaseMismatch(
              `${kind} ${description}: expected ERRORs or results, then ${JSON.stringify(check.want)}; got ${JSON.stringify(got)}`,
            )
          }
        },
      }
    }
  }
}

export interface Ending {
  kind: string
  description: string
  /** Resolves once the connection is closed (by the server, or by the client crashing). */
  run(client: RawClient): Promise<void>
}

/** How a bad client's connection ends: a FATAL protocol violation, a crash mid-message, or a clean goodbye. */
export function ending(rng: Rng, deadlineMs: number, value: string): Ending {
  const kind = rng.pick([
    'unknown-type',
    'bad-length',
    'answered-then-violation',
    'second-startup',
    'truncated-then-gone',
    'held-then-gone',
    'terminate',
  ] as const)
  const fatalClose = (description: string, bytes: Buffer, want: Matcher[]): Ending => ({
    kind,
    description,
    async run(client) {
      await client.send(bytes)
      let got: Shown[]
      try {
        got = shown(await client.until('E', { deadlineMs }))
      } catch (error) {
        if (error instanceof ClosedError)
          throw new CaseMismatch(`${kind} ${description}: closed without an ErrorResponse (${error.message})`)
        throw error
      }
      expectShown(got, want, `${kind} ${description}`)
      await withDeadline(client.closed, deadlineMs, `${kind} ${description}: the server closing the connection`)
    },
  })
  switch (kind) {
    case 'unknown-type': {
      const code = rng.pick(UNKNOWN_CODES)
      const length = rng.int(4, 40)
      const bytes = Buffer.concat([header(code, length), rng.bytes(length - 4)])
      return fatalClose(`message type ${code} ${hex(bytes)}`, bytes, [
        fatal('08P01', `invalid frontend message type ${code}`),
      ])
    }
    case 'bad-length': {
      // Postgres closes without a word (COMMERROR); we say why, as FATAL 08P01.
      const code = rng.pick(TYPED_CODES)
      const length = badLength(rng, postgresLimits(code))
      return fatalClose(
        `message ${String.fromCharCode(code)} with length ${length}`,
        Buffer.concat([header(code, length), rng.bytes(rng.int(0, 20))]),
        [fatal('08P01', 'invalid message length')],
      )
    }
    case 'answered-then-violation': {
      // Postgres runs and answers every message before the bad one, even when they arrive in the same read.
      const check = checkQuery(value)
      const code = rng.pick(UNKNOWN_CODES)
      return fatalClose(`Query and message type ${code} in one write`, Buffer.concat([check.frame, header(code, 4)]), [
        ...check.want,
        fatal('08P01', `invalid frontend message type ${code}`),
      ])
    }
    case 'second-startup': {
      // After startup a StartupMessage reads as message type 0.
      return fatalClose('a second StartupMessage', wire.startup({ user: 'postgres', database: 'postgres' }), [
        fatal('08P01', 'invalid frontend message type 0'),
      ])
    }
    case 'truncated-then-gone': {
      const frames = Buffer.concat([
        wire.parse('', 'select $1::int'),
        wire.bind('', '', ['1']),
        wire.execute(''),
        wire.sync(),
      ])
      const cut = rng.int(1, frames.length - 1)
      return {
        kind,
        description: `the first ${cut} of ${frames.length} bytes of Parse/Bind/Execute/Sync, then gone`,
        async run(client) {
          await client.send(frames.subarray(0, cut))
          client.destroy()
          await withDeadline(client.closed, deadlineMs, 'socket close')
        },
      }
    }
    case 'held-then-gone': {
      // Holds the session (open pipeline or transaction), then crashes: the server must roll back and go on.
      const inTransaction = rng.chance(0.5)
      return {
        kind,
        description: inTransaction ? 'BEGIN, then gone' : 'Parse and Flush, then gone',
        async run(client) {
          if (inTransaction) {
            await client.send(wire.query('begin'))
            expectShown(shown(await client.until('Z', { deadlineMs })), ['C:BEGIN', 'Z:T'], 'BEGIN')
          } else {
            await client.send(wire.parse('', 'select 1'), wire.flush())
            expectShown(shown(await client.until('1', { deadlineMs })), ['1'], 'Parse and Flush')
          }
          client.destroy()
          await withDeadline(client.closed, deadlineMs, 'socket close')
        },
      }
    }
    case 'terminate':
      return {
        kind,
        description: 'Terminate',
        async run(client) {
          if (!(await client.end({ deadlineMs })))
            throw new CaseMismatch('Terminate: the server did not close the connection')
        },
      }
  }
}
