// startDevDb end to end: the URL it hands out, close() and disposal, the goodbye clients get, what survives a
// reopen of the same dataDir, migrations, the two idle timeouts, and a failed start. Real sockets, bounded waits.
import { spawn, spawnSync } from 'node:child_process'
import { constants } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, writeFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { once } from 'node:events'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import {
  launchDevDb,
  startDevDb,
  type DevDb,
  type DevDbOptions,
  type LaunchedDevDb,
} from '../../src/databases/dev-db.ts'
import { writeSnapshot } from '../../src/databases/snapshot.ts'
import { DevServerError } from '../../src/errors.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { copyTemplate, removeDataDir } from '../helpers/db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))
const CLOSE_DEADLINE_MS = 5_000

const { scratchDataDir, start, connect } = useDevDbs()
const scratch: string[] = []
afterEach(async () => {
  await Promise.all(scratch.splice(0).map(removeDataDir))
})

/** True if something accepts TCP connections on 127.0.0.1:port, false if the connection is refused. */
async function isListening(port: number): Promise<boolean> {
  const socket = net.connect(port, '127.0.0.1')
  try {
    await withDeadline(once(socket, 'connect'), 2_000, 'TCP connect or refusal')
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ECONNREFUSED') return false
    throw error
  } finally {
    socket.destroy()
  }
}

/** The next message on `client` is a FATAL ErrorResponse with `code`, and then the server closes the socket. */
async function expectFatal(client: RawClient, code: string): Promise<void> {
  const error = await client.next('ErrorResponse', { deadlineMs: 3_000 })
  expect(wire.decodeError(error.body)).toMatchObject({ severity: 'FATAL', code })
  await withDeadline(client.closed, 3_000, `socket closed after FATAL ${code}`)
}

/** A port that was free a moment ago: the kernel's pick for port 0, released at once. */
async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as net.AddressInfo
  await new Promise<void>((resolve, reject) => probe.close((error) => (error ? reject(error) : resolve())))
  return port
}

describe('url, port and close', () => {
  it('port 0 becomes the bound port, and a postgres.js client queries through the url', async () => {
    const dev = await start({ port: 0 })
    expect(dev.port).toBeGreaterThan(0)
    expect(dev.server.port).toBe(dev.port)
    expect(dev.url).toBe(`postgres://postgres@127.0.0.1:${dev.port}/postgres`)

    const sql = postgres(dev.url, { max: 1 })
    try {
      const rows = await withDeadline(
        sql`select current_user as "user", current_database() as db, 1 + 1 as two`,
        5_000,
        'postgres.js query',
      )
      expect([...rows]).toEqual([{ user: 'postgres', db: 'postgres', two: 2 }])
    } finally {
      await sql.end({ timeout: 5 })
    }
  })

  it('close() is idempotent: concurrent and later calls all resolve, and PGlite ends up closed', async () => {
    const dev = await start()
    await connect(dev.url)
    await withDeadline(Promise.all([dev.close(), dev.close()]), CLOSE_DEADLINE_MS, 'two concurrent close() calls')
    await withDeadline(dev.close(), CLOSE_DEADLINE_MS, 'close() after close()')
    expect(dev.db.closed).toBe(true)
    expect(await isListening(dev.port)).toBe(false)
  })

  it('await using closes the server at the end of the scope', async () => {
    const dataDir = await scratchDataDir()
    let port: number
    let db: DevDb['db'] | undefined
    {
      await using dev = await startDevDb({ dataDir, migrations: false })
      port = dev.port
      db = dev.db
      expect(await isListening(port)).toBe(true)
    }
    expect(db?.closed).toBe(true)
    expect(await isListening(port)).toBe(false)
  })

  it('close() sends FATAL 57P01 to every client; a reopen keeps committed rows and drops an open transaction', async () => {
    const dataDir = await scratchDataDir()
    const dev = await start({ dataDir })
    const committer = await connect(dev.url)
    const holder = await connect(dev.url)
    expect((await committer.query('create table t (id int); insert into t values (1)')).errors).toEqual([])
    expect((await holder.query('begin; insert into t values (2)')).status).toBe('T')

    const closing = dev.close()
    await expectFatal(committer, '57P01')
    await expectFatal(holder, '57P01')
    await withDeadline(closing, CLOSE_DEADLINE_MS, 'close()')

    const reopened = await start({ dataDir })
    const reader = await connect(reopened.url)
    expect((await reader.query('select id from t order by id')).rows).toEqual([['1']])
  })
})

