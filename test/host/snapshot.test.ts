// Snapshots: `pglite-dev-db snapshot FILE` writes a stopped server's data dir; --from-snapshot starts from one, in
// memory or into a new data dir, and newer migrations apply on top. Refused while a server holds the data dir,
// into a data dir that holds a database, and from a file that is no snapshot.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { gunzipSync } from 'node:zlib'
import pg from 'pg'
import { describe, expect, it, onTestFinished } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { startDevDb } from '../../src/databases/dev-db.ts'
import { listTar } from '../../src/databases/tar.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { scratchDir, startForTest, useDevDbs } from '../helpers/dev-db.ts'
import { endClient } from '../../harness/pg.ts'
import { stopChild } from '../../harness/process.ts'

const scratch = (prefix: string): Promise<string> => scratchDir(`snap-${prefix}`)
const start = startForTest

async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(sql)).rows
  } finally {
    await endClient(client)
  }
}

/** A drizzle-kit folder holding the first `count` of two migrations (notes, then a column added to it). */
async function migrations(count: 1 | 2): Promise<string> {
  const dir = await scratch(`migrations-${count}`)
  const files = [
    {
      tag: '0000_notes',
      when: 1_000,
      sql: 'CREATE TABLE "notes" ("id" serial PRIMARY KEY NOT NULL, "body" text NOT NULL);',
    },
    { tag: '0001_pinned', when: 2_000, sql: 'ALTER TABLE "notes" ADD COLUMN "pinned" boolean DEFAULT false NOT NULL;' },
  ].slice(0, count)
  await mkdir(path.join(dir, 'meta'))
  for (const file of files) await writeFile(path.join(dir, `${file.tag}.sql`), file.sql)
  const entries = files.map((file, idx) => ({ idx, version: '7', when: file.when, tag: file.tag, breakpoints: true }))
  await writeFile(
    path.join(dir, 'meta', '_journal.json'),
    JSON.stringify({ version: '7', dialect: 'postgresql', entries }),
  )
  return dir
}

async function snapshot(file: string, dataDir: string): Promise<{ status: number; stdout: string[]; stderr: string }> {
  const c = captureIo()
  const status = await main(['snapshot', file, '--data-dir', dataDir, '--log-level', 'warn'], c.io)
  return { status, stdout: c.stdout, stderr: c.stderr.join('\n') }
}

