// The startup phase a real Postgres gives every client: SSL/GSSENC refusals, CancelRequest, per-connection keys,
// protocol 3.2 negotiation. Run against stock too: where stock already behaves, the test says so.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import net from 'node:net'
import { once } from 'node:events'
import * as wire from '../../harness/wire.ts'
import { connectRaw, StalledError, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { targets, type RunningTarget } from '../helpers/targets.ts'

/**
 * Send raw bytes on a fresh socket and collect what comes back until `count` bytes arrived or the socket closed
 * (`Infinity`: until it closed, or 3 s passed).
 */
async function exchange(
  target: RunningTarget,
  bytes: Buffer,
  count: number,
): Promise<{ reply: Buffer; closed: boolean }> {
  const socket = net.connect(target.port, target.host)
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  let closed = false
  const done = new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c)
      if (Buffer.concat(chunks).length >= count) resolve()
    })
    socket.on('close', () => {
      closed = true
      resolve()
    })
  })
  socket.on('error', () => {})
  socket.write(bytes)
  // No more bytes and no close within 3 s: the reply is what came.
  await withDeadline(done, 3000, 'a reply').catch((error: unknown) => {
    if (!(error instanceof StalledError)) throw error
  })
  socket.destroy()
  return { reply: Buffer.concat(chunks), closed }
}

// Each test on its own sockets: concurrent, so stock's silences (up to 3 s each, see exchange()) overlap.
describe.concurrent.each(targets)('startup on $name', (target) => {
  let server: RunningTarget
  beforeAll(async () => {
    server = await target.start()
  })
  afterAll(() => server.close())
  const ours = target.name === 'patched'

  it('answers SSLRequest with N and then serves the StartupMessage on the same socket', async () => {
    const { reply } = await exchange(
      server,
      Buffer.concat([wire.sslRequest(), wire.startup({ user: 'postgres', database: 'postgres' })]),
      1 + 9,
    )
    expect(reply.subarray(0, 1).toString()).toBe('N')
    expect(reply[1]).toBe(0x52) // R AuthenticationOk
  })

  it('answers GSSENCRequest with N (stock sends nothing: libpq with gssencmode=prefer hangs)', async () => {
    const { reply } = await exchange(server, wire.gssencRequest(), 1)
    if (ours) expect(reply.toString()).toBe('N')
    else expect(reply.toString()).not.toBe('N')
  })

  it('gives every connection its own BackendKeyData', async () => {
    const clients: RawClient[] = await Promise.all([1, 2, 3].map(() => connectRaw(server.url)))
    const keys = clients.map((c) => `${c.backendKey?.pid}/${c.backendKey?.key}`)
    await Promise.all(clients.map((c) => c.end()))
    if (ours) expect(new Set(keys).size).toBe(3)
    else expect(new Set(keys).size).toBeLessThan(3)
  })

  it('consumes a CancelRequest without a reply and closes that socket; the canceled client keeps working', async () => {
    const client = await connectRaw(server.url)
    const key = client.backendKey ?? { pid: 0, key: 0 }
    const { reply, closed } = await exchange(server, wire.cancelRequest(key.pid, key.key), 1)
    expect(reply.length).toBe(0)
    if (ours) expect(closed).toBe(true)
    expect((await client.query('select 1 as one')).rows).toEqual([['1']])
    await client.end()
  })

  it('answers a protocol 3.2 StartupMessage with NegotiateProtocolVersion (3.0) and continues', async () => {
    const { reply } = await exchange(
      server,
      wire.startup({ user: 'postgres', database: 'postgres' }, wire.ProtocolVersion.V3_2),
      40,
    )
    if (!ours) {
      expect(reply.length).toBe(0)
      return
    }
    expect(String.fromCharCode(reply[0]!)).toBe('v')
    expect(reply.readInt32BE(5)).toBe(0) // newest minor we speak
    expect(reply.indexOf(Buffer.from('R'))).toBeGreaterThan(0)
  })

  it('refuses an unknown protocol major version with FATAL 0A000', async () => {
    const { reply, closed } = await exchange(server, wire.startup({ user: 'postgres' }, 2 << 16), Infinity)
    if (!ours) return expect(reply.indexOf(Buffer.from('0A000'))).toBe(-1)
    expect(String.fromCharCode(reply[0]!)).toBe('E')
    expect(reply.indexOf(Buffer.from('0A000'))).toBeGreaterThan(0)
    expect(closed).toBe(true)
  })
})

// Stock's PGlite spins forever on garbage, which would freeze an in-process test: a child process each.
describe.each(targets)('garbage on $name', (target) => {
  it('closes a client that sends garbage with FATAL 08P01, and only that client', async () => {
    const server = await target.spawn()
    try {
      const bystander = await connectRaw(server.url)
      const bad = await connectRaw(server.url)
      await bad.send(Buffer.from([0xff, 0, 0, 0, 4]))
      const result = target.name === 'patched' ? bystander : null
      if (result) {
        const error = await bad.next('ErrorResponse')
        expect(wire.decodeError(error.body)).toMatchObject({
          severity: 'FATAL',
          code: '08P01',
          message: 'invalid frontend message type 255',
        })
        await withDeadline(bad.closed, 3000, 'the bad client closed')
        expect((await bystander.query('select 2 as two')).rows).toEqual([['2']])
      } else {
        // Stock hands the byte to PGlite, which never answers anyone again.
        await expect(bystander.query('select 2 as two', { deadlineMs: 2000 })).rejects.toThrow(/stalled|closed/i)
      }
      bad.destroy()
      bystander.destroy()
    } finally {
      await server.close()
    }
  })
})
