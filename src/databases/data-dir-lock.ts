// One server per data directory. PGlite keeps the database in memory and writes it back to the directory, so two
// servers on one directory would each serve their own copy and one's commits would be lost. The lock is a file in the
// directory naming its owner; one left by a process that no longer runs (kill -9) is taken over, atomically.

import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { constants, copyFile, link, open, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DevServerError } from '../errors.ts'

export const LOCK_FILE = 'pglite-dev-db.lock'

/** The lock file, or one of the files taking it (drafts, takeover markers): none of them is part of the database. */
export function isLockFile(name: string): boolean {
  return name === LOCK_FILE || name.startsWith(`${LOCK_FILE}.`)
}

/** As PostgreSQL's CreateLockFile: a lock that keeps changing under us is given up on after this many looks. */
const MAX_TRIES = 100
/** Takeovers of takeovers (each needs a process killed within the microseconds one lasts): past this, give up. */
const MAX_DEPTH = 4

/**
 * What a lock file (or a takeover marker) says, one item a line: the pid first (all older versions wrote), then
 * when that process started, then a token no other lock file ever had.
 */
interface Owner {
  pid: number
  /** `<boot id>/<start time in clock ticks>` from /proc; null where there is no /proc, or from an older version. */
  started: string | null
  /** Random; the content of an older version's file (its pid only) with its inode number in its place. */
  token: string
}

export interface DataDirLock {
  release(): Promise<void>
}

/** Tokens of the lock files and markers this process holds or is taking: a record of this pid is live only if here. */
const heldTokens = new Set<string>()

/**
 * Takes `dataDir` for this process, or throws ERR_DATA_DIR_LOCKED naming the live owner. The file is made whole beside
 * the lock and then linked to its name, so no one ever reads it half-written. A stale lock is replaced (rename) only
 * by the process that created its takeover marker, a name unique to that lock file: of any number of processes that
 * found it stale, exactly one replaces it, and the others then find it held.
 */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, LOCK_FILE)
  const mine: Owner = { pid: process.pid, started: startOf(process.pid), token: randomBytes(16).toString('hex') }
  const draft = `${path}.${mine.pid}-${mine.token}`
  heldTokens.add(mine.token)
  let holder: Owner | null
  try {
    await writeFile(draft, `${mine.pid}\n${mine.started ?? '-'}\n${mine.token}\n`, { flag: 'wx' })
    try {
      holder = await claim(path, draft, 0)
    } finally {
      await unlink(draft).catch(ignoreMissing)
    }
  } catch (error) {
    heldTokens.delete(mine.token)
    if (error instanceof DevServerError) throw error
    throw new DevServerError(
      'ERR_DATA_DIR_LOCKED',
      `cannot lock the data directory ${dataDir}: ${(error as Error).message}`,
      { cause: error },
    )
  }
  if (holder !== null) {
    heldTokens.delete(mine.token)
    throw inUse(dataDir, holder.pid)
  }
  let released = false
  return {
    async release() {
      if (released) return
      released = true
      // Still ours: only the process that took over our token could have replaced it, and it would have found us live.
      await unlink(path).catch(ignoreMissing)
      heldTokens.delete(mine.token)
    },
  }
}

