// Extensions PGlite ships: loaded with --extensions / `extensions`, usable over the wire, given to the template build
// (whose key includes them), and a clear "add --extensions vector" when a migration or a database needs one not loaded.
import path from 'node:path'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { startDevDb } from '../../src/databases/dev-db.ts'
import { AVAILABLE_EXTENSIONS, extensionHint, resolveExtensionNames } from '../../src/engine/extensions.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { scratchDir, startForTest, useDevDbs } from '../helpers/dev-db.ts'
import { endClient } from '../../harness/pg.ts'

const VECTOR_MIGRATIONS = path.resolve('test/fixtures/vector-migrations')

const scratch = (prefix: string): Promise<string> => scratchDir(`ext-${prefix}`)
const start = startForTest

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return await use(client)
  } finally {
    await endClient(client)
  }
}

describe('extensions', () => {
  const devs = useDevDbs()

  it('names resolve to what CREATE EXTENSION takes, with what they require; an unknown one lists the available ones', () => {
    expect(resolveExtensionNames(['pgcrypto', 'vector', 'pgvector'])).toEqual(['pgcrypto', 'vector'])
    expect(resolveExtensionNames(['uuid_ossp'])).toEqual(['uuid-ossp'])
    expect(resolveExtensionNames(['earthdistance'])).toEqual(['cube', 'earthdistance'])
    expect(() => resolveExtensionNames(['vectr'])).toThrow(
      /unknown extension 'vectr'; PGlite ships: .*pgcrypto.*vector/,
    )
    expect(AVAILABLE_EXTENSIONS).toContain('vector')
  })

  it('the hint for a failed migration statement names the flag for what the statement creates', () => {
    const unavailable = Object.assign(new Error('extension "uuid-ossp" is not available'), { code: '0A000' })
    expect(
      extensionHint(unavailable, 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";\ncreate extension earthdistance'),
    ).toBe('; the extension must be loaded at start: add --extensions cube,earthdistance,uuid-ossp')
    expect(extensionHint(unavailable, 'CREATE EXTENSION postgis;')).toMatch(
      /^; PGlite does not ship postgis \(it ships: age, /,
    )
    // 0A000 is also feature_not_supported for statements that create no extension: no hint then.
    expect(extensionHint(unavailable, 'ALTER SYSTEM SET work_mem = 1')).toBe('')
    const undefinedFile = Object.assign(new Error('could not access file "vector": No such file or directory'), {
      code: '58P01',
    })
    expect(extensionHint(undefinedFile, 'select 1')).toContain(
      'add --extensions with every extension the database uses',
    )
    expect(extensionHint(Object.assign(new Error('x'), { code: '42P01' }), 'CREATE EXTENSION vector')).toBe('')
  })

  it('create extension vector and pgcrypto over the wire, then use them, in the main database and in another one', async () => {
    const dev = await devs.start({ extensions: ['vector', 'pgcrypto'] })
    const rows = await withClient(dev.url, async (client) => {
      await client.query('create extension vector')
      await client.query('create extension pgcrypto')
      await client.query('create table items (id int primary key, embedding vector(3))')
      await client.query("insert into items values (1, '[1,2,3]'), (2, '[9,9,9]')")
      return (
        await client.query(
          "select id, embedding <-> '[1,2,4]' as distance, encode(digest('x', 'sha256'), 'hex') as sha from items order by embedding <-> '[1,2,4]' limit 1",
        )
      ).rows
    })
    expect(rows).toEqual([
      { id: 1, distance: 1, sha: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881' },
    ])

    // A database another name creates on first use loads them too.
    const other = dev.url.replace(/\/postgres$/, '/ext_other')
    const distance = await withClient(other, async (client) => {
      await client.query('create extension vector')
      return (await client.query("select '[0,0]'::vector <-> '[3,4]' as d")).rows
    })
    expect(distance).toEqual([{ d: 5 }])
    // A third runs in a worker thread, which loads the bundles itself.
    const third = dev.url.replace(/\/postgres$/, '/ext_third')
    const digest = await withClient(third, async (client) => {
      await client.query('create extension vector')
      await client.query('create extension pgcrypto')
      return (
        await client.query("select '[0,0]'::vector <-> '[6,8]' as d, encode(digest('x', 'sha256'), 'hex') as sha")
      ).rows
    })
    expect(dev.databases.inThread('ext_third')).toBe(true)
    expect(digest).toEqual([{ d: 10, sha: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881' }])
  })

  it('drizzle-kit migrations that create vector apply through the template, which a start without vector does not reuse', async () => {
    const cacheDir = await scratch('cache')
    const dev = await start({ migrations: VECTOR_MIGRATIONS, extensions: ['vector'], cacheDir })
    const rows = await withClient(dev.url, async (client) => {
      await client.query("insert into documents (title, embedding) values ('near', '[1,1,1]'), ('far', '[5,5,5]')")
      return (await client.query("select title from documents order by embedding <-> '[0,0,0]'")).rows
    })
    expect(rows).toEqual([{ title: 'near' }, { title: 'far' }])
    await dev.close()

    // Same cache, no vector: had the template been reused, this would start (and fail later, at a query).
    await expect(start({ migrations: VECTOR_MIGRATIONS, cacheDir })).rejects.toMatchObject({
      code: 'ERR_MIGRATION',
      message: expect.stringMatching(
        /0000_enable_vector\.sql failed at statement 1 of 1: extension "vector" is not available \(SQLSTATE 0A000\); .*add --extensions vector$/,
      ),
    })
  })

  it('a migration needing vector, started without it from the CLI, exits 1 saying to add --extensions vector', async () => {
    const dir = await devs.scratchDataDir()
    const c = captureIo()
    expect(
      await main(['--port', '0', '--data-dir', dir, '--migrations', VECTOR_MIGRATIONS, '--log-level', 'silent'], c.io),
    ).toBe(1)
    // Migrations are applied after the URL line: the URL, then the exit.
    expect(c.stdout.filter((line) => !line.startsWith('postgres://'))).toEqual([])
    expect(c.stderr.join('\n')).toContain('add --extensions vector')
  })

  it('CREATE EXTENSION of one PGlite ships, not loaded at start, loads it; prepared statements carry over; a restart loads it again', async () => {
    const dataDir = await devs.scratchDataDir()
    const first = await devs.start({ dataDir })
    const bystander = new pg.Client({ connectionString: first.url })
    await bystander.connect()
    try {
      await bystander.query('create table things (id int)')
      const count = { name: 'count_things', text: 'select count(*)::int as n from things' }
      expect((await bystander.query(count)).rows).toEqual([{ n: 0 }])
      const made = await withClient(first.url, async (client) => {
        // TypeORM's and Prisma's shapes: IF NOT EXISTS, a quoted name.
        await client.query('create extension if not exists "uuid-ossp"')
        await client.query('create extension vector')
        await client.query(
          "create table v (id uuid primary key default uuid_generate_v4(), e vector(2)); insert into v (e) values ('[1,2]')",
        )
        return (await client.query('select length(id::text) as n, e::text from v')).rows
      })
      expect(made).toEqual([{ n: 36, e: '[1,2]' }])
      // The other client's statement was made again in the database opened anew.
      expect((await bystander.query(count)).rows).toEqual([{ n: 0 }])
    } finally {
      await endClient(bystander)
    }
    await first.close()
    // Started again without asking: the database uses them, so they are loaded.
    const again = await devs.start({ dataDir })
    expect(
      await withClient(
        again.url,
        async (client) => (await client.query('select e::text, uuid_generate_v4() is not null as u from v')).rows,
      ),
    ).toEqual([{ e: '[1,2]', u: true }])
  })

  it('in memory and in another database too; an extension PGlite does not ship fails as Postgres fails', async () => {
    const dev = await start({})
    const rows = await withClient(dev.url.replace(/\/postgres$/, '/ext_lazy'), async (client) => {
      await client.query('create extension pgcrypto')
      return (await client.query("select encode(digest('x', 'sha256'), 'hex') as sha")).rows
    })
    expect(rows).toEqual([{ sha: '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881' }])
    await withClient(dev.url, async (client) => {
      await client.query('create extension citext')
      expect((await client.query("select 'A'::citext = 'a' as same")).rows).toEqual([{ same: true }])
      await expect(client.query('create extension postgis')).rejects.toMatchObject({ code: '0A000' })
    })
  })

  it('an unknown extension is a usage error (exit 2) on the CLI and ERR_CONFIG from startDevDb', async () => {
    const c = captureIo({ PGLITE_DEV_DB_EXTENSIONS: 'vector,nope' })
    expect(await main(['--memory', '--port', '0'], c.io)).toBe(2)
    expect(c.stderr[0]).toMatch(
      /option '--extensions': unknown extension 'nope'; PGlite ships: age, amcheck, .*, vector\n/,
    )
    await expect(startDevDb({ extensions: ['nope'] })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: expect.stringContaining("unknown extension 'nope'"),
    })
  })
})
