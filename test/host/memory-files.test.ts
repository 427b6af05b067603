// A database in memory grows its files in 32 MB steps past 1 MB (src/engine/memory-files.ts): checked on a
// real PGlite, whose table files (a table's, written to; a temporary table's, made longer by setting its size) are
// looked up in its MEMFS after 3 MB of rows, and whose rows are all there after the growth.
import type { PGlite } from '@electric-sql/pglite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FILE_GROWTH_STEP, grownCapacity } from '../../src/engine/memory-files.ts'
import { openPGlite } from '../../src/engine/pglite.ts'

interface Memfs {
  lookupPath(path: string): { node: { contents: Uint8Array; usedBytes: number } }
}

describe('in-memory files', () => {
  it('double up to 1 MB, then grow to the next multiple of 32 MB at least half as large again', () => {
    expect(grownCapacity(0, 8192)).toBe(8192)
    expect(grownCapacity(8192, 16384)).toBe(16384)
    expect(grownCapacity(8192, 8193)).toBe(16384)
    expect(grownCapacity(1 << 19, (1 << 19) + 1)).toBe(1 << 20)
    expect(grownCapacity(1 << 20, (1 << 20) + 1)).toBe(FILE_GROWTH_STEP)
    expect(grownCapacity(FILE_GROWTH_STEP, FILE_GROWTH_STEP + 1)).toBe(2 * FILE_GROWTH_STEP)
    expect(grownCapacity(2 * FILE_GROWTH_STEP, 2 * FILE_GROWTH_STEP + 1)).toBe(3 * FILE_GROWTH_STEP)
    expect(grownCapacity(10 * FILE_GROWTH_STEP, 10 * FILE_GROWTH_STEP + 1)).toBe(15 * FILE_GROWTH_STEP)
    expect(grownCapacity(10 * FILE_GROWTH_STEP, 20 * FILE_GROWTH_STEP + 1)).toBe(21 * FILE_GROWTH_STEP)
    expect(grownCapacity(100, 50)).toBe(100)
  })

  let db: PGlite
  beforeAll(async () => {
    db = await openPGlite({ dataDir: 'memory://' })
  }, 60_000)
  afterAll(async () => {
    await db?.close()
  })
  /** The MEMFS node of `table`'s file. */
  const fileOf = async (table: string) => {
    const { path } = (
      await db.query<{ path: string }>(
        `select current_setting('data_directory') || '/' || pg_relation_filepath('${table}') as path`,
      )
    ).rows[0]!
    return (db as unknown as { mod: { FS: Memfs } }).mod.FS.lookupPath(path).node
  }
  /** `table`'s rows, counted and their pads' lengths summed. */
  const readBack = async (table: string) =>
    (
      await db.query<{ n: number; sum: string }>(
        `select count(*)::int as n, sum(length(pad))::text as sum from ${table}`,
      )
    ).rows[0]

  it('a table past 1 MB holds a 32 MB step, and every row is read back', async () => {
    await db.exec(`create table grow (id int primary key, pad text);
      insert into grow select i, repeat(md5(i::text), 8) from generate_series(1, 10000) i`)
    const node = await fileOf('grow')
    expect(node.usedBytes).toBeGreaterThan(1 << 20)
    expect(node.contents.length % FILE_GROWTH_STEP).toBe(0)
    expect(await readBack('grow')).toEqual({ n: 10000, sum: String(10000 * 256) })
  })

  it('a temporary table past 1 MB holds a 32 MB step too, and every row is read back', async () => {
    // Made with AS: Postgres extends its file many blocks at a time, by setting the file's size.
    await db.exec(
      `create temp table grow_temp as select i as id, repeat(md5(i::text), 8) as pad from generate_series(1, 10000) i`,
    )
    const node = await fileOf('grow_temp')
    expect(node.usedBytes).toBeGreaterThan(1 << 20)
    expect(node.contents.length % FILE_GROWTH_STEP).toBe(0)
    expect(await readBack('grow_temp')).toEqual({ n: 10000, sum: String(10000 * 256) })
    // VACUUM cuts the emptied end off: the memory goes back, and the file grows again from there.
    await db.exec('delete from grow_temp where id > 100')
    await db.exec('vacuum grow_temp')
    expect(node.usedBytes).toBeLessThan(1 << 20)
    expect(node.contents.length).toBe(node.usedBytes)
    await db.exec(`insert into grow_temp select i, repeat(md5(i::text), 8) from generate_series(101, 20000) i`)
    expect(await readBack('grow_temp')).toEqual({ n: 20000, sum: String(20000 * 256) })
  })
})