describe('snapshots', () => {
  const devs = useDevDbs()

  /** A server on a data dir with the first migration gets two rows over the wire, stops, and is snapshotted. */
  async function seededSnapshot(): Promise<{ file: string; dir: string }> {
    const dataDir = await devs.scratchDataDir()
    const first = await devs.start({ dataDir, migrations: await migrations(1) })
    await query(first.url, "insert into notes (body) values ('first'), ('second')")
    await first.close()
    const dir = await scratch('files')
    const file = path.join(dir, 'seed.tar.gz')
    expect(await snapshot(file, dataDir)).toMatchObject({ status: 0, stdout: [file] })
    return { file, dir }
  }

  it('rows written over the wire survive snapshot → new in-memory servers, each its own copy; a newer migration applies on top', async () => {
    const { file } = await seededSnapshot()
    // A gzip tarball of the data dir without the lock file, PG_VERSION last (a load cut short leaves no database).
    const names = listTar(gunzipSync(await readFile(file))).map((entry) => entry.name)
    expect(names).toContain('base')
    expect(names).not.toContain('pglite-dev-db.lock')
    expect(names.at(-1)).toBe('PG_VERSION')

    const two = await migrations(2)
    const memory = await start({ fromSnapshot: file, migrations: two })
    expect(await query(memory.url, 'select body, pinned from notes order by id')).toEqual([
      { body: 'first', pinned: false },
      { body: 'second', pinned: false },
    ])
    await query(memory.url, "insert into notes (body) values ('memory only')")
    const other = await start({ fromSnapshot: file, migrations: two })
    expect(await query(other.url, 'select count(*)::int as n from notes')).toEqual([{ n: 2 }])
  })

  it('a snapshot loads into a new data dir, which keeps its rows after a restart without --from-snapshot', async () => {
    const { file, dir } = await seededSnapshot()
    const two = await migrations(2)
    const fresh = path.join(dir, 'fresh')
    const loaded = await devs.start({ dataDir: fresh, fromSnapshot: file, migrations: two })
    expect(await query(loaded.url, 'select body from notes order by id')).toEqual([
      { body: 'first' },
      { body: 'second' },
    ])
    await query(loaded.url, "insert into notes (body, pinned) values ('third', true)")
    // The lock is this server's: the snapshot brought no lock file of the process that took it.
    expect((await readFile(path.join(fresh, 'pglite-dev-db.lock'), 'utf8')).split('\n')[0]).toBe(String(process.pid))
    await loaded.close()
    const reopened = await devs.start({ dataDir: fresh, migrations: two })
    expect(await query(reopened.url, 'select body, pinned from notes order by id')).toEqual([
      { body: 'first', pinned: false },
      { body: 'second', pinned: false },
      { body: 'third', pinned: true },
    ])
  })

  it('the CLI starts from a snapshot with --memory --from-snapshot', async () => {
    const dataDir = await devs.scratchDataDir()
    const first = await devs.start({ dataDir })
    await query(first.url, 'create table kept (id int); insert into kept values (42)')
    await first.close()
    const file = path.join(await scratch('files'), 'kept.tgz')
    expect((await snapshot(file, dataDir)).status).toBe(0)

    const c = captureIo()
    const exit = main(
      ['--memory', '--from-snapshot', file, '--port', '0', '--no-migrations', '--log-level', 'info'],
      c.io,
    )
    const url = await c.firstLine
    expect(await query(url, 'select id from kept')).toEqual([{ id: 42 }])
    c.stop()
    expect(await exit).toBe(0)
    expect(c.stderr.join('\n')).toMatch(/opening database dataDir=memory from=snapshot/)
  })

  it('refuses to snapshot a data dir a running server holds, naming its pid', async () => {
    const dataDir = await devs.scratchDataDir()
    const child = spawn(
      process.execPath,
      ['bin/pglite-dev-db.js', '--port', '0', '--data-dir', dataDir, '--no-migrations'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    const exited = once(child, 'exit')
    onTestFinished(() => stopChild(child, exited, () => child.kill('SIGTERM'), 5_000, 'dev db child'))
    await once(createInterface({ input: child.stdout }), 'line')

    const file = path.join(await scratch('files'), 'never.tgz')
    const refused = await snapshot(file, dataDir)
    expect(refused.status).toBe(1)
    expect(refused.stdout).toEqual([])
    expect(refused.stderr).toContain(`cannot snapshot a data dir a server is using`)
    expect(refused.stderr).toContain(`in use by another pglite-dev-db (pid ${child.pid})`)
    expect(await readdir(path.dirname(file))).toEqual([])
  })

  it('refuses a data dir that already holds a database, a file that is no snapshot, and a data dir with nothing to snapshot', async () => {
    const dataDir = await devs.scratchDataDir()
    const dir = await scratch('files')
    const file = path.join(dir, 'ok.tgz')
    expect((await snapshot(file, dataDir)).status).toBe(0)

    await expect(startDevDb({ dataDir, fromSnapshot: file, migrations: false })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: `the data dir ${dataDir} already holds a database; --from-snapshot starts only a new or empty data dir (remove it, or choose another --data-dir)`,
    })
    // The refusal released the data dir.
    await (await devs.start({ dataDir })).close()

    const garbage = path.join(dir, 'garbage.tgz')
    await writeFile(garbage, 'not a tarball at all, but long enough to look at its first block. '.repeat(20))
    await expect(startDevDb({ fromSnapshot: garbage })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: expect.stringContaining(`${garbage} is not a database snapshot`),
    })
    await expect(startDevDb({ fromSnapshot: path.join(dir, 'missing.tgz') })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: expect.stringContaining('cannot read the snapshot'),
    })

    const empty = await scratch('empty')
    const nothing = await snapshot(path.join(dir, 'nothing.tgz'), empty)
    expect(nothing.status).toBe(1)
    expect(nothing.stderr).toContain(`there is no database in ${empty} to snapshot`)

    const usage = captureIo()
    expect(await main(['snapshot', '--data-dir', dataDir], usage.io)).toBe(2)
    expect(usage.stderr[0]).toMatch(
      /^pglite-dev-db snapshot: the snapshot FILE is missing\n\nUsage: pglite-dev-db snapshot FILE/,
    )
  })
})
