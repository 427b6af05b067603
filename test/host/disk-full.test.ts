// A data dir on a disk that fills up, or that cannot be written: the client whose write needs the space gets
// ERROR 53100 (as from Postgres) and everyone else goes on; once space is freed, writes work again; a start there
// fails with one line that names the directory and why. Each test mounts a small tmpfs of its own, which needs root
// (CI runs as root: .ci/run); as another user every test here fails saying so, rather than passing unseen.
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, open, rm, statfs } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { withDeadline } from '../../harness/raw-client.ts'

const run = promisify(execFile)
const { start, connect } = useDevDbs()
const MB = 2 ** 20

/** A tmpfs of `sizeMb` at a fresh directory, unmounted (after the servers of the test closed) and removed after it. */
async function mountTmpfs(sizeMb: number): Promise<string> {
  if (process.getuid?.() !== 0) {
    throw new Error(`this test mounts a ${sizeMb} MB tmpfs to fill it, which needs root (uid ${process.getuid?.()}); CI runs it as root (.ci/run)`)
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglite-disk-'))
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir])
  // onTestFinished runs after afterEach, where useDevDbs closes the servers that hold files here.
  onTestFinished(async () => {
    try {
      await run('umount', [dir])
    } catch (error) {
      // Still busy: detach it anyway so no mount outlives the run, and say so.
      await run('umount', ['-l', dir])
      throw new Error(`${dir} was still in use; unmounted lazily`, { cause: error })
    }
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}

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

describe('the disk under the data dir fills up', () => {
  it('the write that needs space gets ERROR 53100, reads go on, and once space is freed writes work again', async () => {
    const disk = await mountTmpfs(64)
    const dev = await start({ dataDir: path.join(disk, 'data') })
    const writer = await connect(dev.url)
    const reader = await connect(dev.url)
    expect((await writer.query("create table t (id int, v text); insert into t values (1, 'before')")).errors).toEqual([])
    const db = dev.databases.main

    const free = await fillDisk(path.join(disk, 'filler'))
    expect(free, `${free} bytes still free`).toBeLessThan(64 * 1024)
    const big = await writer.query("insert into t select g, repeat(md5(g::text), 100) from generate_series(2, 20000) g", { deadlineMs: 30_000 })
    expect(big.errors.map((e) => [e.severity, e.code]), JSON.stringify(big.errors)).toEqual([['ERROR', '53100']])
    expect(big.errors[0]!.message).toMatch(/No space left on device/)
    expect(big.status).toBe('I')
    // The database did not die over it: the same instance serves on, and the others read what was committed.
    expect(dev.databases.main).toBe(db)
    expect((await reader.query('select id, v from t')).rows).toEqual([['1', 'before']])

    await rm(path.join(disk, 'filler'))
    const again = await writer.query("insert into t select g, repeat(md5(g::text), 100) from generate_series(2, 20000) g", { deadlineMs: 30_000 })
    expect(again.errors).toEqual([])
    expect((await reader.query('select count(*) from t')).rows).toEqual([['20000']])
  })
})

describe('a start where the data dir cannot be written', () => {
  /** The command on `dataDir`: its exit status, stdout and stderr lines, with logging silenced as a script would. */
  async function startCommand(dataDir: string) {
    const io = captureIo()
    const exit = main(['--port', '0', '--data-dir', dataDir, '--no-migrations', '--no-tls', '--log-level', 'silent'], io.io)
    const started = await withDeadline(Promise.race([exit.then(() => false), io.firstLine.then(() => true)]), 30_000, 'the command exits or serves')
    if (started) {
      io.stop()
      await withDeadline(exit, 10_000, 'the command stops')
      throw new Error(`the command started on ${dataDir}: ${io.stdout.join(' ')}`)
    }
    return { code: await exit, stdout: io.stdout, stderr: io.stderr }
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

  it('on a read-only file system, an existing database: exit 1 with one line naming the directory and "read-only"', async () => {
    await refusedOnReadOnly(true)
  })

})
