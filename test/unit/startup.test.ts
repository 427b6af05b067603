// A connection's start-up without a socket: the frame reader fed as a socket would, the real SCRAM exchange, and a
// connection that records what the start-up did to it.
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import { WireError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import type { ConnectionHost } from '../../src/server/connection/host.ts'
import { scramSecret } from '../../src/server/connection/scram.ts'
import { Startup, type StartingConnection } from '../../src/server/connection/startup.ts'
import { FrameReader, type Frames } from '../../src/server/protocol/frames.ts'
import type { SharedSession } from '../../src/server/session/session.ts'

interface Recorded {
  written: Buffer[]
  closed: boolean
  terminated: WireError | null
  admitted: { database: string; early: Frames | null; open: (() => Promise<SharedSession>) | undefined } | null
  canceled: Array<[number, number]>
}

function setUp(
  options: { password?: string; refuse?: WireError; otherDatabases?: boolean; createDatabaseOnConnect?: boolean } = {},
) {
  const recorded: Recorded = { written: [], closed: false, terminated: null, admitted: null, canceled: [] }
  const session = { startupPrefixNow: Buffer.from('prefix') } as unknown as SharedSession
  const other = { startupPrefixNow: Buffer.from('prefix') } as unknown as SharedSession
  const host = {
    session,
    databases: options.otherDatabases
      ? { mainName: 'postgres', exists: async (name: string) => name === 'shop' }
      : null,
    openSession: async (name: string) => (name === 'missing' ? Promise.reject(new Error('no such database')) : other),
    log: createLogger({ level: 'silent' }),
    options: {
      password: options.password ? scramSecret(options.password) : null,
      createDatabaseOnConnect: options.createDatabaseOnConnect ?? true,
      tls: null,
    },
    admit: () => options.refuse ?? null,
    cancel: (pid: number, key: number) => void recorded.canceled.push([pid, key]),
    closed: () => {},
  } as unknown as ConnectionHost
  const connection: StartingConnection = {
    processId: 1,
    applicationName: '',
    idleInTransactionSince: null,
    secretKey: 2,
    startupParams: new Map(),
    queuedBatches: 0,
    blockedOnOutput: false,
    output: { lent: false },
    cancel: () => {},
    activity: () => ({
      pid: 1,
      datname: '',
      usename: '',
      application_name: '',
      client_addr: null,
      client_port: null,
      backend_start: '',
      state: 'idle',
      query: '',
    }),
    notify: () => {},
    preparedStatementFrames: () => [],
    remakeFailed: () => {},
    terminate: async (error) => void (recorded.terminated = error),
    write: (bytes) => void recorded.written.push(Buffer.from(bytes)),
    close: async () => void (recorded.closed = true),
    startTls: () => {},
    fail: (error) => void (recorded.terminated = error instanceof WireError ? error : null),
    admitted: (admittedTo, database, early, open) =>
      void (recorded.admitted = { database: admittedTo === session ? database : `other:${database}`, early, open }),
  }
  const reader: FrameReader = new FrameReader({
    maxLength: (code): number => (code === 0x70 ? startup.maxPasswordLength : 10_000),
  })
  const startup: Startup = new Startup(connection, host, reader)
  const send = (...chunks: Buffer[]) => {
    for (const chunk of chunks) reader.push(chunk)
    startup.read()
  }
  return { recorded, send, connection }
}

/** The client side of SCRAM-SHA-256 (RFC 5802), enough to log in. */
function scramClient(password: string) {
  const nonce = 'clientnonce'
  const bare = `n=,r=${nonce}`
  const first = (): Buffer => {
    const data = Buffer.from(`n,,${bare}`)
    const length = Buffer.alloc(4)
    length.writeInt32BE(data.length)
    return wire.saslResponse(Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), length, data]))
  }
  const final = (serverFirst: string): Buffer => {
    const attrs = Object.fromEntries(serverFirst.split(',').map((part) => [part[0], part.slice(2)]))
    const salted = pbkdf2Sync(password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), 32, 'sha256')
    const clientKey = createHmac('sha256', salted).update('Client Key').digest()
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${attrs.r}`
    const signature = createHmac('sha256', createHash('sha256').update(clientKey).digest())
      .update(`${bare},${serverFirst},${withoutProof}`)
      .digest()
    const proof = clientKey.map((byte, i) => byte ^ signature[i]!)
    return wire.saslResponse(Buffer.from(`${withoutProof},p=${Buffer.from(proof).toString('base64')}`))
  }
  return { first, final }
}

describe('Startup', () => {
  it('answers SSLRequest and GSSENCRequest with N, once each; a second is an unsupported protocol', () => {
    const { recorded, send } = setUp()
    send(wire.sslRequest(), wire.gssencRequest())
    expect(recorded.written.map((b) => b.toString())).toEqual(['N', 'N'])
    expect(() => send(wire.sslRequest())).toThrow(/unsupported frontend protocol/)
  })

  it('passes a CancelRequest on and closes without a word', () => {
    const { recorded, send } = setUp()
    send(wire.cancelRequest(42, 7))
    expect(recorded.canceled).toEqual([[42, 7]])
    expect([recorded.closed, recorded.written]).toEqual([true, []])
  })

  it('a client the server refuses (53300) is terminated with that error', () => {
    const refusal = new WireError('FATAL', '53300', 'sorry, too many clients already')
    const { recorded, send } = setUp({ refuse: refusal })
    send(wire.startup({ user: 'u' }))
    expect(recorded.terminated).toBe(refusal)
    expect(recorded.admitted).toBeNull()
  })

  it('without a password: admitted at once, to the database named (or the user name)', () => {
    const { recorded, send } = setUp()
    send(wire.startup({ user: 'alice' }))
    expect(recorded.admitted).toEqual({ database: 'alice', early: null })
  })

  it('with a password: SCRAM, then admitted with the messages sent in the same read as the proof', async () => {
    const { recorded, send } = setUp({ password: 'pw' })
    const client = scramClient('pw')
    send(wire.startup({ user: 'u', database: 'postgres' }))
    send(client.first())
    const serverFirst = recorded.written.at(-1)!.toString('utf8', 9)
    const query = wire.query('select 1')
    send(Buffer.concat([client.final(serverFirst), query]))
    expect(recorded.admitted?.database).toBe('postgres')
    expect(recorded.admitted?.early?.bytes.equals(query)).toBe(true)
    expect(recorded.admitted?.early?.count).toBe(1)
  })

  it('a wrong password is FATAL 28P01', () => {
    const { send } = setUp({ password: 'right' })
    const client = scramClient('wrong')
    send(wire.startup({ user: 'u' }))
    send(client.first())
    expect(() => send(client.final('r=clientnonceX,s=AAAA,i=4096'))).toThrow(WireError)
  })

  it('another database is admitted at once and opened when needed; one that cannot be opened is a FATAL then', async () => {
    const { recorded, send } = setUp({ otherDatabases: true })
    send(wire.startup({ user: 'u', database: 'shop' }))
    await expect.poll(() => recorded.admitted?.database).toBe('shop')
    expect(await recorded.admitted!.open!()).toMatchObject({ startupPrefixNow: Buffer.from('prefix') })
    const failing = setUp({ otherDatabases: true })
    failing.send(wire.startup({ user: 'u', database: 'missing' }))
    await expect.poll(() => failing.recorded.admitted?.database).toBe('missing')
    await expect(failing.recorded.admitted!.open!()).rejects.toMatchObject({
      severity: 'FATAL',
      message: expect.stringContaining('cannot open database "missing"'),
    })
  })

  it('without creation on connect, a database the catalog does not hold is FATAL 3D000 before admission', async () => {
    const { recorded, send } = setUp({ otherDatabases: true, createDatabaseOnConnect: false })
    send(wire.startup({ user: 'u', database: 'nowhere' }))
    await expect.poll(() => recorded.terminated?.sqlstate).toBe('3D000')
    expect(recorded.admitted).toBeNull()
    const known = setUp({ otherDatabases: true, createDatabaseOnConnect: false })
    known.send(wire.startup({ user: 'u', database: 'shop' }))
    await expect.poll(() => known.recorded.admitted?.database).toBe('shop')
  })
})
