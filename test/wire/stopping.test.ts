// A statement running in PGlite (in its database's thread) never freezes the server: new clients connect, queued
// ones time out, statement_timeout and CancelRequest stop it with 57014 as Postgres does, a COPY broken by another
// message ends only that client, and a client that leaves before its startup is done gets no word. Where PostgreSQL 15
// gives the answer, the same scenario runs against it too when PG_ORACLE_URL is set (`.ci/run` sets it).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, sendCancelRequest, toAddress, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { scratchDataDir, start, connect } = useDevDbs()
const oracleUrl = process.env.PG_ORACLE_URL
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** A statement that sleeps (PGlite's pg_sleep spins on the clock) and one that only computes; neither ends by itself. */
const SLEEP = 'select pg_sleep(15)'
const LOOP = 'DO $$BEGIN LOOP END LOOP; END$$'
const TIMEOUT_MESSAGE = 'canceling statement due to statement timeout'
const CANCEL_MESSAGE = 'canceling statement due to user request'

/**
 * How late a statement_timeout may fire. PostgreSQL 15 here fires 700 at 701 ms. Ours on this 2-core machine, idle and
 * beside another test file: 700 at 700-887 ms (66 runs, median 713), SET LOCAL 700 at 702-832, 1000 on a loop at
 * 1002-1178; up to 416 ms late under a heavier load. The bound is for a busy machine: what it catches is a timer that
 * waits for the statement's own end, or never fires.
 */
const TIMER_SLACK_MS = 500
/** A new connection while a statement runs: the server's thread answers it at once (measured 1-16 ms over 47 runs). */
const CONNECT_BOUND_MS = 200

/** Send a CancelRequest on its own socket, as libpq does; resolves once the server has closed that socket. */
/** Sends `sql` and waits for its ReadyForQuery; the reply with how long it took from the send. */
async function timed(client: RawClient, sql: string, deadlineMs: number): Promise<{ reply: wire.Summary; ms: number }> {
  const sentAt = performance.now()
  await client.send(wire.query(sql))
  const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs }))
  return { reply, ms: Math.round(performance.now() - sentAt) }
}

const errorsOf = (reply: wire.Summary) => reply.errors.map((e) => [e.severity, e.code, e.message])

/**
 * PGlite's data_directory: the server's data dir on disk, so a file a statement writes there appears at once. The
 * server streams no output before a call ends, so this is how a test knows a statement is running in PGlite (a
 * CancelRequest that arrives before that finds nothing to cancel).
 */
const PGDATA = '/pglite/data'

/** A server on a data dir of its own, and `announced(sql)`: `sql` preceded, in the same call, by a marker file's write. */
async function startAnnouncing(options: Parameters<typeof start>[0] = {}) {
  const dataDir = await scratchDataDir()
  const dev = await start({ ...options, dataDir })
  let count = 0
  const announced = (sql: string) => {
    const marker = `running-${++count}`
    return {
      sql: `copy (select 1) to '${PGDATA}/${marker}'; ${sql}`,
      running: () =>
        expect.poll(() => existsSync(path.join(dataDir, marker)), { timeout: 5_000, interval: 5 }).toBe(true),
    }
  }
  return { dev, announced }
}

/** Every message the server sent after `from` bytes, once it has closed the socket. */
async function restAfterClose(client: RawClient, from: number): Promise<wire.BackendMessage[]> {
  await withDeadline(client.closed, 3_000, 'the server closes the connection')
  return wire.createBackendParser().push(client.received().subarray(from))
}

describe('while a statement runs in PGlite', () => {
  it(`a new connection is ready within ${CONNECT_BOUND_MS} ms, and a client queued behind it gets 55P03 at queueTimeoutMs (3000 ms, ±10%)`, async () => {
    const { dev, announced } = await startAnnouncing({ queueTimeoutMs: 3_000 })
    const sleeper = await connect(dev.url)
    const sleep = announced(SLEEP)
    await sleeper.send(wire.query(sleep.sql))
    await sleep.running()

    const connectAt = performance.now()
    const late = await connect(dev.url)
    const connectMs = Math.round(performance.now() - connectAt)
    expect(connectMs, `a new connection took ${connectMs} ms to reach ReadyForQuery`).toBeLessThanOrEqual(
      CONNECT_BOUND_MS,
    )

    const { reply, ms } = await timed(late, 'select 1', 10_000)
    expect(reply.errors.map((e) => [e.severity, e.code])).toEqual([['ERROR', '55P03']])
    expect(reply.errors[0]!.message).toContain(`client ${sleeper.backendKey!.pid} holds it`)
    expect(reply.status).toBe('I')
    expect(Math.abs(ms - 3_000), `55P03 after ${ms} ms`).toBeLessThanOrEqual(300)

    await sendCancelRequest(dev.url, sleeper.backendKey)
    expect(errorsOf(wire.summarize(await sleeper.until('ReadyForQuery', { deadlineMs: 3_000 })))).toEqual([
      ['ERROR', '57014', CANCEL_MESSAGE],
    ])
    expect((await late.query('select 2')).rows).toEqual([['2']])
  })
})

