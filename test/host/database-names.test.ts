// Each database carries the name a client knows it by: current_database(), information_schema and pg_database say
// it, though each is a PGlite cluster of its own. CREATE DATABASE ... TEMPLATE copies the database it names (as
// graphile-worker's tests do after ALTER DATABASE ... WITH is_template = true), with PostgreSQL's errors for a
// template that does not exist or that another client uses. The same steps run against PostgreSQL 15 when
// PG_ORACLE_URL is set.
import { rm } from 'node:fs/promises'
import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import { describe, expect, it, onTestFinished } from 'vitest'
import { endClient } from '../../harness/pg.ts'
import { startForTest, useDevDbs } from '../helpers/dev-db.ts'

/** The server's URL with another database name. */
const urlOf = (base: string, database: string): string => base.replace(/\/[^/?]*(\?.*)?$/, `/${database}`)

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url })
  c.on('error', () => {})
  await c.connect()
  onTestFinished(() => endClient(c))
  return c
}

const errorOf = (promise: Promise<unknown>) =>
  promise.then(
    () => null,
    (error: { code?: string; message?: string; detail?: string }) => ({
      code: error.code,
      message: error.message,
      ...(error.detail ? { detail: error.detail } : {}),
    }),
  )

/** What a client of `database` is told its database is called, three ways. */
async function namesSeen(url: string, database: string): Promise<unknown> {
  const c = await client(urlOf(url, database))
  const { rows } = await c.query(
    `select current_database() as current, (select catalog_name from information_schema.information_schema_catalog_name) as catalog,
      (select count(*)::int from pg_database where datname = current_database()) as in_pg_database`,
  )
  await endClient(c)
  return rows[0]
}

const targets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await startForTest({})).url]]
const oracleUrl = process.env.PG_ORACLE_URL
if (oracleUrl) targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => oracleUrl])

describe.each(targets)('database names: %s', (_, serve) => {
  /** Names of this run's own (the oracle is shared), dropped after the test. */
  function names(url: string, ...bases: string[]): string[] {
    const suffix = `${process.pid}_${Date.now() % 100_000}`
    const made = bases.map((base) => `${base}_${suffix}`)
    onTestFinished(async () => {
      const admin = await client(url)
      for (const name of made) {
        // 3D000: the test ended before it made this one.
        await admin.query(`alter database ${name} with is_template = false`).catch((error: { code?: string }) => {
          if (error.code !== '3D000') throw error
        })
        await admin.query(`drop database if exists ${name}`)
      }
    })
    return made
  }

  it('current_database(), information_schema and pg_database name the database; TEMPLATE copies the one it names', async () => {
    const url = await serve()
    const [source, copy, other] = names(url, 'names_source', 'names_copy', 'names_other')
    const admin = await client(url)
    await admin.query(`create database ${source}`)
    expect(await namesSeen(url, source!)).toEqual({ current: source, catalog: source, in_pg_database: 1 })
    const setup = await client(urlOf(url, source!))
    await setup.query('create table kept (a int); insert into kept values (7)')
    // graphile-worker's setup, connected to the database it marks.
    await setup.query(`alter database ${source} with is_template = true`)
    await endClient(setup)

    await admin.query(`create database ${copy} with template = ${source}`)
    const copied = await client(urlOf(url, copy!))
    expect((await copied.query('select current_database() as name, a from kept')).rows).toEqual([{ name: copy, a: 7 }])
    expect(
      (await copied.query('select datistemplate from pg_database where datname = current_database()')).rows,
    ).toEqual([{ datistemplate: false }])
    expect(await errorOf(admin.query(`create database ${other} template names_missing`))).toEqual({
      code: '3D000',
      message: 'template database "names_missing" does not exist',
    })
    expect(await errorOf(admin.query(`create database ${copy} template ${source}`))).toEqual({
      code: '42P04',
      message: `database "${copy}" already exists`,
    })
    expect(await namesSeen(url, 'postgres')).toEqual({ current: 'postgres', catalog: 'postgres', in_pg_database: 1 })
  })

  it('CREATE DATABASE makes UTF8 by any of its names; another encoding or a wrong name is refused, as Postgres refuses it', async () => {
    const url = await serve()
    const [utf8, named, coded, other] = names(url, 'enc_utf8', 'enc_named', 'enc_coded', 'enc_other')
    const admin = await client(url)
    await admin.query(`create database ${utf8} encoding 'UTF-8' template template0`)
    await admin.query(`create database ${named} with encoding = unicode`)
    // Prepared (a named statement), the same.
    await admin.query({ name: 'create_coded', text: `create database ${coded} encoding 6` })
    for (const name of [utf8, named, coded]) {
      const c = await client(urlOf(url, name!))
      expect(
        (
          await c.query(
            'select pg_encoding_to_char(encoding) as encoding from pg_database where datname = current_database()',
          )
        ).rows,
      ).toEqual([{ encoding: 'UTF8' }])
      await endClient(c)
    }
    expect(await errorOf(admin.query(`create database ${other} encoding 'no_such'`))).toEqual({
      code: '42704',
      message: 'no_such is not a valid encoding name',
    })
    expect(await errorOf(admin.query(`create database ${other} encoding 99`))).toEqual({
      code: '42704',
      message: '99 is not a valid encoding code',
    })
    expect(await errorOf(admin.query(`create database ${other} encoding 'SJIS'`))).toEqual({
      code: '42704',
      message: 'SJIS is not a valid encoding name',
    })
    // Postgres refuses LATIN1 on a UTF-8 locale (Debian's default, and what PGlite's template has): compared there.
    const { rows } = await admin.query<{ ctype: string }>(
      'select datctype as ctype from pg_database where datname = current_database()',
    )
    if (/utf-?8/i.test(rows[0]!.ctype)) {
      expect(await errorOf(admin.query(`create database ${other} encoding 'LATIN1' template template0`))).toMatchObject(
        {
          code: '22023',
          message: `encoding "LATIN1" does not match locale "${rows[0]!.ctype}"`,
          detail: expect.stringMatching(/^The chosen LC_CTYPE setting requires encoding "UTF8"/),
        },
      )
    }
    // None of those made it.
    await admin.query(`create database ${other}`)
  })

  it('ALTER DATABASE of another database, as a Query or prepared, changes that database; a missing one is 3D000', async () => {
    const url = await serve()
    const [marked] = names(url, 'names_marked')
    const admin = await client(url)
    await admin.query(`create database ${marked}`)
    const isTemplate = async (): Promise<unknown> => {
      const inside = await client(urlOf(url, marked!))
      const { rows } = await inside.query('select datistemplate from pg_database where datname = current_database()')
      await endClient(inside)
      return rows[0]
    }
    // graphile-worker's setup, from the database it is connected to.
    expect((await admin.query(`alter database ${marked} with is_template = true`)).command).toBe('ALTER')
    expect(await isTemplate()).toEqual({ datistemplate: true })
    // Prepared (Parse, Bind, Execute), as drivers that prepare everything send it.
    await admin.query({ name: 'unmark', text: `alter database ${marked} with is_template = false` })
    expect(await isTemplate()).toEqual({ datistemplate: false })
    expect(await errorOf(admin.query('alter database names_missing with is_template = true'))).toEqual({
      code: '3D000',
      message: 'database "names_missing" does not exist',
    })
  })

  it('a template another client is connected to is refused with 55006 after waiting 5 s for it to leave', async () => {
    const url = await serve()
    const [source, copy] = names(url, 'busy_source', 'busy_copy')
    const admin = await client(url)
    await admin.query(`create database ${source}`)
    const user = await client(urlOf(url, source!))
    await user.query('select 1')
    const started = performance.now()
    expect(await errorOf(admin.query(`create database ${copy} template ${source}`))).toEqual({
      code: '55006',
      message: `source database "${source}" is being accessed by other users`,
      detail: 'There is 1 other session using the database.',
    })
    expect(performance.now() - started).toBeGreaterThan(4_500)
    await endClient(user)
  })
})

