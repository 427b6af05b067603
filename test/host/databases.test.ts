// A database per name: the `database` a client connects to is its own PGlite (created on first use from the
// migrated template), CREATE DATABASE / DROP DATABASE manage them over the wire, and `select pglite_dev_db.reset()`
// puts one back to its migrated state. Stock pglite-socket serves every name from its one database.
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import postgres from 'postgres'
import { describe, expect, it, onTestFinished } from 'vitest'
import { DbThread } from '../../src/engine/thread.ts'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { endClient } from '../../harness/pg.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { targets } from '../helpers/targets.ts'

const stock = targets.find((target) => target.name === 'stock')!
import { withDeadline } from '../../harness/raw-client.ts'
import { urlOf, useDatabaseTests } from '../helpers/databases.ts'

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))
const DEADLINE_MS = 20_000

const { scratchDataDir } = useDevDbs()
const { devs, clients, sqls, client } = useDatabaseTests()

/** How each `select pglite_dev_db.reset()` was done, from the server log: 'in place' or 'fresh copy'. */
let resets: string[] = []
/** The fields of each 'database created' line of the last server served. */
let created: Array<Record<string, unknown>> = []
/** Each line the last server served logged, in order: its message and, when it made a database, that one's name. */
let logged: string[] = []

async function serve(options: DevDbOptions = {}, level: 'info' | 'debug' = 'info'): Promise<DevDb> {
  resets = []
  created = []
  logged = []
  const sink = (record: LogRecord) => {
    if (record.msg === 'database reset') resets.push(String(record.fields['how']))
    if (record.msg === 'database created') created.push(record.fields)
    logged.push(
      record.msg === 'database created' ? `database created: ${String(record.fields['database'])}` : record.msg,
    )
  }
  const dev = await startDevDb({ migrations: MIGRATIONS, logger: createLogger({ level, sink }), ...options })
  devs.push(dev)
  return dev
}

function js(url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
  const sql = postgres(url, { max: 1, onnotice: () => {}, ...options })
  sqls.push(sql)
  return sql
}

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: { code?: string }) => error.code ?? String(error),
  )