describe('statement_timeout', () => {
  /** SET in its own Query, then two statements that outlast it: each is stopped, and the client carries on. */
  async function timeoutTwice(url: string) {
    const client = await connectRaw(url)
    try {
      expect((await client.query('set statement_timeout = 700')).errors).toEqual([])
      const first = await timed(client, 'select pg_sleep(5)', 8_000)
      const second = await timed(client, 'select pg_sleep(5)', 8_000)
      const after = await client.query('select 42')
      return { first, second, after }
    } finally {
      client.destroy()
    }
  }

  const expectTimedOut = ({ reply, ms }: { reply: wire.Summary; ms: number }, timeoutMs: number) => {
    expect(errorsOf(reply), `after ${ms} ms`).toEqual([['ERROR', '57014', TIMEOUT_MESSAGE]])
    expect(reply.status).toBe('I')
    expect(ms, `57014 after ${ms} ms`).toBeGreaterThanOrEqual(timeoutMs)
    expect(ms, `57014 after ${ms} ms`).toBeLessThanOrEqual(timeoutMs + TIMER_SLACK_MS)
  }

  it('SET statement_timeout = 700, then pg_sleep(5) twice: ERROR 57014 at 700 ms each time; the next statement runs', async () => {
    const dev = await start()
    const { first, second, after } = await timeoutTwice(dev.url)
    expectTimedOut(first, 700)
    expectTimedOut(second, 700)
    expect(after.rows).toEqual([['42']])
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    const { first, second, after } = await timeoutTwice(oracleUrl!)
    expectTimedOut(first, 700)
    expectTimedOut(second, 700)
    expect(after.rows).toEqual([['42']])
  })

  it("'SET statement_timeout = 700; select pg_sleep(5)' in one Query: ERROR 57014 at 700 ms; the client carries on", async () => {
    const dev = await start()
    const client = await connect(dev.url)
    const result = await timed(client, 'set statement_timeout = 700; select pg_sleep(5)', 8_000)
    expectTimedOut(result, 700)
    expect(result.reply.commands).toEqual(['SET'])
    expect((await client.query('select 42')).rows).toEqual([['42']])
  })

  it("'SET statement_timeout = 1000; DO $$BEGIN LOOP END LOOP; END$$' (pure computation): ERROR 57014 at 1 s", async () => {
    const dev = await start()
    const client = await connect(dev.url)
    const bystander = await connect(dev.url)
    const result = await timed(client, `set statement_timeout = 1000; ${LOOP}`, 8_000)
    expectTimedOut(result, 1_000)
    expect((await client.query('select 42')).rows).toEqual([['42']])
    expect((await bystander.query('select 43')).rows).toEqual([['43']])
  })

  /** In a transaction block: the timeout aborts the block, as any error does. */
  async function timeoutInBlock(url: string) {
    const client = await connectRaw(url)
    try {
      expect((await client.query('begin')).status).toBe('T')
      expect((await client.query('set local statement_timeout = 700')).status).toBe('T')
      const slept = await timed(client, 'select pg_sleep(5)', 8_000)
      const ignored = await client.query('select 1')
      const rolledBack = await client.query('rollback')
      // SET LOCAL ended with the block.
      const shown = await client.query('show statement_timeout')
      return { slept, ignored, rolledBack, shown }
    } finally {
      client.destroy()
    }
  }

  const expectBlockAborted = ({ slept, ignored, rolledBack, shown }: Awaited<ReturnType<typeof timeoutInBlock>>) => {
    expect(errorsOf(slept.reply), `after ${slept.ms} ms`).toEqual([['ERROR', '57014', TIMEOUT_MESSAGE]])
    expect(slept.reply.status).toBe('E')
    expect(slept.ms, `57014 after ${slept.ms} ms`).toBeGreaterThanOrEqual(700)
    expect(slept.ms, `57014 after ${slept.ms} ms`).toBeLessThanOrEqual(700 + TIMER_SLACK_MS)
    expect(ignored.errors.map((e) => [e.severity, e.code])).toEqual([['ERROR', '25P02']])
    expect(ignored.status).toBe('E')
    expect([rolledBack.commands, rolledBack.errors, rolledBack.status]).toEqual([['ROLLBACK'], [], 'I'])
    expect(shown.rows).toEqual([['0']])
  }

  it('in a transaction block (SET LOCAL): 57014 at 700 ms aborts the block (25P02 after it), and ROLLBACK ends it', async () => {
    const dev = await start()
    expectBlockAborted(await timeoutInBlock(dev.url))
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    expectBlockAborted(await timeoutInBlock(oracleUrl!))
  })
})

