// A temporary object made without the word TEMP: with pg_temp first in search_path, Postgres creates what is named
// without a schema in the client's temporary schema, which no other backend sees. Real PGlite, raw frames.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'

const { start, connect } = useDevDbs()

describe('temporary objects made through search_path', () => {
  it("are their client's alone, as those made with TEMP are", async () => {
    const dev = await start()
    const [a, b] = [await connect(dev.url), await connect(dev.url)]
    expect((await a.query('set search_path = pg_temp, public')).errors).toEqual([])
    expect((await a.query('create table via_path (id int); insert into via_path values (1)')).errors).toEqual([])
    expect((await a.query('select count(*) from via_path')).rows).toEqual([['1']])

    const other = await b.query('select count(*) from via_path')
    expect(other.errors.map((e) => e.code)).toEqual(['42P01'])
    // B may make its own of that name, and each sees its own.
    expect((await b.query('create temp table via_path (id int)')).errors).toEqual([])
    expect((await b.query('select count(*) from via_path')).rows).toEqual([['0']])
    expect((await a.query('select count(*) from via_path')).rows).toEqual([['1']])
    expect((await a.query("select relpersistence from pg_class where oid = 'via_path'::regclass")).rows).toEqual([
      ['t'],
    ])
  })
})