describe('what the server allows as configured', () => {
  it('PREPARE TRANSACTION by one client, COMMIT PREPARED by another (max_prepared_transactions is set)', async () => {
    const dev = await start()
    const [a, b] = [await connect(dev.url), await connect(dev.url)]
    expect((await a.query('create table two_phase (id int)')).errors).toEqual([])
    expect((await a.query("begin; insert into two_phase values (1); prepare transaction 'tp1'")).errors).toEqual([])
    expect((await b.query('select count(*) from two_phase')).rows).toEqual([['0']])
    expect((await b.query('select gid from pg_prepared_xacts')).rows).toEqual([['tp1']])
    expect((await b.query("commit prepared 'tp1'")).errors).toEqual([])
    expect((await a.query('select count(*) from two_phase')).rows).toEqual([['1']])
  })
})

describe('options', () => {
  it("migrations: applies the repo's schema, and a restart on the same dataDir applies nothing", async () => {
    const dataDir = await scratchDataDir()
    const records: LogRecord[] = []
    const logger = createLogger({ level: 'info', sink: (record) => records.push(record) })
    const migrationsDone = () => records.filter((r) => r.msg === 'migrations done').map((r) => r.fields['applied'])

    const first = await start({ dataDir, migrations: MIGRATIONS, logger })
    const client = await connect(first.url)
    const tables = await client.query(
      "select table_name from information_schema.tables where table_schema = 'public' order by 1",
    )
    expect(tables.rows).toEqual([['customers'], ['order_items'], ['orders'], ['products']])
    expect(
      (await client.query("insert into customers (email, name) values ('ada@example.com', 'Ada')")).errors,
    ).toEqual([])
    await withDeadline(first.close(), CLOSE_DEADLINE_MS, 'close()')

    const second = await start({ dataDir, migrations: MIGRATIONS, logger })
    expect(migrationsDone()).toEqual([1, 0])
    const again = await connect(second.url)
    expect((await again.query('select email from customers')).rows).toEqual([['ada@example.com']])
    expect((await again.query('select count(*) from drizzle.__drizzle_migrations')).rows).toEqual([['1']])
  })

  it('idleTimeoutMs: 300 closes a client at rest with FATAL 57P05', async () => {
    const dev = await start({ idleTimeoutMs: 300 })
    const client = await connect(dev.url)
    const sentAt = performance.now()
    expect((await client.query('select 1 as one')).rows).toEqual([['1']])
    await expectFatal(client, '57P05')
    // The timer starts after the reply is sent, so the client was at rest for at least the timeout.
    expect(performance.now() - sentAt).toBeGreaterThanOrEqual(290)
  })

  it('idleTimeoutMs: 300 also closes a client that connected and never sent a query', async () => {
    const dev = await start({ idleTimeoutMs: 300 })
    const client = await connect(dev.url)
    await expectFatal(client, '57P05')
  })

  it('without the option, a client at rest outlives one that idleTimeoutMs: 300 reaps', async () => {
    const defaults = await start()
    const resting = await connect(defaults.url)
    expect((await resting.query('select 1 as one')).rows).toEqual([['1']])

    // The time window is the reaped client's: it went quiet after `resting` did and was closed 300 ms later.
    const reaping = await start({ idleTimeoutMs: 300 })
    const reaped = await connect(reaping.url)
    expect((await reaped.query('select 1 as one')).rows).toEqual([['1']])
    const worker = await connect(defaults.url)
    expect((await worker.query('create table busy as select g from generate_series(1, 1000) g')).errors).toEqual([])
    await expectFatal(reaped, '57P05')

    expect(resting.isClosed).toBe(false)
    expect((await resting.query('select count(*) from busy')).rows).toEqual([['1000']])
  })

  it('idleInTransactionTimeoutMs: 300 reaps a quiet transaction with FATAL 25P03 and serves the client queued behind it', async () => {
    const dev = await start({ idleInTransactionTimeoutMs: 300 })
    const holder = await connect(dev.url)
    const waiter = await connect(dev.url)
    expect((await holder.query('begin; create table held (id int)')).status).toBe('T')

    await waiter.send(wire.query('select count(*) from pg_tables where tablename = $$held$$'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    await expectFatal(holder, '25P03')

    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors).toEqual([])
    // The holder's CREATE TABLE was rolled back before the waiter ran.
    expect(reply.rows).toEqual([['0']])
    expect(reply.status).toBe('I')
  })

  it('idleInTransactionTimeoutMs: 300 reaps a holder that went quiet in the middle of a frame', async () => {
    const dev = await start({ idleInTransactionTimeoutMs: 300 })
    const holder = await connect(dev.url)
    const waiter = await connect(dev.url)
    expect((await holder.query('begin; create table half (id int)')).status).toBe('T')
    // The first half of a Query: no frame is complete, so nothing runs, and the client says nothing more.
    const query = wire.query('select 1')
    await holder.send(query.subarray(0, 3))

    await waiter.send(wire.query('select count(*) from pg_tables where tablename = $$half$$'))
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 2_000 }).toBe(1)
    await expectFatal(holder, '25P03')
    const reply = wire.summarize(await waiter.until('ReadyForQuery'))
    expect(reply.errors).toEqual([])
    expect(reply.rows).toEqual([['0']])
  })

  it('a second startDevDb on a dataDir in use rejects with ERR_DATA_DIR_LOCKED; the first keeps serving, and after its close the dir opens again', async () => {
    const dataDir = await scratchDataDir()
    const first = await start({ dataDir })
    const error = await startDevDb({ dataDir, migrations: false }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(error).toMatchObject({
      code: 'ERR_DATA_DIR_LOCKED',
      message: expect.stringContaining(`pid ${process.pid}, this process`),
    })
    const client = await connect(first.url)
    expect((await client.query('select 1 as one')).rows).toEqual([['1']])
    await first.close()
    const again = await start({ dataDir })
    expect(again.port).toBeGreaterThan(0)
  })

  it('takes over a lock whose process is a zombie (killed, not yet reaped by its parent)', async () => {
    // sh starts `sleep 0.3` in the background and becomes `sleep 10`, which never reaps it: a zombie once it exits,
    // pid printed. (With `sleep 0`, a busy machine let sh reap the child before its exec: no zombie to take over.)
    const parent = spawn('sh', ['-c', 'sleep 0.3 & echo $!; exec sleep 10'], { stdio: ['ignore', 'pipe', 'ignore'] })
    onTestFinished(() => void parent.kill('SIGKILL'))
    const [line] = (await once(createInterface({ input: parent.stdout }), 'line')) as [string]
    const zombie = Number(line)
    await expect
      .poll(async () => (await readFile(`/proc/${zombie}/stat`, 'utf8')).split(') ')[1]?.[0], { timeout: 5_000 })
      .toBe('Z')
    const dataDir = await scratchDataDir()
    await writeFile(path.join(dataDir, 'pglite-dev-db.lock'), `${zombie}\n`)
    const dev = await start({ dataDir })
    expect(dev.port).toBeGreaterThan(0)
  })

  it('rejects a bad option with ERR_CONFIG before opening anything', async () => {
    for (const options of [
      { port: -1 },
      { port: 70_000 },
      { maxConnections: 0 },
      { idleTimeoutMs: 1.5 },
      { idleInTransactionTimeoutMs: 2 ** 31 },
      { dataDirectory: 'x' },
    ]) {
      const error = await startDevDb(options as DevDbOptions).then(
        () => null,
        (e: unknown) => e,
      )
      expect(error, JSON.stringify(options)).toMatchObject({
        code: 'ERR_CONFIG',
        message: expect.stringContaining(Object.keys(options)[0]!),
      })
    }
  })

  it('migrations: a failing file rejects with ERR_MIGRATION and leaves nothing listening; the next start works', async () => {
    const migrations = await migrationsFolder('0000_broken', 'INSERT INTO no_such_table VALUES (1);')
    const port = await freePort()
    const dataDir = await scratchDataDir()

    const error = await start({ port, migrations, dataDir }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(error).toBeInstanceOf(DevServerError)
    expect(error).toMatchObject({ code: 'ERR_MIGRATION', message: expect.stringContaining('0000_broken.sql') })
    expect(await isListening(port)).toBe(false)

    // Nothing of the failed start remains: the data dir's lock is free, and the port too.
    const fixed = await migrationsFolder('0000_fixed', 'CREATE TABLE fixed (id int);')
    const dev = await start({ port, migrations: fixed, dataDir })
    const client = await connect(dev.url)
    expect((await client.query('select count(*) from fixed')).rows).toEqual([['0']])
  })

  it('the URL comes before the database is ready; a client connecting at once waits, and its first query sees the migrations', async () => {
    // The database's files come through a FIFO: it cannot open, so nor be ready, before the test writes them.
    const { fifo, feed, unblock } = await blockingSnapshot()
    const migrations = await migrationsFolder('0000_late', 'CREATE TABLE late (id int);')
    const launched = await launchDevDb({ port: 0, migrations, fromSnapshot: fifo })
    const ready = settledAndClosed(launched, unblock)

    // It waits while the database opens: as long as that takes on a loaded machine.
    const connecting = connectRaw(launched.url, {
      params: { user: 'postgres', database: 'postgres' },
      deadlineMs: 60_000,
    })
    // The server has the client's StartupMessage (it counts it) while the database has not even begun to open.
    await expect.poll(() => launched.server.getStats().activeConnections, { timeout: 5_000 }).toBe(1)
    expect(ready.outcome).toBe('pending')
    await feed()
    const client = await connecting
    onTestFinished(() => client.destroy())
    expect((await client.query('select count(*) from late')).rows).toEqual([['0']])
    await ready.settled
    expect(ready.outcome).toMatchObject({ url: launched.url })
  })

  it('a start that fails after the URL reaches the waiting client as a FATAL ErrorResponse with the SQLSTATE, and ready rejects', async () => {
    const { fifo, feed, unblock } = await blockingSnapshot()
    const migrations = await migrationsFolder('0000_broken', 'INSERT INTO no_such_table VALUES (1);')
    const launched = await launchDevDb({ port: 0, migrations, fromSnapshot: fifo })
    const ready = settledAndClosed(launched, unblock)

    const client = await connectRaw(launched.url, { startup: false })
    onTestFinished(() => client.destroy())
    await client.send(wire.startup({ user: 'postgres', database: 'postgres' }))
    await expect.poll(() => launched.server.getStats().activeConnections, { timeout: 5_000 }).toBe(1)
    await feed()
    const error = wire.decodeError((await client.next('ErrorResponse', { deadlineMs: 30_000 })).body)
    expect(error).toMatchObject({
      severity: 'FATAL',
      code: '42P01',
      message: expect.stringMatching(/0000_broken\.sql.*no_such_table/),
    })
    await withDeadline(client.closed, 3_000, 'socket closed after the FATAL')
    await ready.settled
    expect(ready.outcome).toMatchObject({ code: 'ERR_MIGRATION', message: expect.stringContaining('0000_broken.sql') })
    expect(await isListening(launched.port)).toBe(false)
  })
})

/**
 * `launched.ready` as it settles: 'pending' until then. After the test, a start still blocked is ended (`unblock`),
 * and the server it gave, if any, closed.
 */
function settledAndClosed(
  launched: LaunchedDevDb,
  unblock: () => Promise<void>,
): { readonly outcome: unknown; settled: Promise<void> } {
  const state: { outcome: unknown; settled: Promise<void> } = { outcome: 'pending', settled: Promise.resolve() }
  state.settled = launched.ready.then(
    (dev) => void (state.outcome = dev),
    (error: unknown) => void (state.outcome = error),
  )
  onTestFinished(async () => {
    if (state.outcome === 'pending') await unblock()
    await state.settled
    if (state.outcome instanceof Object && 'close' in state.outcome) await (state.outcome as DevDb).close()
  })
  return state
}

/**
 * A FIFO to start from as a snapshot: reading it blocks until `feed()` writes a database's files into it (a
 * snapshot of the template data dir, taken now), or `unblock()` ends it empty (the start then fails).
 */
async function blockingSnapshot(): Promise<{ fifo: string; feed: () => Promise<void>; unblock: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-fifo-'))
  scratch.push(dir)
  const source = await copyTemplate()
  scratch.push(source)
  const file = path.join(dir, 'snapshot.tar.gz')
  await writeSnapshot(source, file, { log: createLogger({ level: 'silent' }) })
  const fifo = path.join(dir, 'snapshot.fifo')
  const made = spawnSync('mkfifo', [fifo])
  if (made.status !== 0) throw new Error(`mkfifo failed: ${made.stderr.toString()}`)
  const unblock = async (): Promise<void> => {
    // Non-blocking: with no reader (the start never got that far) there is nothing to end (ENXIO).
    const writer = await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENXIO') return null
      throw error
    })
    await writer?.close()
  }
  return { fifo, feed: async () => writeFile(fifo, await readFile(file)), unblock }
}

/** A drizzle-kit style migrations folder with one file, removed after the test. */
async function migrationsFolder(tag: string, sql: string): Promise<string> {
  const migrations = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-migrations-'))
  scratch.push(migrations)
  await mkdir(path.join(migrations, 'meta'))
  const entries = [{ idx: 0, version: '7', when: 1_000, tag, breakpoints: true }]
  await writeFile(
    path.join(migrations, 'meta', '_journal.json'),
    JSON.stringify({ version: '7', dialect: 'postgresql', entries }),
  )
  await writeFile(path.join(migrations, `${tag}.sql`), sql)
  return migrations
}
