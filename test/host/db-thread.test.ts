// PGlite in a worker thread (src/engine/thread.ts) behind the real server: real clients get what an in-process PGlite
// gives them, Postgres errors keep their kind, closing ends the thread, and a PGlite that dies there reaches every
// client as FATAL.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { PGlite, messages } from '@electric-sql/pglite'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import postgres from 'postgres'
import { DbThread } from '../../src/engine/thread.ts'
import { bootstrap } from '../../src/engine/thread-bootstrap.ts'
import { PGLiteSocketServer } from '../../src/server/server.ts'
import { copyTemplate, removeDataDir } from '../helpers/db.ts'
import { endClient } from '../../harness/pg.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import { drivers } from '../../harness/scenarios/drivers.ts'
import { pgListenNotify } from '../../harness/scenarios/pg-listen-notify.ts'

/**
 * Compile-time: DbThread has, with PGlite's signatures, what src/server calls of a PGlite. The server's `db` option
 * typed as this Pick would take a DbThread without the cast in serve() below.
 */
type ServerDb = Pick<PGlite, 'waitReady' | 'runExclusive' | 'execProtocolRaw' | 'execProtocolRawStream'>
export const asServerDb = (db: DbThread): ServerDb => db

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function openThread(): Promise<DbThread> {
  const dataDir = await copyTemplate()
  const db = await DbThread.create({ dataDir })
  cleanups.push(async () => {
    await db.close()
    await removeDataDir(dataDir)
  })
  return db
}

async function serve(db: DbThread): Promise<{ server: PGLiteSocketServer; url: string }> {
  // The server's option is typed PGlite; DbThread has the part of it the server calls.
  const server = new PGLiteSocketServer({ db: db as unknown as PGlite, host: '127.0.0.1', port: 0 })
  await server.start()
  cleanups.push(() => server.stop())
  return { server, url: `postgres://postgres@127.0.0.1:${server.port}/postgres` }
}

async function pgClient(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await client.connect()
  cleanups.push(() => endClient(client))
  return client
}

