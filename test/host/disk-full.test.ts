// A data dir on a disk that fills up, or that cannot be written: the client whose write needs the space gets
// ERROR 53100 (as from Postgres) and everyone else goes on; the WAL moving into a new segment does not end the
// database, and a database that died of it anyway reopens on the full disk; once space is freed, writes work again; a
// start there fails with one line that names the directory and why. Each test mounts a small tmpfs of its own, which
// needs root (CI runs as root: .ci/run); as another user every test here fails saying so, rather than passing unseen.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { cp, mkdir, open, readdir, rename, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { mountTmpfs } from '../helpers/tmpfs.ts'
import { withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { stopChild } from '../../harness/process.ts'

const run = promisify(execFile)
const { start, connect } = useDevDbs()
const MB = 2 ** 20

/** Writes zeros into `file` until the file system refuses with ENOSPC; the bytes still free after (0 or nearly). */
async function fillDisk(file: string): Promise<number> {
  const handle = await open(file, 'w')
  try {
    for (const size of [MB, 4096]) {
      const zeros = Buffer.alloc(size)
      for (;;) {
        try {
          await handle.write(zeros)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
          break
        }
      }
    }
  } finally {
    await handle.close()
  }
  const { bavail, bsize } = await statfs(path.dirname(file))
  return bavail * bsize
}

/** 100 kB of WAL and nothing else: no table needs space for it. */
const EMIT_WAL = "select pg_logical_emit_message(false, 'disk-full-test', repeat('x', 100000))"
const RESERVE = 'pglite-dev-db.reserve'
/** In a child process: PGlite on argv[1] with a table, 'open', then once stdin says the disk is full, WAL until it fails. */
const CRASH_SCRIPT = `
import { PGlite } from '@electric-sql/pglite'
const [dataDir, emit] = process.argv.slice(1)
const db = await PGlite.create({ dataDir })
await db.exec('create table kept (id int); insert into kept values (42)')
console.log('open')
process.stdin.once('data', async () => {
  for (let i = 0; i < 400; i++) {
    try { await db.query(emit) } catch (error) { console.log(String(error.message)); break }
  }
  process.exit(0)
})
`

/** The WAL segment being written, and how much of it is. */
async function walAt(client: RawClient): Promise<{ segment: string; fraction: number }> {
  const { rows, errors } = await client.query(
    "select pg_walfile_name(pg_current_wal_insert_lsn()), ((pg_current_wal_insert_lsn() - '0/0') % 16777216) / 16777216.0",
  )
  expect(errors).toEqual([])
  return { segment: rows[0]![0]!, fraction: Number(rows[0]![1]) }
}

/** WAL written until the segment being written is `fraction` full. */
async function walUntil(client: RawClient, fraction: number): Promise<string> {
  for (;;) {
    const at = await walAt(client)
    if (at.fraction >= fraction) return at.segment
    expect((await client.query(EMIT_WAL)).errors).toEqual([])
  }
}

/** The data dir's next WAL segment and the reserve, which the server makes once the current segment is 3/4 full. */
async function walSpaceReady(dataDir: string, current: string): Promise<void> {
  const pgWal = path.join(dataDir, 'pg_wal')
  await expect
    .poll(
      async () =>
        (await readdir(pgWal)).filter((name) => (/^[0-9A-F]{24}$/.test(name) && name > current) || name === RESERVE)
          .length,
      { timeout: 10_000 },
    )
    .toBe(2)
}

/** One row a transaction, 2 kB each: a few fill the table's last page, then each needs a new one. Acknowledged, refused. */
async function rowByRow(client: RawClient, count: number): Promise<{ acked: number; refused: string[] }> {
  let acked = 0
  const refused: string[] = []
  for (let i = 1; i <= count; i++) {
    const { errors } = await client.query(`insert into t values (${i}, repeat('x', 2000))`)
    if (errors.length === 0) acked++
    else refused.push(...errors.map((e) => e.code))
  }
  return { acked, refused }
}

describe('the disk under the data dir fills up', () => {
  it('the write that needs space gets ERROR 53100, reads go on, and once space is freed writes work again', async () => {
    const disk = await mountTmpfs(64)
    const dev = await start({ dataDir: path.join(disk, 'data') })
    const writer = await connect(dev.url)
    const reader = await connect(dev.url)
    expect((await writer.query("create table t (id int, v text); insert into t values (1, 'before')")).errors).toEqual(
      [],
    )
    const db = dev.databases.main

    const free = await fillDisk(path.join(disk, 'filler'))
    expect(free, `${free} bytes still free`).toBeLessThan(64 * 1024)
    const big = await writer.query(
      'insert into t select g, repeat(md5(g::text), 100) from generate_series(2, 20000) g',
      { deadlineMs: 30_000 },
    )
    expect(
      big.errors.map((e) => [e.severity, e.code]),
      JSON.stringify(big.errors),
    ).toEqual([['ERROR', '53100']])
    expect(big.errors[0]!.message).toMatch(/No space left on device/)
    expect(big.status).toBe('I')
    // The database did not die over it: the same instance serves on, and the others read what was committed.
    expect(dev.databases.main).toBe(db)
    expect((await reader.query('select id, v from t')).rows).toEqual([['1', 'before']])

    await rm(path.join(disk, 'filler'))
    const again = await writer.query(
      'insert into t select g, repeat(md5(g::text), 100) from generate_series(2, 20000) g',
      { deadlineMs: 30_000 },
    )
    expect(again.errors).toEqual([])
    expect((await reader.query('select count(*) from t')).rows).toEqual([['20000']])
  })

  it('one row a transaction on a full disk while the WAL moves into a new segment: 53100 for rows that need space, the database lives on', async () => {
    const disk = await mountTmpfs(96)
    const dataDir = path.join(disk, 'data')
    const dev = await start({ dataDir })
    const writer = await connect(dev.url)
    const reader = await connect(dev.url)
    expect((await writer.query("create table t (id int, v text); insert into t values (0, 'before')")).errors).toEqual(
      [],
    )
    const db = dev.databases.main
    const segment = await walUntil(writer, 0.8)
    await walSpaceReady(dataDir, segment)
    expect(await fillDisk(path.join(disk, 'filler'))).toBeLessThan(64 * 1024)

    const { acked, refused } = await rowByRow(writer, 200)
    expect(acked).toBeGreaterThan(0)
    expect(refused.length).toBeGreaterThan(0)
    expect(new Set(refused)).toEqual(new Set(['53100']))
    // Into the segment made ready: PostgreSQL makes none, so no PANIC (before, the database ended here).
    while ((await walAt(writer)).segment === segment) expect((await writer.query(EMIT_WAL)).errors).toEqual([])
    expect(dev.databases.main).toBe(db)
    expect((await reader.query('select count(*) from t')).rows).toEqual([[String(1 + acked)]])

    await rm(path.join(disk, 'filler'))
    expect(
      (await writer.query("insert into t select g, repeat('x', 2000) from generate_series(1, 1000) g")).errors,
    ).toEqual([])
    expect((await reader.query('select count(*) from t')).rows).toEqual([[String(1 + acked + 1000)]])
  })

  it('a database that died of WAL on a full disk reopens on it from its reserve: every acknowledged row is read, and WAL goes on', async () => {
    const disk = await mountTmpfs(96)
    const dataDir = path.join(disk, 'data')
    const dev = await start({ dataDir })
    const writer = await connect(dev.url)
    expect((await writer.query("create table t (id int, v text); insert into t values (0, 'before')")).errors).toEqual(
      [],
    )
    const db = dev.databases.main
    await walSpaceReady(dataDir, await walUntil(writer, 0.8))
    expect(await fillDisk(path.join(disk, 'filler'))).toBeLessThan(64 * 1024)
    const { acked } = await rowByRow(writer, 20)

    // Through the segment made ready and into the next, which cannot be made: PostgreSQL PANICs, as it would.
    let ended: unknown = null
    for (let i = 0; i < 400 && ended === null; i++) {
      ended = await writer.query(EMIT_WAL).then(
        (reply) => (reply.errors.length > 0 ? reply.errors : null),
        (error: unknown) => error,
      )
    }
    expect(ended).not.toBeNull()
    // Reopened from its files, on the disk that is still full: its recovery wrote into the reserve.
    await expect.poll(() => dev.databases.main !== db, { timeout: 30_000 }).toBe(true)
    const { bavail, bsize } = await statfs(disk)
    expect(bavail * bsize).toBeLessThan(64 * 1024)
    const reader = await connect(dev.url)
    expect((await reader.query('select count(*) from t')).rows).toEqual([[String(1 + acked)]])
    // Its recovery's checkpoint recycled the old segments: WAL has room again without new space.
    for (let i = 0; i < 200; i++) expect((await reader.query(EMIT_WAL)).errors).toEqual([])
  })

  it('without a reserve, a database that died of WAL on a full disk says what space it waits for, and reopens by itself once that is freed', async () => {
    const disk = await mountTmpfs(96)
    const dataDir = path.join(disk, 'data')
    const records: LogRecord[] = []
    const dev = await start({
      dataDir,
      logger: createLogger({ level: 'info', sink: (record) => records.push(record) }),
    })
    const writer = await connect(dev.url)
    expect((await writer.query("create table t (id int, v text); insert into t values (0, 'before')")).errors).toEqual(
      [],
    )
    const db = dev.databases.main
    await walSpaceReady(dataDir, await walUntil(writer, 0.8))
    await fillDisk(path.join(disk, 'filler'))
    // The reserve taken away, its space still taken: as where it could not be made.
    await rename(path.join(dataDir, 'pg_wal', RESERVE), path.join(disk, 'reserve-taken'))

    let ended: unknown = null
    for (let i = 0; i < 400 && ended === null; i++)
      ended = await writer.query(EMIT_WAL).then(
        (reply) => (reply.errors.length > 0 ? reply.errors : null),
        (error: unknown) => error,
      )
    expect(ended).not.toBeNull()
    const waiting = () =>
      records.find((r) => r.msg === 'cannot reopen the database until space is freed; waiting for it')
    await expect.poll(waiting, { timeout: 30_000 }).toBeDefined()
    expect(String(waiting()!.fields.error)).toMatch(
      new RegExp(`no space left on device.* 16\\.0 MB free in ${path.join(dataDir, 'pg_wal')}`),
    )
    expect(dev.databases.main).toBe(db)

    await rm(path.join(disk, 'filler'))
    // It looks every 2 s, then recovers from the WAL: under load that has taken more than 30 s. Past the wait, the
    // server's log says how far it got.
    await expect
      .poll(() => dev.databases.main !== db, { timeout: 45_000 })
      .toBe(true)
      .catch((error: unknown) => {
        const log = records.map((r) => `${r.level} ${r.msg} ${JSON.stringify(r.fields)}`).join('\n')
        throw new Error(`not reopened 45 s after the space was freed; the server's log:\n${log}`, { cause: error })
      })
    const reader = await connect(dev.url)
    expect((await reader.query("insert into t values (1, 'after'); select count(*) from t")).rows).toEqual([['2']])
  }, 120_000)
})

describe('a start where the data dir cannot be written', () => {
  /**
   * The command on `dataDir`: its exit status, stdout and stderr lines, with logging silenced as a script would. A
   * start that fails once the port listens (opening the database) prints the URL line first, then exits 1.
   */
  async function startCommand(dataDir: string) {
    const io = captureIo()
    const exit = main(
      ['--port', '0', '--data-dir', dataDir, '--no-migrations', '--no-tls', '--log-level', 'silent'],
      io.io,
    )
    const code = await withDeadline(exit, 60_000, `the command on ${dataDir} exits (it must not serve)`)
    return { code, stdout: io.stdout, stderr: io.stderr }
  }

  /** `existing`: the data dir already holds a database (a restart), else it is to be made. */
  async function dataDirOn(disk: string, existing: boolean): Promise<string> {
    const dataDir = path.join(disk, 'data')
    if (existing) {
      await mkdir(dataDir)
      await cp(inject('pgliteTemplateDir'), dataDir, { recursive: true })
    }
    return dataDir
  }

  it.each([
    ['a new data dir', false],
    ['an existing database', true],
  ])('on a full disk, %s: exit 1 with one line naming the directory and "no space left"', async (_, existing) => {
    const disk = await mountTmpfs(existing ? 64 : 16)
    const dataDir = await dataDirOn(disk, existing)
    await fillDisk(path.join(disk, 'filler'))
    const { code, stdout, stderr } = await startCommand(dataDir)
    expect({ code, stdout }).toEqual({ code: 1, stdout: [] })
    expect(stderr, stderr.join('\n')).toHaveLength(1)
    expect(stderr[0]).toMatch(/^pglite-dev-db: /)
    expect(stderr[0]).toContain(dataDir)
    expect(stderr[0]).toMatch(/no space left on device/i)
  })

  /** The data dir on a tmpfs remounted read-only. */
  async function refusedOnReadOnly(existing: boolean): Promise<void> {
    const disk = await mountTmpfs(64)
    const dataDir = await dataDirOn(disk, existing)
    await run('mount', ['-o', 'remount,ro', disk])
    const { code, stdout, stderr } = await startCommand(dataDir)
    expect({ code, stdout }).toEqual({ code: 1, stdout: [] })
    expect(stderr, stderr.join('\n')).toHaveLength(1)
    expect(stderr[0]).toMatch(/^pglite-dev-db: /)
    expect(stderr[0]).toContain(dataDir)
    expect(stderr[0]).toMatch(/read-only/i)
  }

  /**
   * A database whose PostgreSQL PANICked on a full disk needing a new WAL segment (as a server killed there leaves it),
   * with `room` bytes freed after. `reserve`: with the WAL reserve a server keeps.
   */
  async function crashedOnFullDisk(reserve: boolean, room: number): Promise<string> {
    const disk = await mountTmpfs(64)
    const dataDir = await dataDirOn(disk, true)
    if (reserve) await writeFile(path.join(dataDir, 'pg_wal', RESERVE), Buffer.alloc(16 * MB))
    // PGlite in a process of its own, whose exit closes the files it holds (a dead PGlite does not).
    const child = spawn(process.execPath, ['--input-type=module', '-e', CRASH_SCRIPT, dataDir, EMIT_WAL], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    const exited = once(child, 'exit')
    onTestFinished(() => stopChild(child, exited, () => child.kill('SIGKILL'), 5_000, 'the PGlite process'))
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
    const next = async () =>
      (await withDeadline(lines.next(), 30_000, 'a line from the PGlite process')).value as string
    expect(await next()).toBe('open')
    const filler = path.join(disk, 'filler')
    await fillDisk(filler)
    child.stdin.end('full\n')
    expect(await next()).toMatch(/could not write to file "pg_wal\/xlogtemp\.\d+": No space left on device/)
    await exited
    await truncate(filler, (await stat(filler)).size - room)
    return dataDir
  }

  it('after a PANIC on a full disk, with less free than a WAL segment: exit 1 with one line naming pg_wal, the space needed and the space free', async () => {
    const dataDir = await crashedOnFullDisk(false, 4 * MB)
    const { code, stdout, stderr } = await startCommand(dataDir)
    // Found while opening the database, after the URL line.
    expect(code).toBe(1)
    expect(stdout.filter((line) => !line.startsWith('postgres://'))).toEqual([])
    expect(stderr, stderr.join('\n')).toHaveLength(1)
    expect(stderr[0]).toMatch(/^pglite-dev-db: /)
    expect(stderr[0]).toContain(path.join(dataDir, 'pg_wal'))
    expect(stderr[0]).toMatch(/no space left on device.* 16\.0 MB .*4\.\d MB free/i)
  })

  it('after a PANIC on a full disk, with the WAL reserve a server keeps: the start recovers into it and serves every row', async () => {
    const dataDir = await crashedOnFullDisk(true, 64 * 1024)
    const io = captureIo()
    const exit = main(
      ['--port', '0', '--data-dir', dataDir, '--no-migrations', '--no-tls', '--log-level', 'silent'],
      io.io,
    )
    const url = await withDeadline(
      Promise.race([
        io.firstLine,
        exit.then((code) => Promise.reject(new Error(`exit ${code}: ${io.stderr.join('\n')}`))),
      ]),
      30_000,
      'the URL line',
    )
    const client = await connect(url)
    expect((await client.query('select id from kept')).rows).toEqual([['42']])
    io.stop()
    expect(await withDeadline(exit, 10_000, 'the command stops')).toBe(0)
  })

  it('on a read-only file system, an existing database: exit 1 with one line naming the directory and "read-only"', async () => {
    await refusedOnReadOnly(true)
  })
})
