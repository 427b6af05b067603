// Migrated templates: initdb and the migrations run once per (migrations content, PGlite version); later fresh
// starts, in memory or in a new data dir, copy the result. A changed migration is a new template, never a stale one.
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { connectRaw } from '../../harness/raw-client.ts'
import { listTar } from '../../src/databases/tar.ts'

const dirs: string[] = []
const devs: DevDb[] = []
afterEach(async () => {
  await Promise.all(devs.splice(0).map((dev) => dev.close()))
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

async function scratch(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `pglite-dev-db-${prefix}-`))
  dirs.push(dir)
  return dir
}

/** A drizzle-kit style folder whose one migration is `sql`. */
async function writeMigrations(dir: string, sql: string): Promise<void> {
  await mkdir(path.join(dir, 'meta'), { recursive: true })
  const entries = [{ idx: 0, version: '7', when: 1_000, tag: '0000_init', breakpoints: true }]
  await writeFile(
    path.join(dir, 'meta', '_journal.json'),
    JSON.stringify({ version: '7', dialect: 'postgresql', entries }),
  )
  await writeFile(path.join(dir, '0000_init.sql'), sql)
}

const BUILDING = 'building the database template (once per migrations and PGlite version)'

/** Start with a logger that records what the start did; returns the server and its log messages. */
async function startLogged(options: DevDbOptions): Promise<{ dev: DevDb; messages: string[] }> {
  const records: LogRecord[] = []
  const dev = await startDevDb({
    migrations: false,
    ...options,
    logger: createLogger({ level: 'info', sink: (record) => records.push(record) }),
  })
  devs.push(dev)
  const messages = records.map((r) => (r.fields['from'] ? `${r.msg} from ${String(r.fields['from'])}` : r.msg))
  return { dev, messages }
}

async function tables(dev: DevDb): Promise<string[]> {
  const client = await connectRaw(dev.url)
  try {
    const reply = await client.query(
      "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'",
    )
    return (reply.rows[0]![0] ?? '').split(',').filter(Boolean)
  } finally {
    client.destroy()
  }
}

/** The template's WAL: one segment, and how many of its 8 KB pages hold anything. */
async function walPagesWritten(cacheDir: string): Promise<number> {
  const [dir] = (await readdir(cacheDir)).filter((name) => name.startsWith('template-'))
  const tar = await readFile(path.join(cacheDir, dir!, 'data.tar'))
  const segments = listTar(tar).filter((entry) => /(^|\/)pg_wal\/[0-9A-F]{24}$/.test(entry.name))
  expect(segments.map((entry) => entry.name.slice(-24))).toHaveLength(1)
  const data = tar.subarray(segments[0]!.start + 512, segments[0]!.end)
  let written = 0
  for (let at = 0; at < data.length; at += 8192) if (data.subarray(at, at + 8192).some((byte) => byte !== 0)) written++
  return written
}

