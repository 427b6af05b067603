// A client's socket lent to its database's thread for reading. With one client sending, each query costs two
// wake-ups between threads and cores (the server's thread reading it, then this one running it), which take longer
// than the query. So after a call whose reply went straight to its client and changed nothing the server keeps, the
// thread reads the client's next bytes itself for a while, and runs each unit that needs nothing of the server
// (protocol/frontend-messages.ts preparedUnitEnd), its statement names given the client's prefix as the server
// gives them. The first bytes it cannot run go back to the server with the socket, unread, as does the socket when
// the server asks for it (a cancel, a stop, another client sends while no transaction block is open) or nothing came
// meanwhile. A unit may leave a transaction block open: the client's next units run here too, as nobody else's could.

import { readSync } from 'node:fs'
import { Control } from './stoppable.ts'
import { preparedUnitEnd, type PreparedUnit } from '../server/protocol/frontend-messages.ts'
import { FrontendCode, HEADER_LENGTH } from '../server/protocol/codes.ts'
import { MAX_NAME_BYTES } from '../server/features/statements.ts'
import type { DirectReply, LendOffer } from '../server/session/databases.ts'
import { lookOnTraffic } from '../server/connection/traffic.ts'

/** How long (ms) the thread looks for the client's next bytes before it gives the socket back. */
const LOOK_MS = 0.5
/**
 * How long (ms) a lend lasts at most: then the socket goes back after the unit running, so that whatever the server
 * did not hear of meanwhile (a client that began to wait without sending) is seen within this.
 */
const MAX_LEND_MS = 20
/** What one read of a lent socket takes at most (the bytes read are copied out of it). */
const READ_BYTES = 1 << 16
let readBuffer: Buffer | null = null

/**
 * What a unit run in the thread is given: the client's socket, the prefix its statement names get, and whether it
 * may run units of the unnamed statement (the server reads nothing in plain SQL unless the client holds cursors WITH
 * HOLD or its temporary objects come first in its search path).
 */
export interface Lend extends ThreadLend {
  fd: number
}

/** What the thread learns of a lend from the call's Direct payload (whether others wait, it reads in Control.Lend). */
export type ThreadLend = Omit<LendOffer, 'othersWant'>

/**
 * Control.Lend: the thread reads on; gives the socket back after the unit running; or gives it back once no
 * transaction block is open (another client wants the session, which an open block keeps from it anyway). Or the
 * server took the socket back before the thread began to read it (reclaimLend): the thread then reads nothing.
 */
export const LendWord = { ReadOn: 0, BackNow: 1, BackAtRest: 2, Reclaimed: 3 } as const
export type LendWord = (typeof LendWord)[keyof typeof LendWord]
/** Beside the word: the thread began to read the socket, which from then on is the thread's until the call ends. */
const READING = 4

/** Ask for the socket back, now or at rest, keeping whether the thread reads it (and not undoing Now or Reclaimed). */
export function askBack(words: Int32Array, when: typeof LendWord.BackNow | typeof LendWord.BackAtRest): void {
  for (;;) {
    const word = Atomics.load(words, Control.Lend)
    const asked = word & ~READING
    if (asked === LendWord.Reclaimed || asked === LendWord.BackNow || asked === when) return
    if (Atomics.compareExchange(words, Control.Lend, word, (word & READING) | when) === word) return
  }
}

/**
 * The server's thread takes the socket back while the call's first unit runs, before the thread began to read it
 * (so that it sees a client that left while its statement waits); false if the thread reads it already.
 */
export function reclaimLend(words: Int32Array): boolean {
  for (;;) {
    const word = Atomics.load(words, Control.Lend)
    if (word & READING) return false
    if (word === LendWord.Reclaimed) return true
    if (Atomics.compareExchange(words, Control.Lend, word, LendWord.Reclaimed) === word) return true
  }
}

/** The thread's side of reclaimLend: true once the socket is the thread's to read, false if the server took it. */
function beginReading(words: Int32Array): boolean {
  for (;;) {
    const word = Atomics.load(words, Control.Lend)
    if (word === LendWord.Reclaimed) return false
    if (Atomics.compareExchange(words, Control.Lend, word, word | READING) === word) return true
  }
}

/**
 * How a lend ended: the bytes read and not run (the server reads them first), the last unit run, as sent, how many
 * ran, and what became of the unnamed statement: the Parse that made it last, or dropped by a Query; null: neither.
 */
export interface LendEnd {
  unread: Buffer | null
  lastUnit: Buffer | null
  units: number
  unnamed: Buffer | 'dropped' | null
}

/** The Direct payload of a call that lends the socket: fd, RelayFrom bits, then this byte (LendFlags), then the prefix. */
const FLAGS_AT = 8
const LendFlags = { Unnamed: 1, Named: 2 } as const

/** The lend a Direct payload offers, or null. */
export function lendOf(payload: Buffer): ThreadLend | null {
  if (payload.length <= FLAGS_AT) return null
  const flags = payload[FLAGS_AT]!
  return {
    prefix: flags & LendFlags.Named ? Buffer.from(payload.subarray(FLAGS_AT + 1)) : null,
    unnamed: (flags & LendFlags.Unnamed) !== 0,
  }
}

/** Runs one unit (its bytes as PGlite gets them); false if the lend must end after it. */
export type RunUnit = (unit: Buffer) => Promise<boolean>

/**
 * The server's side: a call's Direct payload (`target`: fd and RelayFrom bits) with the lend's prefix after it. The
 * thread gives the socket back when asked (Control.Lend, which the server sets to Now whenever it wants the call's end
 * now), and once no transaction block is open if other clients wait or any sends.
 */