describe('CancelRequest for a running statement', () => {
  it.each([
    ['pg_sleep(10)', 'select pg_sleep(10)'],
    ['a loop of pure computation', LOOP],
  ])('%s: ERROR 57014 within a second; the client, an idle one and one queued behind it carry on', async (_, sql) => {
    const { dev, announced } = await startAnnouncing()
    const runner = await connect(dev.url)
    const idle = await connect(dev.url)
    const queued = await connect(dev.url)
    const statement = announced(sql)
    await runner.send(wire.query(statement.sql))
    await statement.running()
    await queued.send(wire.query('select 3'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 3_000 }).toBe(1)

    const cancelAt = performance.now()
    await sendCancelRequest(dev.url, runner.backendKey)
    const reply = wire.summarize(await runner.until('ReadyForQuery', { deadlineMs: 5_000 }))
    const ms = Math.round(performance.now() - cancelAt)
    expect(errorsOf(reply)).toEqual([['ERROR', '57014', CANCEL_MESSAGE]])
    expect(reply.status).toBe('I')
    expect(ms, `57014 ${ms} ms after the CancelRequest`).toBeLessThanOrEqual(1_000)

    expect(wire.summarize(await queued.until('ReadyForQuery')).rows).toEqual([['3']])
    expect((await runner.query('select 1')).rows).toEqual([['1']])
    expect((await idle.query('select 2')).rows).toEqual([['2']])
  })

  it('a CancelRequest inside a transaction block aborts the block, as Postgres does', async () => {
    const { dev, announced } = await startAnnouncing()
    const runner = await connect(dev.url)
    expect((await runner.query('begin; create table kept (id int); insert into kept values (1)')).status).toBe('T')
    const loop = announced(LOOP)
    await runner.send(wire.query(loop.sql))
    await loop.running()
    await sendCancelRequest(dev.url, runner.backendKey)
    const reply = wire.summarize(await runner.until('ReadyForQuery', { deadlineMs: 5_000 }))
    expect([errorsOf(reply), reply.status]).toEqual([[['ERROR', '57014', CANCEL_MESSAGE]], 'E'])
    expect((await runner.query('rollback')).status).toBe('I')
    expect((await runner.query("select count(*) from pg_tables where tablename = 'kept'")).rows).toEqual([['0']])
  })

  it('postgres.js: query.cancel() on a running pg_sleep(10) rejects it with 57014; the connection serves the next query', async () => {
    const { dev, announced } = await startAnnouncing()
    const sql = postgres(dev.url, { max: 1, onnotice: () => {} })
    try {
      await withDeadline(sql`select 1`.execute(), 5_000, 'postgres.js connects')
      const sleep = announced('select pg_sleep(10)')
      // simple(): the simple protocol, which runs the marker's COPY and the sleep in one Query.
      const pending = sql.unsafe(sleep.sql).simple().execute()
      await sleep.running()
      const cancelAt = performance.now()
      pending.cancel()
      await expect(withDeadline(pending, 5_000, 'the canceled query')).rejects.toMatchObject({
        code: '57014',
        message: CANCEL_MESSAGE,
      })
      const ms = Math.round(performance.now() - cancelAt)
      expect(ms, `rejected ${ms} ms after cancel()`).toBeLessThanOrEqual(1_000)
      expect(await withDeadline(sql`select 7 as n`.execute(), 5_000, 'query after the cancel')).toEqual([{ n: 7 }])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })
})

/** A Bind of the unnamed portal to `statement` with one int4 parameter in binary format, as pgjdbc sends setInt. */
function bindBinaryInt(statement: string, value: number): Buffer {
  const int4 = Buffer.alloc(4)
  int4.writeInt32BE(value)
  return new wire.Writer()
    .cstring('')
    .cstring(statement)
    .int16(1)
    .int16(1)
    .int16(1)
    .int32(4)
    .bytes(int4)
    .int16(0)
    .message('B')
}

/** How the signaling client gives the pid: written in a simple Query, or as a parameter (node-postgres, pgjdbc). */
const SIGNAL_WAYS = {
  'written in the SQL': (fn: string, pid: number) => [wire.query(`select ${fn}(${pid})`)],
  'written in an extended-protocol statement': (fn: string, pid: number) => [
    wire.parse('', `select ${fn}(${pid})`),
    wire.bind('', ''),
    wire.execute(''),
    wire.sync(),
  ],
  'a text parameter': (fn: string, pid: number) => [
    wire.parse('', `select ${fn}($1)`),
    wire.bind('', '', [String(pid)]),
    wire.execute(''),
    wire.sync(),
  ],
  'a binary parameter of a named statement': (fn: string, pid: number) => [
    wire.parse('kill', `select ${fn}($1::int)`),
    bindBinaryInt('kill', pid),
    wire.execute(''),
    wire.sync(),
  ],
} as const
type SignalWay = keyof typeof SIGNAL_WAYS

describe('pg_cancel_backend and pg_terminate_backend of a running statement, from another client of the database', () => {
  const fns = [
    ['pg_cancel_backend', ['ERROR', '57014', CANCEL_MESSAGE], 'E'],
    ['pg_terminate_backend', ['FATAL', '57P01', 'terminating connection due to administrator command'], null],
  ] as const
  const cases = fns.flatMap(([fn, expected, status]) =>
    (Object.keys(SIGNAL_WAYS) as SignalWay[]).map((way) => [fn, way, expected, status] as const),
  )
  it.each(cases)(
    '%s(pid), the pid %s, acts at once, though its own statement waits for the session; it answers true',
    async (fn, way, expected, status) => {
      const { dev, announced } = await startAnnouncing()
      const runner = await connect(dev.url)
      const other = await connect(dev.url)
      expect((await runner.query('begin')).status).toBe('T')
      const loop = announced(LOOP)
      await runner.send(wire.query(loop.sql))
      await loop.running()
      const signaledAt = performance.now()
      await other.send(...SIGNAL_WAYS[way](fn, runner.backendKey!.pid))
      const told = wire.summarize(await runner.until(status ? 'ReadyForQuery' : 'ErrorResponse', { deadlineMs: 5_000 }))
      const ms = Math.round(performance.now() - signaledAt)
      expect(errorsOf(told)).toEqual([expected])
      if (status) expect(told.status).toBe(status)
      expect(ms, `${fn} took ${ms} ms`).toBeLessThan(1_000)
      // The canceled client ends its failed transaction; the other's statement then runs: true, as Postgres answers.
      if (status) expect((await runner.query('rollback')).status).toBe('I')
      expect(wire.summarize(await other.until('ReadyForQuery', { deadlineMs: 5_000 })).rows).toEqual([['t']])
    },
  )
})

describe('COPY FROM STDIN broken by another message', () => {
  /** What Postgres 15 answers a message other than CopyData/CopyDone/CopyFail/Flush/Sync in COPY-in (copyfromparse.c). */
  const expected = (type: string) => [
    [
      'ERROR',
      '08P01',
      `unexpected message type 0x${type.charCodeAt(0).toString(16).toUpperCase()} during COPY from stdin`,
    ],
    ['FATAL', '08P01', 'terminating connection because protocol synchronization was lost'],
  ]

  /** COPY one row in, then `intruder`: what the client is told, and what a bystander sees afterwards. */
  async function interruptCopy(url: string, table: string, intruder: Buffer) {
    const bystander = await connectRaw(url)
    const client = await connectRaw(url)
    try {
      expect((await bystander.query(`create table ${table} (id int)`)).errors).toEqual([])
      await client.send(wire.query(`copy ${table} from stdin`))
      await client.next('CopyInResponse')
      const from = client.received().length
      await client.send(wire.copyData('1\n'), intruder)
      const told = (await restAfterClose(client, from))
        .filter((m) => m.code === 'E')
        .map((m) => wire.decodeError(m.body))
      const after = await bystander.query(`select count(*) from ${table}`)
      await bystander.query(`drop table ${table}`)
      return { told: told.map((e) => [e.severity, e.code, e.message]), after }
    } finally {
      client.destroy()
      bystander.destroy()
    }
  }

  const intruders = [
    ['Query', 'Q', () => wire.query('select 1')],
    ['Parse', 'P', () => wire.parse('', 'select 1')],
    ['Terminate', 'X', () => wire.terminate()],
  ] as const

  async function expectOnlyThatClientEnded(type: string, intruder: Buffer): Promise<void> {
    const dev = await start()
    const { told, after } = await interruptCopy(dev.url, `copy_${type.toLowerCase()}`, intruder)
    expect(told).toEqual(expected(type))
    expect([after.errors, after.rows]).toEqual([[], [['0']]])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 5_000 })
      .toMatchObject({ sessionHeld: false, waitingClients: 0 })
    const late = await connect(dev.url)
    expect((await late.query('select 5')).rows).toEqual([['5']])
  }

  it.each(intruders)(
    '%s: ERROR then FATAL 08P01, the connection closes, no row of the COPY is kept, others go on',
    async (_, type, intruder) => {
      await expectOnlyThatClientEnded(type, intruder())
    },
  )

  it.runIf(oracleUrl).each(intruders)('PostgreSQL 15 (PG_ORACLE_URL): %s', async (_, type, intruder) => {
    const { told, after } = await interruptCopy(oracleUrl!, `pglite_dev_db_copy_${type.toLowerCase()}`, intruder())
    expect(told).toEqual(expected(type))
    expect([after.errors, after.rows]).toEqual([[], [['0']]])
  })
})

