// One server per data directory. PGlite keeps the database in memory and writes it back to the directory, so
// two servers on one directory would each serve their own copy and one's commits would be lost. The lock is a
// file in the directory holding the owner's pid; a lock left by a process that no longer runs (kill -9) is taken over.

import { readFileSync } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { DevServerError } from '../errors.ts'

export const LOCK_FILE = 'pglite-dev-db.lock'

/** Directories this process holds: a second startDevDb on the same directory in one process is refused too. */
const heldHere = new Set<string>()

export interface DataDirLock {
  release(): Promise<void>
}

export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_FILE)
  if (heldHere.has(dataDir)) throw inUse(dataDir, process.pid)
  for (let tries = 0; ; tries++) {
    try {
      const file = await open(path, 'wx')
      try {
        await file.writeFile(`${process.pid}\n`)
      } finally {
        await file.close()
      }
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 0) throw lockError(dataDir, error)
    }
    const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isRunning(owner)) throw inUse(dataDir, owner)
    // Stale: its process is gone (or it is this process, which holds nothing here). Take it over.
    await unlink(path).catch(() => {})
  }
  heldHere.add(dataDir)
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      heldHere.delete(dataDir)
      await unlink(path).catch(() => {})
    },
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  // A killed server whose parent has not reaped it yet still answers kill(0) on Linux: a zombie holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true
  }
}

function inUse(dataDir: string, pid: number): DevServerError {
  return new DevServerError(
    'ERR_DATA_DIR_LOCKED',
    `the data directory ${dataDir} is in use by another pglite-dev-db (pid ${pid}${pid === process.pid ? ', this process' : ''}); stop it, or choose another --data-dir`,
  )
}

function lockError(dataDir: string, cause: unknown): DevServerError {
  return new DevServerError('ERR_DATA_DIR_LOCKED', `cannot lock the data directory ${dataDir}: ${(cause as Error).message}`, { cause })
}
