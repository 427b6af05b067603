// New in-memory databases start from the image of the main one as it booted (engine/image.ts), not by booting: each
// is a database of its own that works as a booted one does.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { DbThread } from '../../src/engine/thread.ts'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { createLogger } from '../../src/log.ts'
import { endClient } from '../../harness/pg.ts'
import { urlOf, useDatabaseTests } from '../helpers/databases.ts'

const MIGRATIONS = fileURLToPath(new URL('../../migrations', import.meta.url))

const { devs, clients, client } = useDatabaseTests()

async function serve(options: DevDbOptions = {}): Promise<DevDb> {
  const dev = await startDevDb({ migrations: MIGRATIONS, logger: createLogger({ level: 'warn' }), ...options })
  devs.push(dev)
  return dev
}

const fromImage = (dev: DevDb, name: string) => (dev.databases.instance(name) as DbThread).fromImage

describe('a new database started from the image of a booted one', () => {
  it('is migrated and isolated: writes to the same tables stay in the database that made them', async () => {
    const dev = await serve()
    const [a, b] = await Promise.all([client(urlOf(dev.url, 'img_a')), client(urlOf(dev.url, 'img_b'))])
    expect([fromImage(dev, 'img_a'), fromImage(dev, 'img_b')]).toEqual([true, true])
    expect((await a.query('select current_database() as name')).rows).toEqual([{ name: 'img_a' }])
    await a.query(`insert into customers (email, name) values ('a@example.com', 'A')`)
    await b.query(`insert into customers (email, name) values ('b1@example.com', 'B'), ('b2@example.com', 'B')`)
    await a.query('create table only_in_a (x int)')
    // Enough rows that the table's files and the WAL segment grow past what the image holds.
    await b.query(
      `insert into customers (email, name) select 'x' || i || '@example.com', 'X' from generate_series(1, 20000) as i`,
    )
    expect((await a.query('select count(*)::int as n from customers')).rows).toEqual([{ n: 1 }])
    expect((await b.query('select count(*)::int as n from customers')).rows).toEqual([{ n: 20002 }])
    expect((await b.query(`select to_regclass('only_in_a') as t`)).rows).toEqual([{ t: null }])
    const main = await client(dev.url)
    expect((await main.query('select count(*)::int as n from customers')).rows).toEqual([{ n: 0 }])
    expect((await a.query('select count(*)::int as n from drizzle.__drizzle_migrations')).rows).toEqual([{ n: 1 }])
    // PL/pgSQL loads its library in the new instance.
    await a.query(`create function forty_two() returns int language plpgsql as $$ begin return 42; end $$`)
    expect((await a.query('select forty_two() as v')).rows).toEqual([{ v: 42 }])
    await a.query('checkpoint')
    expect((await a.query('select count(*)::int as n from customers')).rows).toEqual([{ n: 1 }])
    // Its files, shared with the image until written, copy as any database's do (once nobody is connected to it).
    await endClient(clients.splice(clients.indexOf(b), 1)[0]!)
    await main.query('create database img_copy template img_b')
    const copy = await client(urlOf(dev.url, 'img_copy'))
    expect((await copy.query('select count(*)::int as n from customers')).rows).toEqual([{ n: 20002 }])
  })

  it('stops a statement at statement_timeout: the timer PGlite arms reaches the server in the new instance too', async () => {
    const dev = await serve()
    const c = await client(urlOf(dev.url, 'img_timeout'))
    expect(fromImage(dev, 'img_timeout')).toBe(true)
    await c.query(`set statement_timeout = '200ms'`)
    await expect(c.query('select pg_sleep(30)')).rejects.toMatchObject({ code: '57014' })
    await c.query('set statement_timeout = 0')
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }])
  })

  it("a data dir database gets the image's files, survives its server killed -9, and boots from them after", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'pglite-dev-db-image-'))
    const cacheDir = `${dataDir}-cache`
    onTestFinished(() =>
      Promise.all(
        [dataDir, `${dataDir}-databases`, cacheDir].map((dir) => rm(dir, { recursive: true, force: true })),
      ).then(() => {}),
    )
    const start = async () => {
      const child = spawn(
        process.execPath,
        [
          'bin/pglite-dev-db.js',
          '--port',
          '0',
          '--data-dir',
          dataDir,
          '--migrations',
          MIGRATIONS,
          '--cache-dir',
          cacheDir,
          '--log-level',
          'silent',
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      )
      onTestFinished(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')))
      const [url] = (await once(createInterface({ input: child.stdout }), 'line')) as [string]
      return { child, url }
    }
    const first = await start()
    const writer = await client(urlOf(first.url, 'img_disk'))
    await writer.query(`insert into customers (email, name) values ('k@example.com', 'K')`)
    expect(await readdir(join(`${dataDir}-databases`, 'img_disk'))).toContain('PG_VERSION')
    // The image it started from, made once and kept beside the template (in whichever template dir the cache has).
    const templates = (await readdir(cacheDir)).filter((name) => name.startsWith('template-'))
    const images = await Promise.all(
      templates.map(async (name) =>
        (await readdir(join(cacheDir, name))).filter((entry) => entry.startsWith('image-')),
      ),
    )
    expect(images.flat()).toHaveLength(1)
    first.child.kill('SIGKILL')
    await once(first.child, 'exit')
    await endClient(clients.splice(clients.indexOf(writer), 1)[0]!)

    const second = await start()
    const reader = await client(urlOf(second.url, 'img_disk'))
    expect((await reader.query('select email from customers')).rows).toEqual([{ email: 'k@example.com' }])
    expect((await reader.query('select current_database() as name')).rows).toEqual([{ name: 'img_disk' }])
  })

  it('a reset by fresh copy starts from the image too', async () => {
    const dev = await serve()
    const c = await client(urlOf(dev.url, 'img_reset'))
    await c.query('create table made_since (x int)')
    await c.query('select pglite_dev_db.reset()')
    expect(fromImage(dev, 'img_reset')).toBe(true)
    expect((await c.query(`select to_regclass('made_since') as t`)).rows).toEqual([{ t: null }])
  })
})