describe('a database per name', () => {
  for (const name of ['stock', 'ours'] as const) {
    it(`${name}: a table made in one database is ${name === 'stock' ? 'wrongly visible' : 'not visible'} in another`, async () => {
      const server = name === 'stock' ? await stock.start() : await serve()
      try {
        const a = await client(urlOf(server.url, 'worker_a'))
        const b = await client(urlOf(server.url, 'worker_b'))
        await a.query('create table only_in_a (x int)')
        const seen = await b.query(`select to_regclass('only_in_a') is not null as seen`)
        // Stock has one database: every name reaches it, so worker_b sees worker_a's table.
        expect(seen.rows[0].seen).toBe(name === 'stock')
      } finally {
        await Promise.all(clients.splice(0).map((c) => endClient(c)))
        await server.close()
      }
    })
  }

  it('each new database starts migrated, and rows stay in the database that wrote them', async () => {
    const dev = await serve()
    const one = await client(urlOf(dev.url, 'test_1'))
    const two = await client(urlOf(dev.url, 'test_2'))
    await one.query(`insert into customers (email, name) values ('a@example.com', 'A')`)
    expect((await one.query('select count(*)::int as n from customers')).rows[0].n).toBe(1)
    expect((await two.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)
    const main = await client(dev.url)
    expect((await main.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)
    expect(dev.databases.instance('test_1')).not.toBeNull()
  })

  // PGlite reports search_path again, unchanged, after a statement that narrows it while it runs (CREATE TABLE with a
  // key, TRUNCATE), where PostgreSQL reports only a change; the server leaves such repeats out. A spare is renamed
  // when taken, after its session was made ready: that must not make the server forget what PGlite reported.
  it.each([
    ['in a worker thread', {}],
    ["in the server's thread", { databaseThreads: false }],
  ] as const)('a database made from the spare, %s, reports only what its client changed', async (_, options) => {
    const dev = await serve(options)
    await client(urlOf(dev.url, 'before_spare'))
    await dev.databases.spareLoaded()
    const reports: string[] = []
    const own = new pg.Client({ connectionString: urlOf(dev.url, 'from_spare') })
    own.connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) =>
      reports.push(`${m.parameterName}=${m.parameterValue}`),
    )
    own.on('error', () => {})
    clients.push(own)
    await own.connect()
    reports.length = 0
    // The database is made at its first query, from the spare.
    await own.query('create table from_spare_t (id serial primary key)')
    await own.query('truncate from_spare_t')
    expect(created.find((fields) => fields['database'] === 'from_spare')?.['spare']).toBe(true)
    expect(reports).toEqual([])
    await own.query("set application_name = 'mine'")
    expect(reports).toEqual(['application_name=mine'])
  })

  it('workers that connect to new databases at the same moment each get their own', async () => {
    const dev = await serve()
    // The first database makes the server load a spare; the four then arrive with it ready, and only one may get it.
    await client(urlOf(dev.url, 'w_first'))
    await dev.databases.spareLoaded()
    const names = ['w_0', 'w_1', 'w_2', 'w_3']
    const workers = await Promise.all(names.map((name) => client(urlOf(dev.url, name))))
    await Promise.all(workers.map((worker, i) => worker.query(`create table mine_${i} (x int)`)))
    for (const [i, worker] of workers.entries()) {
      const tables = await worker.query(`select tablename from pg_tables where tablename like 'mine\\_%' order by 1`)
      expect(tables.rows).toEqual([{ tablename: `mine_${i}` }])
    }
    expect(new Set(names.map((name) => dev.databases.instance(name))).size).toBe(4)
    // The one loaded ahead went to one of them; another may take the next spare while it loads.
    expect(
      created.filter((fields) => names.includes(String(fields['database'])) && fields['spare'] === true).length,
    ).toBeGreaterThanOrEqual(1)
  })

  it('with spareDatabases, that many wait loaded: workers asking at once each get one of them', async () => {
    const dev = await serve({ spareDatabases: 3 })
    await dev.databases.spareLoaded()
    // The log says when all are loaded (a runner that waits for them, the bench's CI-shaped suite, reads it).
    expect(logged.filter((message) => message === 'databases loaded ahead')).toHaveLength(1)
    const names = ['s_0', 's_1', 's_2']
    const workers = await Promise.all(names.map((name) => client(urlOf(dev.url, name))))
    const made = created.filter((fields) => names.includes(String(fields['database'])))
    expect(made.map((fields) => [fields['database'], fields['spare']]).sort()).toEqual(
      names.map((name) => [name, true]),
    )
    await Promise.all(workers.map((worker, i) => worker.query(`create table mine_${i} (x int)`)))
    for (const [i, worker] of workers.entries()) {
      const tables = await worker.query(
        `select current_database() as db, tablename from pg_tables where tablename like 'mine\\_%'`,
      )
      expect(tables.rows).toEqual([{ db: names[i], tablename: `mine_${i}` }])
    }
  })

  // A spare's session is made ready while it waits (its startup messages, its database's settings): its first client
  // still gets its own settings, and an ALTER DATABASE ... SET made later reaches the next client, as on Postgres.
  it("a database made from a spare gives its clients their own settings and the database's later ones", async () => {
    const dev = await serve({ spareDatabases: 1 })
    await dev.databases.spareLoaded()
    const url = urlOf(dev.url, 'ready_1')
    const first = js(url, { connection: { application_name: 'first client', search_path: 'pg_catalog, public' } })
    const [shown] =
      await first`select current_setting('application_name') as app, current_setting('search_path') as path, current_setting('work_mem') as mem`
    expect(created.find((fields) => fields['database'] === 'ready_1')?.['spare']).toBe(true)
    expect(shown).toEqual({ app: 'first client', path: 'pg_catalog, public', mem: '4MB' })
    expect(first.parameters.application_name).toBe('first client')
    await first`alter database ready_1 set work_mem = '7MB'`
    const [next] = await js(
      url,
    )`select current_setting('application_name') as app, current_setting('search_path') as path, current_setting('work_mem') as mem`
    expect(next).toEqual({ app: 'postgres.js', path: '"$user", public', mem: '7MB' })
  })

  // A spare takes a core while it loads, which clients at work want: one taken is replaced once they are quiet.
  it('loads a spare to replace one taken only once clients are quiet, not while one is at work', async () => {
    const dev = await serve({ spareDatabases: 1 }, 'debug')
    await dev.databases.spareLoaded()
    const busy = await client(urlOf(dev.url, 'q_busy'))
    await dev.databases.spareLoaded()
    let takenAt = 0
    // Queries one after another, until 2.5 s after the second client took the spare (longer than the second of quiet
    // a replacement also waits for): the server is never quiet.
    const work = (async () => {
      while (takenAt === 0 || performance.now() - takenAt < 2_500) await busy.query('select 1')
    })()
    const since = logged.length
    await client(urlOf(dev.url, 'q_next'))
    takenAt = performance.now()
    await work
    expect(created.find((fields) => fields['database'] === 'q_next')?.['spare']).toBe(true)
    expect(logged.slice(since)).not.toContain('loading a database ahead')
    await dev.databases.spareLoaded()
    expect(logged.slice(since)).toContain('loading a database ahead')
  })

  it('a transaction open in one database does not hold up another database', async () => {
    // A shared queue would make the second database wait for the first's transaction: 55P03 after 3 s.
    const dev = await serve({ queueTimeoutMs: 3_000 })
    const holder = await client(urlOf(dev.url, 'busy'))
    const other = await client(urlOf(dev.url, 'free'))
    await holder.query('begin')
    await holder.query(`insert into customers (email, name) values ('h@example.com', 'H')`)
    expect((await other.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)
    await holder.query('commit')
  })

  it('a database made by a client is kept beside the data dir, and is there after a restart', async () => {
    const dataDir = await scratchDataDir()
    let dev = await serve({ dataDir })
    const writer = await client(urlOf(dev.url, 'kept'))
    await writer.query(`insert into customers (email, name) values ('k@example.com', 'K')`)
    await endClient(clients.pop()!)
    await dev.close()
    expect(await readdir(`${dataDir}-databases`)).toEqual(['kept'])
    dev = await serve({ dataDir })
    const reader = await client(urlOf(dev.url, 'kept'))
    expect((await reader.query('select email from customers')).rows).toEqual([{ email: 'k@example.com' }])
    const admin = await client(dev.url)
    await endClient(clients.splice(clients.indexOf(reader), 1)[0]!)
    await admin.query('drop database kept')
    expect(await readdir(`${dataDir}-databases`)).toEqual([])
    await dev.close()
    await import('node:fs/promises').then((fs) => fs.rm(`${dataDir}-databases`, { recursive: true, force: true }))
  })
})

describe('databases in worker threads', () => {
  it('every database runs in a worker thread of its own, the main one too, which resets and drops like any', async () => {
    const dev = await serve()
    const first = await client(urlOf(dev.url, 'first'))
    const threaded = await client(urlOf(dev.url, 'threaded'))
    const sql = js(urlOf(dev.url, 'threaded'), { prepare: true })
    await client(urlOf(dev.url, 'also_threaded'))
    expect(['postgres', 'first', 'threaded', 'also_threaded'].map((name) => dev.databases.inThread(name))).toEqual([
      true,
      true,
      true,
      true,
    ])
    expect(dev.databases.instance('threaded')).toBeInstanceOf(DbThread)

    await first.query(`insert into customers (email, name) values ('s@example.com', 'S')`)
    await threaded.query(`insert into customers (email, name) values ('t1@example.com', 'T'), ('t2@example.com', 'T')`)
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 2 }])
    expect((await first.query('select count(*)::int as n from customers')).rows[0].n).toBe(1)

    // In place: the template's rows go back through the thread with COPY ... '/dev/blob'.
    await threaded.query('select pglite_dev_db.reset()')
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
    expect((await threaded.query('select count(*)::int as n from drizzle.__drizzle_migrations')).rows[0].n).toBe(1)
    // After DDL: a fresh copy, in a thread again; postgres.js's prepared statement is made again there.
    await threaded.query('create table made_since (x int)')
    await threaded.query('select pglite_dev_db.reset()')
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
    expect(resets).toEqual(['in place', 'fresh copy'])
    expect(dev.databases.inThread('threaded')).toBe(true)

    const doomed = dev.databases.instance('threaded') as DbThread
    await endClient(clients.splice(clients.indexOf(threaded), 1)[0]!)
    await sql.end({ timeout: 5 })
    await first.query('drop database threaded')
    expect(dev.databases.instance('threaded')).toBeNull()
    expect(doomed.threadExited).toBe(true)
  })

  it('a database in a thread is kept in the data dir and opened in a thread again after a restart', async () => {
    const dataDir = await scratchDataDir()
    let dev = await serve({ dataDir })
    await client(urlOf(dev.url, 'first'))
    const writer = await client(urlOf(dev.url, 'second'))
    expect(dev.databases.inThread('second')).toBe(true)
    await writer.query(`insert into customers (email, name) values ('k@example.com', 'K')`)
    await Promise.all(clients.splice(0).map((c) => endClient(c)))
    await dev.close()
    dev = await serve({ dataDir })
    await client(urlOf(dev.url, 'first'))
    const reader = await client(urlOf(dev.url, 'second'))
    expect(dev.databases.inThread('second')).toBe(true)
    expect((await reader.query('select email from customers')).rows).toEqual([{ email: 'k@example.com' }])
    await Promise.all(clients.splice(0).map((c) => endClient(c)))
    await dev.close()
    await import('node:fs/promises').then((fs) => fs.rm(`${dataDir}-databases`, { recursive: true, force: true }))
  })

  it("with databaseThreads: false every database runs in the server's thread", async () => {
    const dev = await serve({ databaseThreads: false })
    for (const name of ['one', 'two', 'three']) await (await client(urlOf(dev.url, name))).query('select 1')
    expect(['one', 'two', 'three'].map((name) => dev.databases.inThread(name))).toEqual([false, false, false])
  })
})