/** Makes `target` a link to `draft`. Null once it is; the owner if a live process holds it (or is taking it). */
async function claim(target: string, draft: string, depth: number): Promise<Owner | null> {
  if (depth > MAX_DEPTH)
    throw new Error(
      `too many interrupted takeovers of ${target}; remove the ${LOCK_FILE}.* files if no server uses the directory`,
    )
  for (let tries = 0; tries < MAX_TRIES; tries++) {
    try {
      await place(draft, target)
      return null
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const found = await readOwner(target)
    if (found === null) continue // released since: try again
    if (isLive(found)) return found
    const outcome = await takeOver(target, found, draft, depth)
    if (outcome === 'taken') return null
    if (outcome === 'changed') continue
    // A live process holds the marker. If `found` is still there, it will replace it: the process that holds the
    // directory from now on. If not, it came late too, and someone else replaced `found`: look again.
    if ((await readOwner(target))?.token === found.token) return outcome
  }
  throw new Error(`${target} kept changing; gave up after ${MAX_TRIES} tries`)
}

/**
 * Replaces `stale` at `target` by a link to `draft`, as the one holder of its marker: 'taken'; 'changed' when another
 * process replaced it first (or it was removed); the owner of the marker when a live process is replacing it now.
 */
async function takeOver(
  target: string,
  stale: Owner,
  draft: string,
  depth: number,
): Promise<'taken' | 'changed' | Owner> {
  const marker = `${target}.takeover-${stale.token}`
  // A marker left by a process killed while it held one is stale in turn, and taken over the same way.
  const taking = await claim(marker, draft, depth + 1)
  if (taking !== null) return taking
  try {
    const now = await readOwner(target)
    if (now === null || now.token !== stale.token) return 'changed'
    // rename() replaces atomically: `target` is never missing, so no process can create it meanwhile.
    const spare = `${draft}.new`
    await unlink(spare).catch(ignoreMissing)
    await place(draft, spare)
    await rename(spare, target)
    return 'taken'
  } finally {
    await unlink(marker)
  }
}

/**
 * Creates `target` as `draft`, failing with EEXIST if it exists. A hard link appears whole; where the file system has
 * none (vfat, some network mounts), a copy can be read half-written, which a reader takes for another owner than the
 * whole file names and so never replaces (takeOver compares the whole token again).
 */
async function place(draft: string, target: string): Promise<void> {
  try {
    await link(draft, target)
  } catch (error) {
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error
    await copyFile(draft, target, constants.COPYFILE_EXCL)
  }
}

/** The owner `path` names, or null if there is no such file. Read through one descriptor, so token and inode agree. */
async function readOwner(path: string): Promise<Owner | null> {
  let file
  try {
    file = await open(path, 'r')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  try {
    const [text, { ino }] = await Promise.all([file.readFile('utf8'), file.stat()])
    const [pid = '', started, token] = text.split('\n')
    return {
      pid: Number.parseInt(pid, 10),
      started: started && started !== '-' ? started : null,
      token: token || `legacy-${ino}`,
    }
  } finally {
    await file.close()
  }
}

function isLive(owner: Owner): boolean {
  if (!Number.isInteger(owner.pid) || owner.pid <= 0) return false
  if (owner.pid === process.pid) return owner.started === startOf(process.pid) && heldTokens.has(owner.token)
  try {
    process.kill(owner.pid, 0)
  } catch (error) {
    // EPERM: it exists but belongs to another user; whether it is the owner, its start time says.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const stat = procStat(owner.pid)
  // No /proc (macOS): a live pid is taken for the owner, as PostgreSQL takes it.
  if (stat === 'unknown') return true
  // Gone since kill(0), or a killed server its parent has not reaped yet (a zombie answers kill(0) on Linux).
  if (stat === 'gone' || stat.state === 'Z') return false
  // The pid was given to another process since (a restarted container, a reboot): the owner is gone.
  return owner.started === null || owner.started === `${stat.bootId}/${stat.startTicks}`
}

/** This boot's id and `pid`'s start time, which together name one process for good; null without /proc. */
function startOf(pid: number): string | null {
  const stat = procStat(pid)
  return typeof stat === 'string' ? null : `${stat.bootId}/${stat.startTicks}`
}

/** From /proc (proc(5)); 'unknown' where there is none. */
function procStat(pid: number): { state: string; startTicks: string; bootId: string } | 'gone' | 'unknown' {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    bootIdCache ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' && hasProc() ? 'gone' : 'unknown'
  }
  // The command name in parentheses may hold spaces: fields count from its closing one (state 3, starttime 22).
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0] ?? '', startTicks: fields[19] ?? '', bootId: bootIdCache }
}

let bootIdCache: string | undefined
const hasProc = (): boolean => existsSync('/proc/self/stat')

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
}

function inUse(dataDir: string, pid: number): DevServerError {
  return new DevServerError(
    'ERR_DATA_DIR_LOCKED',
    `the data directory ${dataDir} is in use by another pglite-dev-db (pid ${pid}${pid === process.pid ? ', this process' : ''}); stop it, or choose another --data-dir`,
  )
}
