// Misbehaving clients in the startup phase, each on a fresh socket: bad lengths and codes, malformed StartupMessages,
// garbage, crashes mid-packet. Each case states what PostgreSQL 15 answers the same bytes, or, where it closes
// without a word, the FATAL we send instead. Inputs come from a seeded Rng, so a failure names a replayable input.
import net from 'node:net'
import * as wire from '../../harness/wire.ts'
import { withDeadline, type Address } from '../../harness/raw-client.ts'
import { GSSENC_REQUEST, PROTOCOL_3_0, SSL_REQUEST, UNKNOWN_CODES, header, startupPacket } from './frame-fuzz.ts'
import { CaseMismatch, expectShown, fatal, shown, type Matcher, type Shown } from './shown.ts'
import type { Rng } from '../../harness/seed.ts'

const CANCEL_REQUEST = 80877102

/**
 * A fresh socket in the startup phase. Each SSL/GSSENC request is sent alone and its one-byte answer awaited, as
 * libpq does (Postgres refuses bytes that arrive before it answered: "received unencrypted data after SSL request").
 */
async function openStartup(
  address: Address,
  requests: Buffer[],
  deadlineMs: number,
  what: string,
): Promise<{
  socket: net.Socket
  received: () => Buffer
  closed: Promise<void>
  arrived: (test: (bytes: Buffer) => boolean) => Promise<void>
}> {
  const socket = net.connect(address.port, address.host)
  const chunks: Buffer[] = []
  let wake: () => void = () => {}
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    wake()
  })
  // A reset after the server's FATAL is a close like any other here.
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const received = () => Buffer.concat(chunks)
  /** Resolves once what arrived passes `test`, or the socket closed. */
  const arrived = async (test: (bytes: Buffer) => boolean) => {
    while (!test(received()) && !socket.destroyed)
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), closed])
  }
  try {
    await withDeadline(
      new Promise<void>((resolve) => socket.once('connect', () => resolve())),
      deadlineMs,
      `${what}: connect`,
    )
    for (let i = 0; i < requests.length; i++) {
      socket.write(requests[i]!)
      await withDeadline(
        arrived((bytes) => bytes.length > i),
        deadlineMs,
        `${what}: the answer to request ${i + 1}`,
      )
    }
    const answers = received().toString('latin1')
    if (answers !== 'N'.repeat(requests.length))
      throw new CaseMismatch(
        `${what}: expected ${requests.length} 'N' answers to the requests, got ${JSON.stringify(answers)}`,
      )
  } catch (error) {
    socket.destroy()
    throw error
  }
  return { socket, received, closed, arrived }
}

/** True once `bytes` (after `skip` answer bytes) hold a ReadyForQuery: the server took the connection. */
function holdsReady(bytes: Buffer, skip: number): boolean {
  try {
    return wire
      .createBackendParser()
      .push(bytes.subarray(skip))
      .some((m) => m.code === 'Z')
  } catch (error) {
    // Not protocol: the caller's parse reports it with the case.
    if (error instanceof wire.GarbageError) return false
    throw error
  }
}

/**
 * On a fresh socket, sends `requests` (each answered 'N' first), then `bytes`, and returns what came back until
 * the server closed the connection. With `isRefusal`, anything but an ErrorResponse (another 'N', or
 * AuthenticationOk...ReadyForQuery) also ends the wait: the server did not refuse, and the case can say so at once.
 */
export async function startupAnswer(
  address: Address,
  requests: Buffer[],
  bytes: Buffer,
  options: { deadlineMs: number; what: string; isRefusal: boolean },
): Promise<Shown[]> {
  const { deadlineMs, what, isRefusal } = options
  const session = await openStartup(address, requests, deadlineMs, what)
  try {
    session.socket.write(bytes)
    const isAccepting = (got: Buffer) =>
      got.length > requests.length && (got[requests.length] !== 0x45 || holdsReady(got, requests.length))
    await withDeadline(
      Promise.race([session.closed, session.arrived((got) => isRefusal && isAccepting(got))]),
      deadlineMs,
      `${what}: the server closing the connection`,
    )
    const parser = wire.createBackendParser()
    const rest = session.received().subarray(requests.length)
    const messages = shown(parser.push(rest))
    if (parser.pendingBytes > 0)
      messages.push(`partial:${rest.subarray(rest.length - parser.pendingBytes).toString('hex')}`)
    return messages
  } finally {
    session.socket.destroy()
  }
}