describe('CREATE DATABASE and DROP DATABASE', () => {
  it('work over the simple protocol with the errors Postgres gives', async () => {
    const dev = await serve()
    const admin = await client(dev.url)
    expect((await admin.query('create database made')).command).toBe('CREATE')
    expect(await codeOf(admin.query('create database made'))).toBe('42P04')
    const user = await client(urlOf(dev.url, 'made'))
    expect((await user.query('select count(*)::int as n from products')).rows[0].n).toBe(0)
    expect(await codeOf(admin.query('drop database made'))).toBe('55006')
    expect(await codeOf(user.query('drop database made'))).toBe('55006')
    expect(await codeOf(admin.query('drop database missing'))).toBe('3D000')
    const notices: string[] = []
    admin.on('notice', (notice) => notices.push(notice.message ?? ''))
    await admin.query('drop database if exists missing')
    expect(notices).toEqual(['database "missing" does not exist, skipping'])
    expect(await codeOf(admin.query('begin; create database in_tx; commit'))).toBe('25001')
    await admin.query('rollback')
    // The main database: not while connected to it (as Postgres), and not from elsewhere either (it is the data dir).
    expect(await codeOf(admin.query('drop database postgres'))).toBe('55006')
    expect(await codeOf(user.query('drop database postgres'))).toBe('0A000')
  })

  // In memory the first copy boots, and its image is taken; with a data dir the image is taken from a boot in memory,
  // and every copy starts from it, so that the rows each copy holds show whether the image was made again.
  it.each(['in memory', 'with a data dir'])(
    'copies of a TEMPLATE start from one image of it, made again once the template is used (%s)',
    async (where) => {
      const dev = await serve({
        migrations: false,
        ...(where === 'with a data dir' ? { dataDir: await scratchDataDir() } : {}),
      })
      const admin = await client(dev.url)
      await admin.query('create database base')
      const base = await client(urlOf(dev.url, 'base'))
      await base.query(
        'create table kept (a int); insert into kept values (1); alter database base with is_template = true',
      )
      await endClient(base)
      const rows = async (database: string) => {
        const c = await client(urlOf(dev.url, database))
        const { rows } = await c.query('select current_database() as name, array_agg(a order by a) as a from kept')
        await endClient(c)
        return rows[0]
      }
      const copy = async (name: string) => {
        await admin.query(`create database ${name} template base`)
        return created.find((fields) => fields['database'] === name)?.['image'] === true ? 'image' : 'boot'
      }
      const first = where === 'in memory' ? 'boot' : 'image'
      expect([await copy('copy_1'), await copy('copy_2'), await copy('copy_3')]).toEqual([first, 'image', 'image'])
      // A copy's changes are its own; the template's and the other copies' stay.
      const two = await client(urlOf(dev.url, 'copy_2'))
      await two.query('insert into kept values (2)')
      await endClient(two)
      expect([await rows('copy_1'), await rows('copy_2'), await rows('copy_3')]).toEqual([
        { name: 'copy_1', a: [1] },
        { name: 'copy_2', a: [1, 2] },
        { name: 'copy_3', a: [1] },
      ])
      // Any call into the template may have changed its files: the next copy starts from them (a boot, or with a data dir
      // an image made of them), and so does the one after another change; the one after that starts from its image.
      const write = async (a: number) => {
        const again = await client(urlOf(dev.url, 'base'))
        await again.query(`insert into kept values (${a})`)
        await endClient(again)
      }
      await write(3)
      expect(await copy('copy_4')).toBe(first)
      await write(4)
      expect([await copy('copy_5'), await copy('copy_6')]).toEqual([first, 'image'])
      expect([await rows('copy_4'), await rows('copy_5'), await rows('copy_6')]).toEqual([
        { name: 'copy_4', a: [1, 3] },
        { name: 'copy_5', a: [1, 3, 4] },
        { name: 'copy_6', a: [1, 3, 4] },
      ])
      // Dropped and made again under the same name, it is another template.
      await admin.query('alter database base with is_template = false')
      await admin.query('drop database base')
      await admin.query('create database base')
      const remade = await client(urlOf(dev.url, 'base'))
      await remade.query('create table kept (a int); insert into kept values (9)')
      await endClient(remade)
      expect(await copy('copy_7')).toBe(first)
      expect(await rows('copy_7')).toEqual({ name: 'copy_7', a: [9] })
    },
  )

  it('DROP DATABASE WITH (FORCE) ends the connections to it with 57P01', async () => {
    const dev = await serve()
    const admin = await client(dev.url)
    const user = await client(urlOf(dev.url, 'doomed'))
    const ended = new Promise<string>((resolve) =>
      user.once('error', (error: Error & { code?: string }) => resolve(error.code ?? error.message)),
    )
    await admin.query('drop database doomed with (force)')
    expect(await withDeadline(ended, DEADLINE_MS, 'the dropped database client told')).toBe('57P01')
    expect(dev.databases.instance('doomed')).toBeNull()
    // The name can be used again: a fresh database, created on first use.
    const again = await client(urlOf(dev.url, 'doomed'))
    expect((await again.query('select 1 as one')).rows).toEqual([{ one: 1 }])
  })

  it('work over the extended protocol (postgres.js), named statements included', async () => {
    const dev = await serve()
    const sql = js(dev.url)
    expect((await sql`create database from_js`).command).toBe('CREATE DATABASE')
    expect(await codeOf(sql`create database from_js`)).toBe('42P04')
    const user = js(urlOf(dev.url, 'from_js'))
    expect(await user`select count(*)::int as n from orders`).toEqual([{ n: 0 }])
    await user.end()
    expect((await sql`drop database from_js`).command).toBe('DROP DATABASE')
    expect(await codeOf(sql`drop database from_js`)).toBe('3D000')
    // Inside a transaction Postgres refuses it, and so does the server.
    expect(await codeOf(sql.begin((tx) => tx`create database in_tx`))).toBe('25001')
  })

  it('answer a prepared CREATE/DROP DATABASE with its own command tag, named statement or unnamed', async () => {
    const dev = await serve()
    const named = js(dev.url)
    const unnamed = js(dev.url, { prepare: false })
    for (const round of [1, 2]) {
      expect((await named`create database tagged`).command, `round ${round}`).toBe('CREATE DATABASE')
      expect((await named`select 1 as one`).command).toBe('SELECT')
      expect((await unnamed`drop database tagged`).command, `round ${round}`).toBe('DROP DATABASE')
      expect((await unnamed`drop database if exists tagged`).command).toBe('DROP DATABASE')
    }
    expect(await named`select 2 as two`).toEqual([{ two: 2 }])
  })
})

