// A client encoding other than UTF8: PGlite converts no text out of UTF8, and its first conversion lost the database
// for every client of it (Windows' psql asks for WIN1252, and its first query did so). Such a client is now refused
// at startup, as Postgres refuses a conversion it lacks (22023); UTF8 by any of its names and SQL_ASCII are served.
// At run time the conversions PGlite lacks are gone from the catalog, so Postgres itself refuses them.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { LIBPQ_ENV, runProcess } from '../../harness/process.ts'

const { start, connect } = useDevDbs()
const RESET_DEADLINE_MS = 40_000

describe('client_encoding and conversions', () => {
  it('refuses WIN1252 and LATIN1 with 22023; the database and its other clients carry on', async () => {
    const dev = await start()
    const bystander = await connect(dev.url)
    for (const encoding of ['WIN1252', 'latin1']) {
      await expect(connect(dev.url, { client_encoding: encoding })).rejects.toThrow(
        `invalid value for parameter "client_encoding": "${encoding}"`,
      )
    }
    const target = ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(dev.port), '-U', 'postgres', '-d', 'postgres']
    const psql = await runProcess('psql', [...target, '-c', "select 'é'"], {
      env: { ...LIBPQ_ENV, PGCLIENTENCODING: 'WIN1252', PGSSLMODE: 'disable' },
    })
    expect(psql.code).toBe(2)
    expect(psql.stderr).toContain('FATAL:  invalid value for parameter "client_encoding": "WIN1252"')
    expect((await bystander.query("select 'é' as e")).rows).toEqual([['é']])
  })

  it('serves UTF8 by any of its names, and SQL_ASCII', async () => {
    const dev = await start()
    const shown: string[] = []
    for (const encoding of ['UTF8', 'utf-8', 'Unicode', 'SQL_ASCII']) {
      const client = await connect(dev.url, { client_encoding: encoding })
      shown.push(...(await client.query('show client_encoding')).rows.map((row) => row[0]!))
    }
    expect(shown).toEqual(['UTF8', 'UTF8', 'UTF8', 'SQL_ASCII'])
  })

  it('refuses a conversion asked for at run time as Postgres refuses one it lacks; the database serves on', async () => {
    const dev = await start()
    const bystander = await connect(dev.url)
    const client = await connect(dev.url)
    const refused = async (sql: string) => {
      const { errors, status } = await client.query(sql)
      expect(status).toBe('I')
      return errors.map(({ code, message }) => `${code} ${message}`)
    }
    const setting = '0A000 invalid value for parameter "client_encoding": "LATIN1"'
    expect(await refused("set client_encoding to 'LATIN1'")).toEqual([setting])
    expect(await refused("select pg_catalog.set_config('client_encoding', 'LATIN1', false)")).toEqual([setting])
    expect(await refused("select convert_to('é', 'LATIN1')")).toEqual([
      '42883 default conversion function for encoding "UTF8" to "LATIN1" does not exist',
    ])
    expect(await refused("create conversion latin1_in for 'LATIN1' to 'UTF8' from utf8_to_iso8859_1")).toEqual([
      '42883 function utf8_to_iso8859_1(integer, integer, cstring, internal, integer, boolean) does not exist',
    ])
    for (const reader of [client, bystander]) expect((await reader.query("select 'é' as e")).rows).toEqual([['é']])
  })

  it('refuses them after a reset by a fresh copy made without a template', async () => {
    const dev = await start({ template: false })
    const client = await connect(dev.url)
    // A schema that is not the migrated one: the reset replaces the database with a fresh copy (initdb's catalog).
    expect((await client.query('create table outside_migrations (x int)')).errors).toEqual([])
    expect((await client.query('select pglite_dev_db.reset()')).errors).toEqual([])
    // The reset follows the answer; the next statement waits for its fresh copy, which runs initdb: seconds, more
    // under a full suite's load.
    const resetDone = { deadlineMs: RESET_DEADLINE_MS }
    expect((await client.query("select to_regclass('outside_migrations') is null", resetDone)).rows).toEqual([['t']])
    const again = await connect(dev.url)
    expect((await again.query("set client_encoding to 'LATIN1'", resetDone)).errors.map(({ code }) => code)).toEqual([
      '0A000',
    ])
    expect((await again.query("select 'é' as e")).rows).toEqual([['é']])
  })
})