/** Threads of this process, from the kernel: a worker that ended is gone from this list. */
describe('a DbThread behind PGLiteSocketServer', () => {
  it('node-postgres: extended protocol, an error, transactions, COPY FROM STDIN and TO STDOUT', async () => {
    const { url } = await serve(await openThread())
    const client = await pgClient(url)

    expect((await client.query('select $1::int + 1 as n, $2::text as t', [41, 'x'])).rows).toEqual([{ n: 42, t: 'x' }])
    await expect(client.query('select * from missing_table')).rejects.toMatchObject({
      code: '42P01',
      severity: 'ERROR',
    })
    expect((await client.query('select 1 as one')).rows).toEqual([{ one: 1 }])

    await client.query('create table items (id int primary key, label text)')
    await client.query('begin')
    await client.query("insert into items values (1, 'rolled back')")
    await client.query('rollback')
    await client.query('begin')
    await client.query("insert into items values (2, 'kept')")
    await expect(client.query("insert into items values (2, 'duplicate')")).rejects.toMatchObject({ code: '23505' })
    await expect(client.query('select 1')).rejects.toMatchObject({ code: '25P02' })
    await client.query('rollback')
    await client.query("insert into items values (2, 'kept')")

    const rows = Array.from({ length: 5_000 }, (_, i) => `${i + 10},"label ${i}, with comma"\n`)
    await pipeline(Readable.from(rows), client.query(copyFrom('copy items from stdin with (format csv)')))
    expect((await client.query('select count(*)::int as n, sum(id)::int as s from items')).rows).toEqual([
      { n: 5_001, s: 2 + ((10 + 5_009) * 5_000) / 2 },
    ])

    let text = ''
    for await (const chunk of client.query(copyTo('copy (select id from items order by id) to stdout')))
      text += (chunk as Buffer).toString()
    const ids = text.trim().split('\n')
    expect([ids.length, ids[0], ids.at(-1)]).toEqual([5_001, '2', '5009'])
  })

  it('postgres.js: concurrent unnamed statements with different parameter counts, a transaction, an error', async () => {
    const { url } = await serve(await openThread())
    const sql = postgres(url, { max: 6, prepare: false, onnotice: () => {}, connect_timeout: 5 })
    cleanups.push(() => sql.end({ timeout: 5 }))

    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        i % 2 === 0
          ? sql.unsafe('select $1::int as v', [i])
          : sql.unsafe('select $1::int + $2::int + $3::int + $4::int + $5::int as v', [i, 1, 1, 1, 1]),
      ),
    )
    expect(results.map((rows) => rows[0]?.v)).toEqual(Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? i : i + 4)))

    await sql`create table ledger (id int primary key, amount int not null)`
    await sql.begin(async (tx) => {
      await tx`insert into ledger values (1, 10)`
      await tx`insert into ledger values (2, 20)`
    })
    await expect(
      sql.begin(async (tx) => {
        await tx`insert into ledger values (3, 30)`
        await tx`insert into ledger values (1, 99)`
      }),
    ).rejects.toMatchObject({ code: '23505' })
    expect(await sql`select id, amount from ledger order by id`).toEqual([
      { id: 1, amount: 10 },
      { id: 2, amount: 20 },
    ])
  })

  it('LISTEN/NOTIFY reaches exactly the listening clients', async () => {
    const { url } = await serve(await openThread())
    const outcome = await pgListenNotify(url)
    expect(outcome.tally.samples).toEqual([])
    expect(outcome.kind).toBe('ok')
  })

  it('three apps at once (pipelining, cursors, COPY streams, a 10 MB bytea, 100k rows) get every value right', async () => {
    const { url } = await serve(await openThread())
    const outcome = await drivers(url)
    expect(outcome.tally.samples).toEqual([])
    expect(outcome.kind).toBe('ok')
  })

  it('PGlite dying in the thread fails every client with FATAL, and new clients are refused', async () => {
    const db = await openThread()
    const { server, url } = await serve(db)
    const errors: unknown[] = []
    server.addEventListener('error', (event) => errors.push((event as CustomEvent).detail))
    const clients: RawClient[] = []
    cleanups.push(async () => {
      for (const client of clients) client.destroy()
    })
    for (let i = 0; i < 2; i++) clients.push(await connectRaw(url))
    const [victim, bystander] = clients as [RawClient, RawClient]
    expect((await victim.query('create table t (a int)')).errors).toEqual([])

    // A lone COPY FROM STDIN makes PGlite exit(1); the server never sends one, so it goes in directly.
    const killed = db.runExclusive(() =>
      db.execProtocolRawStream(wire.query('copy t from stdin'), { onRawData: () => {} }),
    )
    await expect(killed).rejects.toMatchObject({ name: 'ExitStatus' })

    await victim.send(wire.query('select 1'))
    for (const client of [victim, bystander]) {
      const error = await client.next('ErrorResponse')
      expect(wire.decodeError(error.body)).toMatchObject({ severity: 'FATAL', code: 'XX000' })
      await withDeadline(client.closed, 3_000, 'a client closed after PGlite died')
    }
    expect(errors).toHaveLength(1)
    await expect(connectRaw(url)).rejects.toThrow(/XX000|PGlite failed/)
  })
})