describe('ALTER DATABASE of another database on pglite-dev-db', () => {
  it("waits for that database's session, held by a client in a transaction, and gives up with 55P03 after 5 s", async () => {
    const { url } = await startForTest({})
    const admin = await client(url)
    await admin.query('create database busy_alter')
    const holder = await client(urlOf(url, 'busy_alter'))
    await holder.query('begin')
    const started = performance.now()
    expect(await errorOf(admin.query('alter database busy_alter with is_template = true'))).toMatchObject({
      code: '55P03',
    })
    expect(performance.now() - started).toBeGreaterThan(4_500)
    // Once the holder is at rest the same statement runs.
    await holder.query('commit')
    expect((await admin.query('alter database busy_alter with is_template = true')).command).toBe('ALTER')
    expect(
      (await holder.query('select datistemplate from pg_database where datname = current_database()')).rows,
    ).toEqual([{ datistemplate: true }])
  })
})

describe('database names on disk', () => {
  const { scratchDataDir } = useDevDbs()

  it('a database kept in the data dir has its name after a restart, one an older server made (named postgres) too', async () => {
    const dataDir = await scratchDataDir()
    onTestFinished(() => rm(`${dataDir}-databases`, { recursive: true, force: true }))
    let dev = await startForTest({ dataDir })
    const writer = await client(urlOf(dev.url, 'kept'))
    await writer.query('create table rows_kept (a int); insert into rows_kept values (1)')
    await endClient(writer)
    await dev.close()
    dev = await startForTest({ dataDir })
    const seen = async (): Promise<unknown> =>
      (await (await client(urlOf(dev.url, 'kept'))).query('select current_database() as name, a from rows_kept')).rows
    expect(await seen()).toEqual([{ name: 'kept', a: 1 }])
    await dev.close()

    // What a server before names were kept left: the cluster's database called postgres.
    const older = await PGlite.create({ dataDir: `${dataDir}-databases/kept`, database: 'kept' })
    await older.exec(`update pg_database set datname = 'postgres' where datname = 'kept'`)
    await older.close()
    dev = await startForTest({ dataDir })
    expect(await seen()).toEqual([{ name: 'kept', a: 1 }])
  })
})