function offerLend(words: Int32Array, target: Buffer, { prefix, unnamed, othersWant }: LendOffer): Buffer {
  Atomics.store(words, Control.Lend, othersWant ? LendWord.BackAtRest : LendWord.ReadOn)
  lookOnTraffic(() => askBack(words, LendWord.BackAtRest))
  const flags = (unnamed ? LendFlags.Unnamed : 0) | (prefix ? LendFlags.Named : 0)
  return Buffer.concat([target.subarray(0, FLAGS_AT), Buffer.of(flags), prefix ?? Buffer.alloc(0)])
}

/**
 * A request's Direct payload (in `scratch` unless it offers a lend), for a call whose reply is a client's: where the
 * reply goes (fd and RelayFrom bits) and the lend, or fd -1 when the server's thread writes it; null for the server's
 * own call.
 */
export function replyTarget(
  words: Int32Array,
  scratch: Buffer,
  direct: DirectReply | null,
  clientReply: boolean,
): Buffer | null {
  if (!direct && !clientReply) return null
  const target = direct?.lend ? offerLend(words, scratch, direct.lend) : scratch
  target.writeInt32LE(direct ? direct.fd : -1, 0)
  target.writeUInt32LE(direct ? direct.relayFrom : 0, 4)
  return target
}

/**
 * Serve the lent socket until the server wants it back, nothing comes for LOOK_MS, or bytes come that only the server
 * can handle (`pending`: the server has a request for the thread). `inTransaction`: the last unit left a transaction
 * block open.
 */
export async function serveLend(
  lend: Lend,
  words: Int32Array,
  pending: () => boolean,
  inTransaction: () => boolean,
  run: RunUnit,
  end: LendEnd,
): Promise<void> {
  const buffer = (readBuffer ??= Buffer.allocUnsafe(READ_BYTES))
  const stop = performance.now() + MAX_LEND_MS
  let until = performance.now() + LOOK_MS
  const wanted = (): boolean => {
    const word = Atomics.load(words, Control.Lend) & ~READING
    return word === LendWord.BackNow || (word === LendWord.BackAtRest && !inTransaction())
  }
  if (!beginReading(words)) return
  for (;;) {
    if (wanted() || pending() || performance.now() >= stop) return
    const count = tryRead(lend.fd, buffer)
    if (count === 0) return // the client's end closed, or failed: the server finds out from the socket
    if (count < 0) {
      if (performance.now() >= until) return
      continue
    }
    const bytes = Buffer.from(buffer.subarray(0, count))
    let at = 0
    for (;;) {
      const unit = wanted() ? null : unitAt(bytes, at, lend)
      if (unit) {
        end.lastUnit = bytes.subarray(at, unit.end)
        end.units++
        if (unit.shape.query) end.unnamed = 'dropped'
        else if (unit.shape.parse >= 0)
          end.unnamed = bytes.subarray(unit.shape.parse, unit.shape.parse + 1 + bytes.readInt32BE(unit.shape.parse + 1))
      }
      const goOn = unit !== null && (await run(unit.bytes))
      if (unit) at = unit.end
      if (!goOn) {
        end.unread = at < bytes.length ? bytes.subarray(at) : null
        return
      }
      if (at === bytes.length) break
    }
    until = performance.now() + LOOK_MS
  }
}

/** Bytes from the socket, 0 once it ended (or failed), -1 if none wait. */
function tryRead(fd: number, buffer: Buffer): number {
  try {
    return readSync(fd, buffer, 0, buffer.length, null)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === 'EAGAIN' || code === 'EWOULDBLOCK' ? -1 : 0
  }
}

/**
 * The unit that starts at `start`, as PGlite gets it, if the thread may run it (protocol/frontend-messages.ts
 * preparedUnitEnd); else null.
 */
export function unitAt(
  bytes: Buffer,
  start: number,
  { prefix, unnamed }: Lend,
): { bytes: Buffer; end: number; shape: PreparedUnit } | null {
  const shape: PreparedUnit = { names: 0, longest: 0, parse: -1, query: false }
  const end = preparedUnitEnd(bytes, start, unnamed, shape)
  // A prefixed name past Postgres's length is one the server hashes.
  if (end < 0 || (shape.names > 0 && (!prefix || prefix.length + shape.longest > MAX_NAME_BYTES))) return null
  const unit = bytes.subarray(start, end)
  return { bytes: shape.names === 0 ? unit : prefixed(unit, prefix!, shape.names), end, shape }
}

/** The unit with the statement name of each Bind of a named one given `prefix`. */
function prefixed(unit: Buffer, prefix: Buffer, binds: number): Buffer {
  const out = Buffer.allocUnsafe(unit.length + binds * prefix.length)
  let from = 0
  let to = 0
  while (from < unit.length) {
    const end = from + 1 + unit.readInt32BE(from + 1)
    if (unit[from] !== FrontendCode.Bind || unit[from + HEADER_LENGTH + 1] === 0) {
      to += unit.copy(out, to, from, end)
    } else {
      out[to] = FrontendCode.Bind
      out.writeInt32BE(end - from - 1 + prefix.length, to + 1)
      out[to + HEADER_LENGTH] = 0
      to += HEADER_LENGTH + 1
      to += prefix.copy(out, to)
      to += unit.copy(out, to, from + HEADER_LENGTH + 1, end)
    }
    from = end
  }
  return out
}