describe('DbThread', () => {
  it('from the sources, starts its thread from the bundle of them, not from TypeScript through tsx', async () => {
    expect(await bootstrap()).toMatch(/\/db-thread-worker\.mjs"\)$/)
  })

  it("throws Postgres errors as PGlite's DatabaseError, with the fields an in-process PGlite gives", async () => {
    const thread = await openThread()
    const dataDir = await copyTemplate()
    const local = await PGlite.create({ dataDir })
    cleanups.push(async () => {
      await local.close()
      await removeDataDir(dataDir)
    })
    const failing = "select 1 / 0 as x, 'unused'"
    const [inThread, inProcess] = await Promise.all([
      thread.query(failing).catch((error: unknown) => error),
      local.query(failing).catch((error: unknown) => error),
    ])
    expect(inThread).toBeInstanceOf(messages.DatabaseError)
    const fields = (error: unknown) => {
      const { name, message, code, severity, file, routine } = error as messages.DatabaseError
      return { name, message, code, severity, file, routine }
    }
    expect(fields(inThread)).toEqual(fields(inProcess))
    expect(fields(inThread)).toMatchObject({ code: '22012', severity: 'ERROR' })
  })

  it('transaction() commits, rolls back when its callback throws, and holds off raw calls meanwhile', async () => {
    const db = await openThread()
    await db.exec('create table notes (id int primary key)')
    await db.transaction(async (tx) => {
      await tx.exec('insert into notes values (1)')
      await tx.query('insert into notes values ($1)', [2])
    })
    await expect(
      db.transaction(async (tx) => {
        await tx.exec('insert into notes values (3)')
        throw new Error('changed my mind')
      }),
    ).rejects.toThrow('changed my mind')
    const order: string[] = []
    const inside = db.transaction(async (tx) => {
      order.push('transaction started')
      await tx.exec('insert into notes values (4)')
      order.push('transaction done')
    })
    const raw = db.runExclusive(async () => {
      order.push('runExclusive')
    })
    await Promise.all([inside, raw])
    expect(order).toEqual(['transaction started', 'transaction done', 'runExclusive'])
    expect((await db.query<{ id: number }>('select id from notes order by id')).rows.map((r) => r.id)).toEqual([
      1, 2, 4,
    ])
  })

  it('dumpDataDir() gives a tarball another thread starts from (loadDataDir), with its own startParams', async () => {
    const source = await openThread()
    await source.exec("create table seeded (v text); insert into seeded values ('from the dump')")
    const dump = await source.dumpDataDir('none')
    const copy = await DbThread.create({
      loadDataDir: dump,
      startParams: [...PGlite.defaultStartParams, '-c', 'work_mem=8MB'],
    })
    cleanups.push(() => copy.close())
    expect((await copy.query('select v from seeded')).rows).toEqual([{ v: 'from the dump' }])
    expect((await copy.query('show work_mem')).rows).toEqual([{ work_mem: '8MB' }])
  })

  it('prewake(): a call at once, one after the thread stopped looking for it, or none: every call is served', async () => {
    const db = await openThread()
    const one = Buffer.concat([wire.query('select 1'), wire.sync()])
    const answered = async () => {
      expect(Buffer.from(await db.execProtocolRaw(one)).includes(Buffer.from('SELECT 1'))).toBe(true)
    }
    for (let i = 0; i < 100; i++) {
      db.prewake()
      if (i % 4 === 0) await answered()
      // A request answered from the thread's event loop: the thread has left its look for a call by then.
      if (i % 4 === 1) {
        expect((await db.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }])
        await answered()
      }
      if (i % 4 === 2) for (let j = 0; j < 10; j++) db.prewake()
    }
    await answered()
  })

  it('close() ends the worker thread; later calls fail', async () => {
    const db = await openThread()
    expect(db.threadExited).toBe(false)
    expect((await db.query<{ one: number }>('select 1 as one')).rows).toEqual([{ one: 1 }])
    await db.close()
    expect(db.closed).toBe(true)
    // Node's exit event for the thread has fired by the time close() resolves.
    expect(db.threadExited).toBe(true)
    await expect(db.query('select 1')).rejects.toThrow('PGlite is closed')
  })
})

describe('DbThread.end: the last resort for a statement that does not stop', () => {
  it('fails the running call and every later one with the reason, tells onDeath once, and keeps every commit in the data dir', async () => {
    const dataDir = await copyTemplate()
    cleanups.push(() => removeDataDir(dataDir))
    const db = await DbThread.create({ dataDir })
    const deaths: Error[] = []
    db.onDeath = (error) => deaths.push(error)
    await db.query('create table kept (n int)')
    await db.query('insert into kept values (1), (2)')
    let output = 0
    const running = db.execProtocolRawStream(wire.query('DO $$BEGIN LOOP END LOOP; END$$'), {
      onRawData: (chunk) => void (output += chunk.length),
    })
    // Its failure, held from now: it fails while db.end() is awaited.
    const outcome = running.then(
      () => 'resolved',
      (error: unknown) => error,
    )
    await db.end(new Error('a statement did not stop'))
    await expect(withDeadline(outcome, 5_000, 'the running call failing')).resolves.toMatchObject({
      name: 'ExitStatus',
      message: 'a statement did not stop',
    })
    await expect(db.query('select 1')).rejects.toMatchObject({ message: 'a statement did not stop' })
    expect(deaths.map((error) => error.message)).toEqual(['a statement did not stop'])
    expect(output).toBe(0)
    expect(db.threadExited).toBe(true)
    await db.close()
    // Reopened after the thread was ended mid-statement: the committed rows are there.
    const again = await DbThread.create({ dataDir })
    cleanups.push(() => again.close())
    expect((await again.query<{ n: number }>('select n from kept order by n')).rows).toEqual([{ n: 1 }, { n: 2 }])
  })
})