describe('migrated templates', () => {
  it('the first start builds the template; the next in-memory start loads it, with the schema and nothing to migrate', async () => {
    const cacheDir = await scratch('cache')
    const migrations = await scratch('migrations')
    await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')

    const first = await startLogged({ migrations, cacheDir })
    expect(first.messages).toContain('database template ready')
    expect(await tables(first.dev)).toEqual(['alpha'])
    // What initdb and the migrations wrote to the WAL is not in the template: each database copies its current WAL
    // segment on its first write, and that copy is then a few pages, not megabytes.
    expect(await walPagesWritten(cacheDir)).toBeLessThanOrEqual(4)

    const second = await startLogged({ migrations, cacheDir })
    expect(second.messages).not.toContain('database template ready')
    expect(second.messages).toContain('opening database from template')
    expect(second.messages).not.toContain('migration applied')
    expect(await tables(second.dev)).toEqual(['alpha'])
    // Each in-memory database is its own: a row in one is not in the other.
    const a = await connectRaw(first.dev.url)
    await a.query('insert into alpha values (1)')
    a.destroy()
    const b = await connectRaw(second.dev.url)
    expect((await b.query('select count(*) from alpha')).rows).toEqual([['0']])
    b.destroy()
  })

  // Three initdb builds and two from the template without migrations: 46-60 s on a loaded 2-core machine.
  it(
    'an edited migration makes a new template: the start never serves the old schema',
    { timeout: 150_000 },
    async () => {
      const cacheDir = await scratch('cache')
      const migrations = await scratch('migrations')
      await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')
      const before = await startLogged({ migrations, cacheDir })
      expect(before.messages).toContain(`${BUILDING} from initdb`)
      expect(await tables(before.dev)).toEqual(['alpha'])

      // An edit: initdb again, and this build keeps the template without migrations before its migration runs.
      await writeMigrations(migrations, 'CREATE TABLE beta (id int primary key);')
      const after = await startLogged({ migrations, cacheDir })
      expect(after.messages).toContain(`${BUILDING} from initdb`)
      expect(after.messages).toContain('database template ready')
      expect(await tables(after.dev)).toEqual(['beta'])
      // alpha's, beta's and the one without migrations.
      expect((await readdir(cacheDir)).filter((name) => name.startsWith('template-')).length).toBe(3)

      // The next edit's build starts from it.
      await writeMigrations(migrations, 'CREATE TABLE gamma (id int primary key);')
      const again = await startLogged({ migrations, cacheDir })
      expect(again.messages).toContain(`${BUILDING} from the template without migrations`)
      expect(await tables(again.dev)).toEqual(['gamma'])

      // A journal that lists none is migrations all the same: not served the template without any, it gets drizzle's
      // table of migrations applied.
      const none = await scratch('migrations')
      await mkdir(path.join(none, 'meta'), { recursive: true })
      await writeFile(
        path.join(none, 'meta', '_journal.json'),
        JSON.stringify({ version: '7', dialect: 'postgresql', entries: [] }),
      )
      const client = await connectRaw((await startLogged({ migrations: none, cacheDir })).dev.url)
      expect((await client.query('select count(*) from drizzle.__drizzle_migrations')).rows).toEqual([['0']])
      client.destroy()
    },
  )

  it('a new data dir is seeded from the template and keeps its rows; an existing one is opened as it is', async () => {
    const cacheDir = await scratch('cache')
    const migrations = await scratch('migrations')
    const dataDir = path.join(await scratch('data'), 'db')
    await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')
    await (await startLogged({ migrations, cacheDir })).dev.close()

    const seeded = await startLogged({ migrations, cacheDir, dataDir })
    expect(seeded.messages).toContain('opening database from template')
    const client = await connectRaw(seeded.dev.url)
    await client.query('insert into alpha values (7)')
    client.destroy()
    await seeded.dev.close()

    const reopened = await startLogged({ migrations, cacheDir, dataDir })
    expect(reopened.messages).not.toContain('opening database from template')
    const again = await connectRaw(reopened.dev.url)
    expect((await again.query('select id from alpha')).rows).toEqual([['7']])
    again.destroy()
  })

  it('a template built after the start leaves the server answering its clients meanwhile', async () => {
    const migrations = await scratch('migrations')
    const dataDir = path.join(await scratch('data'), 'db')
    await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')
    await (await startLogged({ migrations, cacheDir: await scratch('cache'), dataDir })).dev.close()
    // An empty cache (after `npm ci`, say): the data dir opens as it is, and the first new database builds the template.
    const seen = { building: false, ready: false }
    const logger = createLogger({
      level: 'info',
      sink: ({ msg }) => {
        if (msg.startsWith('building the database template')) seen.building = true
        if (msg === 'database template ready') seen.ready = true
      },
    })
    const dev = await startDevDb({ migrations, cacheDir: await scratch('cache'), dataDir, logger })
    devs.push(dev)
    const client = await connectRaw(dev.url)
    // A new database is made at its first query.
    const newcomer = await connectRaw(dev.url, { params: { user: 'postgres', database: 'other' }, deadlineMs: 120_000 })
    let made = false
    const making = newcomer.query('select 1').finally(() => (made = true))
    let answeredWhileBuilding = 0
    while (!seen.ready && !made) {
      await client.query('select 1')
      if (seen.building && !seen.ready) answeredWhileBuilding++
    }
    client.destroy()
    await making
    newcomer.destroy()
    expect(seen.ready).toBe(true)
    // Built on the server's own thread, initdb held every client for seconds: 80 answers in the whole build, the
    // longest wait 2.3 s; in a database thread, thousands.
    expect(answeredWhileBuilding).toBeGreaterThan(500)
  })

  it('two starts that build the same template at once both succeed and share it', async () => {
    const cacheDir = await scratch('cache')
    const migrations = await scratch('migrations')
    await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')
    const [one, two] = await Promise.all([startLogged({ migrations, cacheDir }), startLogged({ migrations, cacheDir })])
    expect(await tables(one.dev)).toEqual(['alpha'])
    expect(await tables(two.dev)).toEqual(['alpha'])
    expect((await readdir(cacheDir)).filter((name) => name.startsWith('template-')).length).toBe(1)
    expect((await readdir(cacheDir)).filter((name) => name.startsWith('.building-'))).toEqual([])
  })

  it('template: false runs initdb and the migrations, as before', async () => {
    const cacheDir = await scratch('cache')
    const migrations = await scratch('migrations')
    await writeMigrations(migrations, 'CREATE TABLE alpha (id int primary key);')
    const plain = await startLogged({ migrations, cacheDir, template: false })
    expect(plain.messages).not.toContain('opening database from template')
    expect(await tables(plain.dev)).toEqual(['alpha'])
    // No template; the TLS certificate is kept there too.
    expect((await readdir(cacheDir)).filter((name) => name !== 'tls')).toEqual([])
  })
})

describe('the migrations startDevDb applies when none is named', () => {
  // Two template builds (initdb each): a minute and more on a loaded 2-core machine. The order of the places looked
  // in is findMigrations' own, tested in test/unit/cli-defaults.test.ts.
  it(
    "are drizzle-kit's, found as the command finds them (the config's out); false applies none",
    { timeout: 150_000 },
    async () => {
      const project = await scratch('project')
      const cacheDir = await scratch('cache')
      await writeMigrations(path.join(project, 'db', 'out'), 'CREATE TABLE from_config (id int primary key);')
      await writeMigrations(path.join(project, 'drizzle'), 'CREATE TABLE from_drizzle (id int primary key);')
      await writeFile(
        path.join(project, 'drizzle.config.ts'),
        "export default { dialect: 'postgresql', out: './db/out' }\n",
      )
      // startDevDb looks in the working directory, as a user's test runner or script starts it (forks: this file's own process).
      const cwd = process.cwd()
      process.chdir(project)
      try {
        const configured = await startLogged({ migrations: undefined, cacheDir })
        expect(configured.messages).toContain('applying migrations from out in drizzle.config.ts')
        expect(await tables(configured.dev)).toEqual(['from_config'])
        const none = await startLogged({ migrations: false, cacheDir })
        expect(none.messages.filter((m) => m.startsWith('applying migrations'))).toEqual([])
        expect(await tables(none.dev)).toEqual([])
      } finally {
        process.chdir(cwd)
      }
    },
  )
})
