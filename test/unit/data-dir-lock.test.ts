// The data dir lock on its own: what a lock file's owner record proves, and the takeover's leftovers. Many processes
// at once are test/host/data-dir-lock.test.ts.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { LOCK_FILE, lockDataDir } from '../../src/databases/data-dir-lock.ts'

async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglite-lock-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A pid that no process has any more. */
async function deadPid(): Promise<number> {
  const child = spawn('true')
  await once(child, 'exit')
  return child.pid!
}

/** A live process that is no pglite-dev-db, killed after the test. */
function liveStranger(): number {
  const child = spawn('sleep', ['60'])
  onTestFinished(() => void child.kill('SIGKILL'))
  return child.pid!
}

/** `<boot id>/<start time>` of `pid`, as the lock file records it. */
async function startOf(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()
  return `${bootId}/${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`
}

const lockFiles = async (dir: string) => (await readdir(dir)).filter((name) => name.startsWith(LOCK_FILE)).sort()

describe('lockDataDir', () => {
  it('two calls at once in one process: one takes the directory, the other is refused naming this process', async () => {
    const dir = await scratchDir()
    const results = await Promise.allSettled([lockDataDir(dir), lockDataDir(dir), lockDataDir(dir)])
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected', 'rejected'])
    for (const r of results)
      if (r.status === 'rejected')
        expect(r.reason).toMatchObject({
          code: 'ERR_DATA_DIR_LOCKED',
          message: expect.stringContaining(`pid ${process.pid}, this process`),
        })
    for (const r of results) if (r.status === 'fulfilled') await r.value.release()
    expect(await lockFiles(dir)).toEqual([])
  })

  it('writes its pid first, then its start, then a token of its own', async () => {
    const dir = await scratchDir()
    const lock = await lockDataDir(dir)
    const [pid, started, token, end] = (await readFile(path.join(dir, LOCK_FILE), 'utf8')).split('\n')
    expect([pid, started, token?.length, end]).toEqual([String(process.pid), await startOf(process.pid), 32, ''])
    await lock.release()
  })

  it('takes over a lock naming a live process that started after the lock was written (its pid was reused)', async () => {
    const dir = await scratchDir()
    const stranger = liveStranger()
    const [bootId] = (await startOf(stranger)).split('/')
    await writeFile(path.join(dir, LOCK_FILE), `${stranger}\n${bootId}/1\n${'ab'.repeat(16)}\n`)
    const lock = await lockDataDir(dir)
    expect((await readFile(path.join(dir, LOCK_FILE), 'utf8')).split('\n')[0]).toBe(String(process.pid))
    expect(await lockFiles(dir)).toEqual([LOCK_FILE])
    await lock.release()
  })

  it('is refused by a lock naming a live process that is its writer, or by an older lock naming a live pid', async () => {
    const dir = await scratchDir()
    const stranger = liveStranger()
    for (const content of [`${stranger}\n${await startOf(stranger)}\n${'cd'.repeat(16)}\n`, `${stranger}\n`]) {
      await writeFile(path.join(dir, LOCK_FILE), content)
      await expect(lockDataDir(dir)).rejects.toMatchObject({
        code: 'ERR_DATA_DIR_LOCKED',
        message: expect.stringContaining(`(pid ${stranger})`),
      })
      expect(await readFile(path.join(dir, LOCK_FILE), 'utf8')).toBe(content)
      expect(await lockFiles(dir)).toEqual([LOCK_FILE])
    }
  })

  it('a takeover marker left by a process killed during a takeover is taken over in turn, and nothing is left but the lock', async () => {
    const dir = await scratchDir()
    const stale = 'ef'.repeat(16)
    await writeFile(path.join(dir, LOCK_FILE), `${await deadPid()}\n-\n${stale}\n`)
    await writeFile(path.join(dir, `${LOCK_FILE}.takeover-${stale}`), `${await deadPid()}\n-\n${'01'.repeat(16)}\n`)
    const lock = await lockDataDir(dir)
    expect(await lockFiles(dir)).toEqual([LOCK_FILE])
    await lock.release()
  })

  it('a takeover under way by a live process: refused naming that process, which will hold the directory', async () => {
    const dir = await scratchDir()
    const stale = '23'.repeat(16)
    const stranger = liveStranger()
    await writeFile(path.join(dir, LOCK_FILE), `${await deadPid()}\n-\n${stale}\n`)
    await writeFile(
      path.join(dir, `${LOCK_FILE}.takeover-${stale}`),
      `${stranger}\n${await startOf(stranger)}\n${'45'.repeat(16)}\n`,
    )
    await expect(lockDataDir(dir)).rejects.toMatchObject({
      code: 'ERR_DATA_DIR_LOCKED',
      message: expect.stringContaining(`(pid ${stranger})`),
    })
    expect(await lockFiles(dir)).toEqual([LOCK_FILE, `${LOCK_FILE}.takeover-${stale}`])
  })
})