export interface BadCase {
  kind: string
  /** The input, precisely enough to rebuild it. */
  description: string
  run(): Promise<void>
}

const hex = (b: Buffer) => b.toString('hex')

/** At most one GSSENCRequest then at most one SSLRequest, each answered 'N' first, as libpq's defaults send. */
function requestsFirst(rng: Rng): Buffer[] {
  const requests: Buffer[] = []
  if (rng.chance(0.2)) requests.push(startupPacket(GSSENC_REQUEST))
  if (rng.chance(0.4)) requests.push(startupPacket(SSL_REQUEST))
  return requests
}

function layoutBody(rng: Rng): { body: Buffer; variant: string } {
  switch (rng.int(0, 3)) {
    case 0:
      return { body: Buffer.from('user\0postgres\0'), variant: 'no final terminator' }
    case 1:
      return { body: Buffer.alloc(0), variant: 'no parameters and no terminator' }
    case 2:
      return { body: Buffer.from('user\0postgres\0database\0'), variant: 'a name without a value' }
    default:
      return {
        body: Buffer.concat([Buffer.from('user\0postgres\0\0'), rng.bytes(rng.int(1, 8))]),
        variant: 'bytes after the terminator',
      }
  }
}

/** One bad client in the startup phase, on its own socket. */
export function startupCase(rng: Rng, address: Address, deadlineMs: number, ping: () => string): BadCase {
  const kind = rng.pick([
    'bad-startup-length',
    'unsupported-protocol',
    'bad-request-length',
    'bad-layout',
    'cancel-unknown-key',
    'random-garbage',
    'http-request',
    'truncated-startup',
    'repeated-request',
    'newer-minor-version',
    'startup-then-unknown-type',
  ] as const)
  const requests = requestsFirst(rng)
  const prefix =
    requests.length > 0
      ? `after ${requests.map((r) => (r.readInt32BE(4) === SSL_REQUEST ? 'SSLRequest' : 'GSSENCRequest')).join(', ')}: `
      : ''
  const expectClosed = (bytes: Buffer, description: string, want: Matcher[], isRefusal = true): BadCase => ({
    kind,
    description: prefix + description,
    async run() {
      const what = `${kind} ${prefix}${description}`
      expectShown(await startupAnswer(address, requests, bytes, { deadlineMs, what, isRefusal }), want, what)
    },
  })
  switch (kind) {
    case 'bad-startup-length': {
      // Postgres closes without a word (a COMMERROR, in its log only), and so do we.
      const length = rng.chance(0.5) ? rng.int(-(2 ** 31), 7) : rng.int(10_001, 2 ** 31 - 1)
      const bytes = startupPacket(PROTOCOL_3_0, rng.bytes(rng.int(0, 20)), length)
      return expectClosed(bytes, `startup packet with length ${length}: ${hex(bytes)}`, [])
    }
    case 'unsupported-protocol': {
      let code: number
      do
        code = rng.chance(0.5)
          ? rng.int(0, 2 ** 31 - 1)
          : (rng.pick([0, 1, 2, 4, 1234, 65535]) << 16) | rng.int(0, 65535)
      while (code >>> 16 === 3 || code === SSL_REQUEST || code === GSSENC_REQUEST || code === CANCEL_REQUEST)
      const bytes = startupPacket(code, Buffer.from('user\0postgres\0\0'))
      return expectClosed(bytes, `startup packet with protocol code ${code}`, [
        fatal('0A000', /unsupported frontend protocol \d+\.\d+/),
      ])
    }
    case 'bad-request-length': {
      // Postgres closes on a bad CancelRequest length without a word, as we do; it ignores the length of an
      // SSLRequest, which we refuse as FATAL 08P01.
      const code = rng.pick([SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST])
      const right = code === CANCEL_REQUEST ? 16 : 8
      let length: number
      do length = rng.int(8, 64)
      while (length === right)
      const bytes = startupPacket(code, Buffer.alloc(length - 8), length)
      return expectClosed(
        bytes,
        `request ${code} with length ${length}`,
        code === CANCEL_REQUEST ? [] : [fatal('08P01', 'invalid length of startup packet')],
      )
    }
    case 'bad-layout': {
      const { body, variant } = layoutBody(rng)
      const bytes = startupPacket(PROTOCOL_3_0, body)
      return expectClosed(bytes, `StartupMessage with ${variant}: ${hex(bytes)}`, [
        fatal('08P01', 'invalid startup packet layout: expected terminator as last byte'),
      ])
    }
    case 'cancel-unknown-key': {
      const bytes = Buffer.concat([startupPacket(CANCEL_REQUEST, Buffer.alloc(8))])
      bytes.writeInt32BE(rng.int(0, 2 ** 31 - 1), 8)
      bytes.writeInt32BE(rng.int(0, 2 ** 31 - 1), 12)
      // A CancelRequest gets no answer and its connection closes, whatever the key.
      return expectClosed(bytes, `CancelRequest ${hex(bytes)}`, [])
    }
    case 'random-garbage': {
      let bytes: Buffer
      do bytes = rng.bytes(rng.int(4, 64))
      while (bytes.readInt32BE(0) >= 8 && bytes.readInt32BE(0) <= 10_000)
      return expectClosed(bytes, `garbage ${hex(bytes)}`, [])
    }
    case 'http-request': {
      const bytes = Buffer.from(
        `${rng.pick(['GET', 'POST', 'HEAD'])} /${rng.bytes(4).toString('hex')} HTTP/1.1\r\nHost: x\r\n\r\n`,
      )
      return expectClosed(bytes, `${JSON.stringify(bytes.toString())}`, [])
    }
    case 'truncated-startup': {
      const full = wire.startup({ user: 'postgres', database: 'postgres' })
      const cut = rng.int(1, full.length - 1)
      const description = `${prefix}the first ${cut} of ${full.length} bytes of a StartupMessage, then gone`
      return {
        kind,
        description,
        async run() {
          const session = await openStartup(address, requests, deadlineMs, `${kind} ${description}`)
          await withDeadline(
            new Promise<void>((resolve) => session.socket.write(full.subarray(0, cut), () => resolve())),
            deadlineMs,
            `${kind}: write`,
          )
          session.socket.destroy()
        },
      }
    }
    case 'repeated-request': {
      // Postgres answers each of SSLRequest and GSSENCRequest once; a second one in a row is an unknown protocol.
      const again = requests.at(-1) ?? startupPacket(SSL_REQUEST)
      if (requests.length === 0) requests.push(again)
      const code = again.readInt32BE(4)
      return expectClosed(again, `the same request (${code}) again`, [
        fatal('0A000', `unsupported frontend protocol 1234.${code & 0xffff}: server supports 3.0 to 3.0`),
      ])
    }
    case 'newer-minor-version': {
      const minor = rng.int(1, 65535)
      const options = Array.from({ length: rng.int(0, 2) }, (_, i) => `_pq_.fuzz_${i}`)
      const params: Record<string, string> = { user: 'postgres', database: 'postgres' }
      for (const option of options) params[option] = 'on'
      const description = `StartupMessage 3.${minor} with ${JSON.stringify(options)}`
      return {
        kind,
        description: prefix + description,
        async run() {
          const value = ping()
          const bytes = Buffer.concat([
            wire.startup(params, (3 << 16) | minor),
            wire.query(`select '${value}' as v`),
            wire.terminate(),
          ])
          const what = `${kind} ${prefix}${description}`
          expectShown(
            await startupAnswer(address, requests, bytes, { deadlineMs, what, isRefusal: false }),
            ['v', 'R', 'K', 'Z:I', 'T', `D:["${value}"]`, 'C:SELECT 1', 'Z:I'],
            what,
          )
        },
      }
    }
    case 'startup-then-unknown-type': {
      const code = rng.pick(UNKNOWN_CODES)
      const bytes = Buffer.concat([
        wire.startup({ user: 'postgres', database: 'postgres' }),
        header(code, rng.int(4, 40)),
      ])
      return expectClosed(
        bytes,
        `StartupMessage and message type ${code} in one write`,
        ['R', 'K', 'Z:I', fatal('08P01', `invalid frontend message type ${code}`)],
        false,
      )
    }
  }
}