describe('select pglite_dev_db.reset()', () => {
  it('puts the database back to its migrated state; other clients keep their prepared statements', async () => {
    const dev = await serve()
    const url = urlOf(dev.url, 'resettable')
    const caller = await client(url)
    const other = js(url, { prepare: true })
    const count = () => other`select count(*)::int as n from customers`
    await caller.query(`insert into customers (email, name) values ('r@example.com', 'R')`)
    expect(await count()).toEqual([{ n: 1 }])
    await caller.query('create table scratch_table (x int)')
    const result = await caller.query('select pglite_dev_db.reset()')
    expect(result.rows).toEqual([{ reset: 'requested' }])
    // The same statement again: postgres.js binds its prepared statement, which was made again after the reset.
    expect(await count()).toEqual([{ n: 0 }])
    expect((await caller.query(`select to_regclass('scratch_table') as t`)).rows).toEqual([{ t: null }])
    // A table made since the migrations: the reset made a fresh copy rather than emptying tables in place.
    expect(resets).toEqual(['fresh copy'])
    // Another database is untouched.
    const main = await client(dev.url)
    await main.query(`insert into customers (email, name) values ('m@example.com', 'M')`)
    await caller.query('select pglite_dev_db.reset()')
    expect((await main.query('select count(*)::int as n from customers')).rows[0].n).toBe(1)
  })

  it('is undone by ROLLBACK and done at COMMIT, and works as a postgres.js prepared statement', async () => {
    const dev = await serve()
    const url = urlOf(dev.url, 'tx_reset')
    const caller = await client(url)
    await caller.query(`insert into customers (email, name) values ('t@example.com', 'T')`)
    await caller.query('begin')
    await caller.query('select pglite_dev_db.reset()')
    await caller.query('rollback')
    expect((await caller.query('select count(*)::int as n from customers')).rows[0].n).toBe(1)
    await caller.query('begin')
    await caller.query('select pglite_dev_db.reset()')
    // Still the old data inside the transaction: the reset happens when it ends.
    expect((await caller.query('select count(*)::int as n from customers')).rows[0].n).toBe(1)
    await caller.query('commit')
    expect((await caller.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)

    const sql = js(url, { prepare: true })
    for (let round = 0; round < 2; round++) {
      await sql`insert into customers (email, name) values (${`js${round}@example.com`}, 'J')`
      await sql`select pglite_dev_db.reset()`
      expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
    }
    // Rows only: every reset emptied the tables in place; the drizzle bookkeeping row the template has is back.
    expect(resets).toEqual(['in place', 'in place', 'in place'])
    expect((await caller.query('select count(*)::int as n from drizzle.__drizzle_migrations')).rows[0].n).toBe(1)
  })

  it(
    'resets in place from what is kept with the template: read when the template is built, or once for an older one',
    { timeout: 120_000 },
    async () => {
      const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-baseline-'))
      onTestFinished(() => rm(cacheDir, { recursive: true, force: true }))
      const resetOnce = async (dev: DevDb, database: string) => {
        const caller = await client(urlOf(dev.url, database))
        await caller.query(`insert into customers (email, name) values ('k@example.com', 'K')`)
        await caller.query('select pglite_dev_db.reset()')
        expect((await caller.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)
        expect((await caller.query('select count(*)::int as n from drizzle.__drizzle_migrations')).rows[0].n).toBe(1)
      }
      // Built now: the template holds what a reset puts back before any server reads it from a database.
      const built = await serve({ cacheDir, spareDatabases: 0 })
      // The migrated one (a cache can hold the template without migrations beside it).
      const templates = (await readdir(cacheDir)).filter((name) => name.startsWith('template-'))
      const baselines = await Promise.all(
        templates.map((name) => readFile(path.join(cacheDir, name, 'baseline.json'), 'utf8')),
      )
      const kept = path.join(
        cacheDir,
        templates[baselines.findIndex((text) => text.includes('customers'))]!,
        'baseline.json',
      )
      expect((await stat(kept)).size).toBeGreaterThan(0)
      await resetOnce(built, 'kept_1')
      expect(resets).toEqual(['in place'])
      await built.close()
      // A template built before it was kept: the first new database gives it, and it is kept from then on.
      await rm(kept)
      const older = await serve({ cacheDir, spareDatabases: 0 })
      await resetOnce(older, 'kept_2')
      expect(resets).toEqual(['in place'])
      expect((await stat(kept)).size).toBeGreaterThan(0)
      await older.close()
      // What is kept is what resets compare with: a fingerprint no database has makes every reset a fresh copy.
      await writeFile(
        kept,
        JSON.stringify({ ...JSON.parse(await readFile(kept, 'utf8')), fingerprint: 'not this schema' }),
      )
      const tampered = await serve({ cacheDir, spareDatabases: 0 })
      await resetOnce(tampered, 'kept_3')
      expect(resets).toEqual(['fresh copy'])
    },
  )

  it('a statement prepared while the reset waits to commit is made once, by its own Parse', async () => {
    // A pool's second connection prepares a statement while the first one's reset is pending: a reset by fresh copy
    // makes every client's statements again in it, but not one whose Parse has not run yet (that would be 42P05).
    const dev = await serve()
    const url = urlOf(dev.url, 'prepared_meanwhile')
    const resetter = await client(url)
    const preparer = await client(url)
    // A table made since the migrations: the reset cannot be done in place.
    await resetter.query('create table made_since (x int)')
    await resetter.query('begin')
    await resetter.query('select pglite_dev_db.reset()')
    const prepared = preparer.query({ name: 'count_customers', text: 'select count(*)::int as n from customers' })
    await expect.poll(() => dev.server.getStats().waitingClients, { timeout: 5_000 }).toBe(1)
    await resetter.query('commit')
    expect((await prepared).rows).toEqual([{ n: 0 }])
    expect(
      (await preparer.query({ name: 'count_customers', text: 'select count(*)::int as n from customers' })).rows,
    ).toEqual([{ n: 0 }])
    expect(resets).toEqual(['fresh copy'])
  })

  it("after a reset by fresh copy, another client's prepared statement on a table made again works, as Postgres plans it again", async () => {
    const dev = await serve()
    const url = urlOf(dev.url, 'made_again')
    const tester = await client(url)
    const reader = await client(url)
    await tester.query('create table things (id int)')
    await tester.query('insert into things values (1)')
    const count = { name: 'count_things', text: 'select count(*)::int as n from things' }
    expect((await reader.query(count)).rows).toEqual([{ n: 1 }])
    // The table is not in the migrated schema: the reset swaps in a fresh copy, where the statement cannot be made.
    await tester.query('select pglite_dev_db.reset()')
    await expect(reader.query(count)).rejects.toMatchObject({ code: expect.stringMatching(/^(26000|42P01)$/) })
    // The test makes its table again, as its setup would: the statement works again.
    await tester.query('create table things (id int)')
    await tester.query('insert into things values (1), (2)')
    expect((await reader.query(count)).rows).toEqual([{ n: 2 }])
    expect(resets).toEqual(['fresh copy'])
  })

  it('works on the main database kept in a data dir', async () => {
    const dataDir = await scratchDataDir()
    const dev = await serve({ dataDir })
    const caller = await client(dev.url)
    await caller.query(`insert into customers (email, name) values ('d@example.com', 'D')`)
    await caller.query('select pglite_dev_db.reset()')
    expect((await caller.query('select count(*)::int as n from customers')).rows[0].n).toBe(0)
    await caller.query(`insert into customers (email, name) values ('after@example.com', 'A')`)
    await endClient(clients.pop()!)
    await dev.close()
    const again = await serve({ dataDir })
    const reader = await client(again.url)
    expect((await reader.query('select email from customers')).rows).toEqual([{ email: 'after@example.com' }])
    expect(path.basename(dataDir)).not.toBe('')
  })
})
