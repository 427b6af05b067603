// What connecting to a database name does: a client that connects and leaves (pg_isready, psql as root with no
// database, a pool's health check) creates nothing; one that sends a query gets its database, made then and logged
// with its name; with createDatabaseOnConnect off, an unknown name is FATAL 3D000 at connect, as from Postgres.
import { describe, expect, it, onTestFinished } from 'vitest'
import pg from 'pg'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { runProcess, LIBPQ_ENV } from '../../harness/process.ts'
import { BackendError, connectRaw } from '../../harness/raw-client.ts'
import { endClient } from '../../harness/pg.ts'
import { urlOf } from '../helpers/databases.ts'

interface Served {
  dev: DevDb
  created: string[]
}

async function serve(options: DevDbOptions = {}): Promise<Served> {
  const created: string[] = []
  const sink = (record: LogRecord) => {
    if (record.msg === 'database created')
      created.push(`${String(record.fields['database'])}: ${String(record.fields['why'])}`)
  }
  const dev = await startDevDb({ migrations: false, logger: createLogger({ level: 'info', sink }), ...options })
  onTestFinished(() => dev.close())
  return { dev, created }
}

/** Every connection the server admitted is gone (closed and cleaned up). */
async function allClosed(dev: DevDb): Promise<void> {
  await expect.poll(() => dev.server.getStats().activeConnections, { timeout: 10_000 }).toBe(0)
}

describe('connecting to a database name', () => {
  it('pg_isready, a client that only connects, and one that connects and terminates create no database', async () => {
    const { dev, created } = await serve()
    const ready = await runProcess(
      'pg_isready',
      ['-h', '127.0.0.1', '-p', String(dev.port), '-d', 'probe', '-U', 'root'],
      { env: LIBPQ_ENV },
    )
    expect({ code: ready.code, out: ready.stdout.toString().trim() }).toEqual({
      code: 0,
      out: `127.0.0.1:${dev.port} - accepting connections`,
    })
    const raw = await connectRaw(urlOf(dev.url, 'probe'), { params: { user: 'root', database: 'probe' } })
    expect(raw.backendKey).toBeDefined()
    await raw.end()
    const dropped = await connectRaw(urlOf(dev.url, 'root'), { params: { user: 'root' } })
    dropped.destroy()
    const viaPg = new pg.Client(urlOf(dev.url, 'health'))
    await viaPg.connect()
    await viaPg.end()
    await allClosed(dev)
    expect(await Promise.all(['probe', 'root', 'health'].map((name) => dev.databases.exists(name)))).toEqual([
      false,
      false,
      false,
    ])
    expect(created).toEqual([])
  })

  it('the first query opens the database the client named: created then, logged with its name', async () => {
    const { dev, created } = await serve()
    const client = new pg.Client(urlOf(dev.url, 'app_test'))
    await client.connect()
    onTestFinished(() => endClient(client))
    expect(created).toEqual([])
    await client.query('create table t (x int)')
    expect((await client.query('select count(*)::int as n from t')).rows).toEqual([{ n: 0 }])
    expect(created).toEqual(['app_test: a client connected to it'])
    // Its own database: the main one has no table t.
    expect((await dev.db.query(`select to_regclass('t') is null as absent`)).rows).toEqual([{ absent: true }])
    // The startup packet's settings apply in the database that opened later too.
    const tz = new pg.Client({ connectionString: urlOf(dev.url, 'app_test'), options: '-c TimeZone=Asia/Tokyo' })
    await tz.connect()
    onTestFinished(() => endClient(tz))
    expect((await tz.query('show TimeZone')).rows).toEqual([{ TimeZone: 'Asia/Tokyo' }])
  })

  it('without creation on connect, an unknown database is FATAL 3D000 at connect; CREATE DATABASE makes one to connect to', async () => {
    const { dev, created } = await serve({ createDatabaseOnConnect: false })
    const refused = connectRaw(urlOf(dev.url, 'missing'), { params: { user: 'postgres', database: 'missing' } })
    await expect(refused).rejects.toThrow(BackendError)
    await expect(refused).rejects.toMatchObject({
      code: '3D000',
      severity: 'FATAL',
      info: { message: 'database "missing" does not exist' },
    })
    const main = new pg.Client(dev.url)
    await main.connect()
    onTestFinished(() => endClient(main))
    await main.query('create database made')
    const made = new pg.Client(urlOf(dev.url, 'made'))
    await made.connect()
    onTestFinished(() => endClient(made))
    expect((await made.query('select 1 as one')).rows).toEqual([{ one: 1 }])
    expect(created).toEqual(['made: CREATE DATABASE'])
    expect(await dev.databases.exists('missing')).toBe(false)
  })
})