describe('a client that leaves before its startup is done', () => {
  /** Opens a socket, writes `bytes` and half-closes it; everything the server wrote back once it has closed too. */
  async function leave(url: string, bytes: Buffer): Promise<Buffer> {
    const { host, port } = toAddress(url)
    const socket = net.connect(port, host)
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', () => {})
    try {
      await withDeadline(once(socket, 'connect'), 3_000, 'TCP connect')
      const closed = once(socket, 'close')
      socket.end(bytes)
      await withDeadline(closed, 3_000, 'the server closes the connection')
      return Buffer.concat(chunks)
    } finally {
      socket.destroy()
    }
  }

  const startup = () => wire.startup({ user: 'postgres', database: 'postgres' })
  /** node-postgres' end() right after connect() writes Terminate before the StartupMessage (pg 8, Connection.end). */
  const terminateFirst = () => Buffer.concat([wire.terminate(), startup()])
  const silent: Array<[string, () => Buffer]> = [
    ['nothing at all', () => Buffer.alloc(0)],
    ['half a StartupMessage', () => startup().subarray(0, 10)],
    ["Terminate, then the StartupMessage (node-postgres' connect() then end())", terminateFirst],
  ]

  it.each(silent)('%s: the server writes nothing back and closes; others go on', async (_, bytes) => {
    const dev = await start()
    const bystander = await connect(dev.url)
    const reply = await leave(dev.url, bytes())
    expect(reply.toString('latin1')).toBe('')
    expect((await bystander.query('select 1')).rows).toEqual([['1']])
    await expect.poll(() => dev.server.getStats().activeConnections, { timeout: 3_000 }).toBe(1)
  })

  it.runIf(oracleUrl).each(silent)('PostgreSQL 15 (PG_ORACLE_URL): %s', async (_, bytes) => {
    expect((await leave(oracleUrl!, bytes())).toString('latin1')).toBe('')
  })

  it('a whole StartupMessage, then gone: the startup replies (no error) and the close, as from Postgres', async () => {
    const dev = await start()
    const messages = wire.createBackendParser().push(await leave(dev.url, startup()))
    expect(messages.map((m) => m.code).filter((code) => code !== 'S')).toEqual(['R', 'K', 'Z'])
    await expect.poll(() => dev.server.getStats().activeConnections, { timeout: 3_000 }).toBe(0)
  })

  /** The user's code, alone in a process: unhandled rejections end it with status 1, as Node 15+ does by default. */
  async function connectThenEnd(url: string): Promise<{ code: number | null; output: string }> {
    const script = `import pg from 'pg'; const c = new pg.Client(${JSON.stringify(url)}); c.connect(); await c.end()`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    try {
      const [code] = (await withDeadline(once(child, 'exit'), 10_000, 'the node-postgres process exits')) as [
        number | null,
      ]
      return { code, output }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  }

  it("node-postgres: 'c.connect(); await c.end()' in a process of its own exits 0 with no output", async () => {
    const dev = await start({ tls: false })
    expect(await connectThenEnd(dev.url)).toEqual({ code: 0, output: '' })
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the same', async () => {
    expect(await connectThenEnd(oracleUrl!)).toEqual({ code: 0, output: '' })
  })
})
