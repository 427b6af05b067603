// Stopping and recovering with a statement running: SIGTERM to the command (or close()) ends a statement that would
// never end by itself, tells every client FATAL 57P01 and keeps every commit; a database whose PGlite died is reopened
// from its data dir (in memory: from the files its thread still holds).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { DbThread } from '../../src/engine/thread.ts'
import { scratchRoot } from '../helpers/db.ts'
import { startForTest, useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { scratchDataDir, start, connect } = useDevDbs()
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const LOOP = 'DO $$BEGIN LOOP END LOOP; END$$'
/** PGlite's data_directory is the data dir on disk: a file a statement writes there says the statement is running. */
const PGDATA = '/pglite/data'
/** The command's stop: 5 s for clients, then 2 s for each database to close (src/databases/dev-db.ts); it should need neither. */
const EXIT_BOUND_MS = 5_000
/** A database whose PGlite died serves again within this (a new thread and PGlite's start; the bound is for a busy machine). */
const REOPEN_BOUND_MS = 10_000

/** `sql` preceded, in the same call, by the write of `marker` into the data dir. */
const announced = (marker: string, sql: string) => `copy (select 1) to '${PGDATA}/${marker}'; ${sql}`
const runningIn = (dataDir: string, marker: string) =>
  expect.poll(() => existsSync(path.join(dataDir, marker)), { timeout: 5_000, interval: 5 }).toBe(true)

/** The next message is FATAL `code`, then the server closes the socket. */
async function expectFatal(client: RawClient, code: string, what: string): Promise<void> {
  const error = await client.next('ErrorResponse', { deadlineMs: 5_000 }).catch((cause: unknown) => {
    throw new Error(`${what}: no ErrorResponse`, { cause })
  })
  expect(wire.decodeError(error.body), what).toMatchObject({ severity: 'FATAL', code })
  await withDeadline(client.closed, 3_000, `${what}: socket closed after FATAL ${code}`)
}

/** A copy of the initdb'd template for the command, removed after the test. */
async function commandDataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(await scratchRoot(), 'pglite-stopping-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  await cp(inject('pgliteTemplateDir'), dir, { recursive: true })
  return dir
}

/** The bin on `dataDir`, as a user runs it; killed after the test if still there. */
async function spawnCommand(dataDir: string) {
  const child = spawn(
    process.execPath,
    [
      'bin/pglite-dev-db.js',
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--no-migrations',
      '--no-tls',
      '--log-level',
      'info',
    ],
    {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const stderr: string[] = []
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line))
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  const firstLine = once(createInterface({ input: child.stdout }), 'line') as Promise<[string]>
  const failed = exited.then(([code, signal]) => {
    throw new Error(`the command exited (${String(code ?? signal)}) before printing its URL:\n${stderr.join('\n')}`)
  })
  const [url] = await withDeadline(Promise.race([firstLine, failed]), 30_000, 'the command prints its URL')
  return { child, url, stderr, exited }
}

describe('stopping while a statement runs', () => {
  it('SIGTERM to the command: the running loop is ended, both clients get FATAL 57P01, exit 0 within 5 s, and a restart has the commit', async () => {
    const dataDir = await commandDataDir()
    const first = await spawnCommand(dataDir)
    const committer = await connectRaw(first.url)
    const looper = await connectRaw(first.url)
    onTestFinished(() => [committer, looper].forEach((client) => client.destroy()))
    expect(
      (await committer.query('create table kept (id int); insert into kept select generate_series(1, 100)')).errors,
    ).toEqual([])
    await looper.send(wire.query(announced('looping', LOOP)))
    await runningIn(dataDir, 'looping')

    const signaledAt = performance.now()
    first.child.kill('SIGTERM')
    await expectFatal(committer, '57P01', 'the client at rest')
    await expectFatal(looper, '57P01', 'the client whose loop ran')
    const [code, signal] = await withDeadline(first.exited, EXIT_BOUND_MS + 5_000, 'the command exits after SIGTERM')
    const ms = Math.round(performance.now() - signaledAt)
    expect({ code, signal }, first.stderr.join('\n')).toEqual({ code: 0, signal: null })
    expect(ms, `exited ${ms} ms after SIGTERM`).toBeLessThan(EXIT_BOUND_MS)
    expect(first.stderr.filter((line) => line.includes('ERROR') || line.includes('WARN'))).toEqual([])

    const second = await spawnCommand(dataDir)
    const reader = await connectRaw(second.url)
    onTestFinished(() => reader.destroy())
    expect((await reader.query('select count(*), sum(id) from kept')).rows).toEqual([['100', '5050']])
    second.child.kill('SIGTERM')
    expect((await withDeadline(second.exited, 10_000, 'the second command exits'))[0]).toBe(0)
  })

  it('close() from code: the loop is ended, clients get FATAL 57P01, stoppedCleanly, and a reopen has the commit', async () => {
    const dataDir = await scratchDataDir()
    const dev = await start({ dataDir })
    const committer = await connect(dev.url)
    const looper = await connect(dev.url)
    expect((await committer.query('create table kept (id int); insert into kept values (1)')).errors).toEqual([])
    await looper.send(wire.query(announced('looping', LOOP)))
    await runningIn(dataDir, 'looping')

    const closingAt = performance.now()
    const closing = dev.close()
    await expectFatal(committer, '57P01', 'the client at rest')
    await expectFatal(looper, '57P01', 'the client whose loop ran')
    await withDeadline(closing, EXIT_BOUND_MS + 5_000, 'close()')
    const ms = Math.round(performance.now() - closingAt)
    expect(dev.stoppedCleanly).toBe(true)
    expect(ms, `close() took ${ms} ms`).toBeLessThan(EXIT_BOUND_MS)

    const reopened = await start({ dataDir })
    expect((await (await connect(reopened.url)).query('select id from kept')).rows).toEqual([['1']])
  })
})

describe('PGlite dying in its thread', () => {
  /** Kills the main database's PGlite: a lone COPY FROM STDIN makes it exit(1) (the server never sends one). */
  async function killMain(dev: DevDb): Promise<DbThread> {
    const db = dev.databases.main
    if (!(db instanceof DbThread)) throw new Error('the main database is not in a thread')
    const killed = db.runExclusive(() =>
      db.execProtocolRawStream(wire.query('copy t from stdin'), { onRawData: () => {} }),
    )
    await expect(killed).rejects.toMatchObject({ name: 'ExitStatus' })
    return db
  }

  /** Connects and reads `t` until that works (the database reopens meanwhile); the rows and how long it took. */
  async function readWhenBack(
    url: string,
    since: number,
  ): Promise<{ rows: wire.Summary['rows']; ms: number; refusals: string[] }> {
    const refusals: string[] = []
    let rows: wire.Summary['rows'] | null = null
    await expect
      .poll(
        async () => {
          try {
            const client = await connectRaw(url)
            try {
              const reply = await client.query('select id from t order by id')
              if (reply.errors.length === 0) rows = reply.rows
              else refusals.push(reply.errors.map((e) => `${e.severity} ${e.code}`).join())
            } finally {
              client.destroy()
            }
          } catch (error) {
            refusals.push((error as Error).message.slice(0, 80))
          }
          return rows !== null
        },
        { timeout: 10_000, interval: 200 },
      )
      .toBe(true)
    return { rows: rows!, ms: Math.round(performance.now() - since), refusals }
  }

  it.each([
    ['on a data dir', true],
    ['in memory', false],
  ])('%s: a new client connects within a few seconds and sees the committed row', async (_, onDisk) => {
    const dev = onDisk ? await start() : await startForTest({})
    const writer = await connect(dev.url)
    expect((await writer.query('create table t (id int); insert into t values (1)')).errors).toEqual([])
    const killedAt = performance.now()
    await killMain(dev)
    const back = await readWhenBack(dev.url, killedAt)
    expect(back.rows, `back after ${back.ms} ms (refused meanwhile: ${back.refusals.join('; ') || 'never'})`).toEqual([
      ['1'],
    ])
    // About 2 s alone on this machine (a thread and PGlite's start); 5.5 s beside two other test files.
    expect(back.ms, `back after ${back.ms} ms`).toBeLessThan(REOPEN_BOUND_MS)
  })
})
