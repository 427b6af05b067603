// The BatchRunner without PGlite or sockets: two clients' reads run against a scripted stand-in for PGlite
// (test/helpers/scripted-db.ts), to show the order of calls, the release rule, refused work until Sync, and the
// unnamed statement guard. Real PGlite behind real sockets: test/wire/.
import { describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import { createLogger } from '../../src/log.ts'
import { ClientBackend } from '../../src/server/connection/shared-backend.ts'
import { BatchRunner, type BatchClient } from '../../src/server/connection/batch.ts'
import { MessageReader } from '../../src/server/connection/messages.ts'
import { ConnectionStates } from '../../src/server/connection/connection-state.ts'
import { ClientState } from '../../src/server/features/state.ts'
import { forEachFrame } from '../../src/server/protocol/frames.ts'
import { SharedSession } from '../../src/server/session/session.ts'
import { ScriptedDb } from '../helpers/scripted-db.ts'

const log = createLogger({ level: 'silent' })

interface TestClient {
  runner: BatchRunner
  client: BatchClient & { closed: boolean; readonly received: string[] }
  /** Run one read of `messages` (not awaited: it may wait for the session). */
  read(...messages: Buffer[]): Promise<void>
}

function setUp() {
  const db = new ScriptedDb()
  const session = new SharedSession(db)
  // A database with no settings of its own, already read: the calls below are the clients' alone.
  session.databaseSettings = []
  let nextId = 1
  const connect = (): TestClient => {
    // What the client was sent, as one stream (writes may end mid-message, as on a socket).
    const stream: Buffer[] = []
    const client = {
      processId: nextId++,
      applicationName: '',
      idleInTransactionSince: null,
      states: new ConnectionStates({ idleTimeoutMs: 0, idleInTransactionTimeoutMs: 0, queueTimeoutMs: 0 }, () => {}),
      inspect: false,
      closed: false,
      get received(): string[] {
        const bytes = Buffer.concat(stream)
        const out: string[] = []
        forEachFrame(bytes, (_, offset, length) => void out.push(summary(bytes.subarray(offset, offset + length))))
        return out
      },
      async close() {
        client.closed = true
      },
      write: (bytes: Uint8Array) => void stream.push(Buffer.from(bytes)),
      output: {
        waitForReader: () => null,
        blocked: false,
        cork: () => {},
        uncork: () => {},
        directFd: () => -1,
        beginDirect: () => {},
        endDirect: () => {},
        directBlocked: () => {},
        diverted: () => {},
        relayed: () => {},
        lendReading: () => false,
        lentUnread: () => {},
        lentRan: () => {},
        endLend: () => {},
      },
      queuedBatches: 0,
      left: false,
      raw: () => {},
      terminate: async () => {},
      notify: () => {},
      preparedStatementFrames: () => [],
      remakeFailed: () => {},
      serverClients: () => [],
      signalClient: () => false,
      answered: () => {},
    }
    client.states.enter('idle')
    session.members.add(client)
    const state = new ClientState(client.processId)
    const backend = new ClientBackend(client, session, state, log)
    const runner = new BatchRunner(client, {
      backend,
      messages: new MessageReader(state, false, () => 'postgres'),
      databases: null,
      database: 'postgres',
      maxCopyBytes: 1 << 20,
      idleTransactionWaitMs: 0,
      log,
    })
    const read = (...messages: Buffer[]) => {
      const bytes = Buffer.concat(messages)
      let count = 0
      forEachFrame(bytes, () => void count++)
      return runner.run({ bytes, count })
    }
    return { runner, client, read }
  }
  /** Each call PGlite got, as its messages' codes. */
  const calls = () => db.calls.map((call) => codes(call))
  return { session, connect, calls }
}

/** A backend message as its code plus, for errors, the SQLSTATE and, for ReadyForQuery, the status. */
function summary(message: Buffer): string {
  const code = String.fromCharCode(message[0]!)
  if (code === 'Z') return `Z${String.fromCharCode(message[5]!)}`
  if (code === 'E') return `E${/\0C([0-9A-Z]{5})\0/.exec(message.toString('latin1', 5))?.[1]}`
  return code
}

function codes(bytes: Buffer): string {
  let out = ''
  forEachFrame(bytes, (code) => void (out += String.fromCharCode(code)))
  return out
}

describe('BatchRunner', () => {
  it('keeps the session for a transaction; the client waiting behind it runs once it commits', async () => {
    const { connect, calls } = setUp()
    const a = connect()
    const b = connect()
    await a.read(wire.query('begin'))
    expect(a.client.states.current).toBe('active')
    const waiting = b.read(wire.query('select 1'))
    await Promise.resolve()
    expect(b.client.states.current).toBe('waiting')
    await a.read(wire.query('commit'))
    await waiting
    expect(calls()).toEqual(['Q', 'Q', 'Q'])
    expect(a.client.received).toEqual(['C', 'ZT', 'C', 'ZI'])
    expect(b.client.received).toEqual(['C', 'ZI'])
    expect(a.runner.restingState).toBe('idle')
  })

  it('a pipeline without its Sync holds the session; the Sync in a later read releases it', async () => {
    const { connect } = setUp()
    const a = connect()
    await a.read(wire.parse('', 'select 1'), wire.bind('', ''), wire.execute(''), wire.flush())
    expect(a.runner.restingState).toBe('holding')
    await a.read(wire.sync())
    expect(a.runner.restingState).toBe('idle')
  })

  it('work refused while it waited (queue timeout): 55P03 at once, messages dropped until the Sync of a later read', async () => {
    const { connect, calls } = setUp()
    const a = connect()
    const b = connect()
    await a.read(wire.query('begin'))
    // Flush: the client asks for the replies so far, so its messages wait for the session (without, they wait in the
    // runner and hold nothing: see 'messages that ask for no reply yet').
    const waiting = b.read(wire.parse('', 'select 1'), wire.bind('', ''), wire.execute(''), wire.flush())
    await Promise.resolve()
    b.runner.wait.timeOut(10)
    await waiting
    expect(b.client.received).toEqual(['E55P03'])
    // Dropped, as after any error: more extended messages, a Query, and a COPY the server would otherwise take over.
    await b.read(wire.describe('P', ''), wire.query('select 2'), wire.query('copy t from stdin'))
    expect(b.client.received).toEqual(['E55P03'])
    const rest = b.read(wire.sync(), wire.query('select 3'))
    await Promise.resolve()
    expect(b.client.received).toEqual(['E55P03', 'ZI'])
    await a.read(wire.query('commit'))
    await rest
    expect(b.client.received).toEqual(['E55P03', 'ZI', 'C', 'ZI'])
    expect(calls()).toEqual(['Q', 'Q', 'Q'])
  })

  it('a refused Query gets its own ReadyForQuery and the rest of the read runs', async () => {
    const { connect } = setUp()
    const a = connect()
    const b = connect()
    await a.read(wire.query('begin'))
    const waiting = b.read(wire.query('select 1'), wire.query('select 2'))
    await Promise.resolve()
    expect(b.runner.wait.cancel()).toBe(true)
    await a.read(wire.query('commit'))
    await waiting
    expect(b.client.received).toEqual(['E57014', 'ZI', 'C', 'ZI'])
  })

  it('Terminate ends the client even while its messages are dropped until Sync', async () => {
    const { connect } = setUp()
    const a = connect()
    const b = connect()
    await a.read(wire.query('begin'))
    const waiting = b.read(wire.parse('', 'select 1'), wire.flush())
    await Promise.resolve()
    b.runner.wait.cancel()
    await waiting
    await b.read(wire.bind('', ''), wire.terminate())
    expect(b.client.closed).toBe(true)
  })

  it('messages that ask for no reply yet (no Sync or Flush) wait in the runner: the session stays free until they do', async () => {
    const { connect, calls } = setUp()
    const a = connect()
    const b = connect()
    await b.read(wire.parse('', 'select 1'), wire.bind('', ''))
    expect(calls()).toEqual([])
    await a.read(wire.query('select 2'))
    await b.read(wire.execute(''), wire.sync())
    expect(calls()).toEqual(['Q', 'PBES'])
  })

  it("a client that binds the unnamed statement it never made does not get another client's", async () => {
    const { connect, calls } = setUp()
    const a = connect()
    const b = connect()
    await a.read(wire.parse('', 'select 1'), wire.sync())
    await b.read(wire.bind('', ''), wire.execute(''), wire.sync())
    // Before B's messages, the session's unnamed statement (A's) is closed: B gets Postgres's own 26000 answer.
    expect(calls()).toEqual(['PS', 'CH', 'BES'])
    // A made it, so A's own Bind needs no such close.
    await a.read(wire.parse('', 'select 1'), wire.sync())
    await a.read(wire.bind('', ''), wire.execute(''), wire.sync())
    expect(calls().slice(3)).toEqual(['PS', 'BES'])
  })

  it('an error in a pipeline: the rest is skipped until Sync, whose ReadyForQuery releases the session', async () => {
    const { connect } = setUp()
    const a = connect()
    await a.read(wire.parse('', 'fail'), wire.bind('', ''), wire.execute(''), wire.sync())
    expect(a.client.received).toEqual(['E42000', 'ZI'])
    expect(a.runner.restingState).toBe('idle')
  })
})
