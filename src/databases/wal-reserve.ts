// WAL space made ready ahead of need, so that a full disk cannot end a database. PGlite has no checkpointer: while it
// runs its WAL only grows, each 16 MB segment a file PostgreSQL makes when the last one fills, and a PANIC (the end of
// the database) if the disk is full then; recovering it needs a new segment too. See WalReserve.

import { link, open, readdir, rename, stat, statfs, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { DevServerError } from '../errors.ts'
import type { Logger } from '../log.ts'

/** A segment's worth of zeros in pg_wal, under a name PostgreSQL ignores: the next segment of a recovery. */
export const RESERVE_FILE = 'pglite-dev-db.reserve'
/** The reserve as a data dir tarball names it (snapshots leave it out). */
export const RESERVE_ENTRY = `pg_wal/${RESERVE_FILE}`

/** XLOG_BLCKSZ: WAL is written in pages of this size, each opening with a header that holds its own address. */
const WAL_PAGE = 8192
/** As PostgreSQL's PreallocXlogFiles: the next segment is made once the current one is this full. */
const PREPARE_AT = 0.75
const CHECK_EVERY_MS = 1_000
const ZEROS = Buffer.alloc(1 << 20)
/** initdb's default, which PGlite keeps. */
const DEFAULT_SEGMENT_BYTES = 16 * 2 ** 20

/**
 * Keeps, for the database in `dataDir`, the next WAL segment made once the current one is 3/4 full (as PostgreSQL's
 * checkpointer does), and one segment's worth more in reserve. A segment PostgreSQL finds in place is used without new
 * space; the reserve becomes the segment that the recovery after a PANIC needs (placeReserve), so a database that
 * died on a full disk reopens on it, and its recovery's checkpoint recycles the old segments into new ones.
 */
export class WalReserve {
  readonly #dataDir: string
  readonly #log: Logger
  #timer: NodeJS.Timeout | null = null
  #checking: Promise<void> | null = null
  /** The disk was found full: said once until a segment could be made again. */
  #warned = false
  /** Scratch files of a server killed while it made one were removed (the data dir's lock makes them no one's). */
  #swept = false

  constructor(dataDir: string, log: Logger) {
    this.#dataDir = dataDir
    this.#log = log
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.check(), CHECK_EVERY_MS).unref()
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = null
    await this.#checking
  }

  /** One look: the next segment and the reserve made if they are due. A check under way is waited for instead. */
  check(): Promise<void> {
    this.#checking ??= this.#check().finally(() => (this.#checking = null))
    return this.#checking
  }

  async #check(): Promise<void> {
    const pgWal = join(this.#dataDir, 'pg_wal')
    try {
      if (!this.#swept) {
        const scratch = (await readdir(pgWal)).filter(
          (name) => name.startsWith(`${RESERVE_FILE}.`) && name.endsWith('.tmp'),
        )
        await Promise.all(scratch.map((name) => unlink(join(pgWal, name))))
        this.#swept = true
      }
      const wal = await readWal(pgWal)
      if (wal === null) return
      const { current, ahead, segmentBytes } = wal
      if (ahead === 0) {
        if ((await writtenFraction(pgWal, current, segmentBytes)) < PREPARE_AT) return
        await this.#make(
          pgWal,
          segmentBytes,
          (scratch) => link(scratch, join(pgWal, nameOf(current.timeline, current.number + 1n, segmentBytes))),
          'the next WAL segment',
        )
      }
      // While at most the next segment lies ahead; more (recycled at a checkpoint) are margin enough. Once made, kept.
      if (ahead <= 1 && !(await exists(join(pgWal, RESERVE_FILE)))) {
        await this.#make(
          pgWal,
          segmentBytes,
          (scratch) => rename(scratch, join(pgWal, RESERVE_FILE)),
          'a WAL segment in reserve',
        )
      }
      if (this.#warned) this.#log.info('WAL space is ready again', { dataDir: this.#dataDir })
      this.#warned = false
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      // Dropped or reset meanwhile: the next look sees what is there then.
      if (code === 'ENOENT') return
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        if (!this.#warned) {
          this.#log.warn(
            'the disk is full: WAL space could not be made ready; once the current WAL segment is full the database stops until space is freed',
            { dataDir: this.#dataDir },
          )
        }
        this.#warned = true
        return
      }
      this.#log.warn('cannot make WAL space ready', { dataDir: this.#dataDir, error })
    }
  }

  /** A segment of zeros written beside, then put in place by `place` (which leaves an existing file alone). */
  async #make(pgWal: string, bytes: number, place: (scratch: string) => Promise<void>, what: string): Promise<void> {
    const scratch = join(pgWal, `${RESERVE_FILE}.${process.pid}.tmp`)
    try {
      const file = await open(scratch, 'w')
      try {
        for (let written = 0; written < bytes; written += ZEROS.length)
          await file.write(ZEROS, 0, Math.min(ZEROS.length, bytes - written))
      } finally {
        await file.close()
      }
      // PostgreSQL made it meanwhile: it has it, which is all that was wanted.
      await place(scratch).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      })
      this.#log.debug('made ready', { what, dataDir: this.#dataDir })
    } finally {
      await unlink(scratch).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      })
    }
  }
}

/**
 * Puts the reserve in place as the segment after the one being written, unless one lies ahead already: what a recovery
 * (the reopen after a PANIC, or the next start) writes first, whatever space is free. False if none or no need.
 */
export async function placeReserve(dataDir: string): Promise<boolean> {
  const pgWal = join(dataDir, 'pg_wal')
  const wal = await readWal(pgWal)
  if (wal === null || wal.ahead > 0 || !(await exists(join(pgWal, RESERVE_FILE)))) return false
  try {
    await link(
      join(pgWal, RESERVE_FILE),
      join(pgWal, nameOf(wal.current.timeline, wal.current.number + 1n, wal.segmentBytes)),
    )
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
  await unlink(join(pgWal, RESERVE_FILE))
  return true
}

/**
 * `open()` on the database in `dataDir`; if that fails, once more with the reserve in place. A failure with less free
 * space than a WAL segment is said as such: PostgreSQL's start makes a new segment once the last is 3/4 full, and its
 * recovery after a crash may need one, and PGlite only says "PGlite failed to initialize properly".
 */
export async function openWithWalSpace<T>(dataDir: string, open: () => Promise<T>): Promise<T> {
  try {
    return await open()
  } catch (error) {
    if (!(await placeReserve(dataDir))) throw await explained(dataDir, error)
  }
  try {
    return await open()
  } catch (error) {
    throw await explained(dataDir, error)
  }
}

async function explained(dataDir: string, error: unknown): Promise<unknown> {
  const lack = await lackOfSpace(dataDir)
  return lack === null
    ? error
    : new DevServerError('ERR_PGLITE', `cannot open the database in ${dataDir}: ${lack.message}`, { cause: error })
}

/**
 * When no segment lies ahead of the one being written and `dataDir`'s file system has less free than a segment (what a
 * start or a recovery may need to make): what to say. Null otherwise.
 */
export async function lackOfSpace(dataDir: string): Promise<{ message: string; neededBytes: number } | null> {
  const pgWal = join(dataDir, 'pg_wal')
  const wal = await readWal(pgWal)
  if (wal !== null && wal.ahead > 0) return null
  const neededBytes = wal?.segmentBytes ?? DEFAULT_SEGMENT_BYTES
  const { bavail, bsize } = await statfs(dataDir)
  const freeBytes = bavail * bsize
  if (freeBytes >= neededBytes) return null
  const message = `no space left on device: opening it can need a new WAL segment, ${mb(neededBytes)} free in ${pgWal}, and that file system has ${mb(freeBytes)} free; free space there, or copy the directory to a disk with room`
  return { message, neededBytes }
}

function mb(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MB`
}

interface Segment {
  name: string
  timeline: string
  /** The segment number: its first byte's WAL address divided by the segment size. */
  number: bigint
}

/**
 * The one being written (its first page written for its own address), how many segments lie ahead of it (made ready
 * or recycled), and the segment size; null if there is none.
 */
async function readWal(pgWal: string): Promise<{ current: Segment; ahead: number; segmentBytes: number } | null> {
  const names = await segmentNames(pgWal)
  const newest = names.at(-1)
  if (newest === undefined) return null
  const segmentBytes = (await stat(join(pgWal, newest))).size
  // Ahead of the one being written lie only recycled segments (old addresses) and zeros.
  for (let i = names.length - 1; i >= 0; i--) {
    const segment = parseName(names[i]!, segmentBytes)
    if ((await pageAddresses(pgWal, segment.name, [0]))[0] === segment.number * BigInt(segmentBytes))
      return { current: segment, ahead: names.length - 1 - i, segmentBytes }
  }
  return null
}

/** How much of `segment` PostgreSQL has written: pages are written in order, each headed by its own address. */
async function writtenFraction(pgWal: string, segment: Segment, segmentBytes: number): Promise<number> {
  const pages = segmentBytes / WAL_PAGE
  const start = segment.number * BigInt(segmentBytes)
  let low = 0
  let high = pages - 1
  while (low < high) {
    const middle = Math.ceil((low + high) / 2)
    const [address] = await pageAddresses(pgWal, segment.name, [middle])
    if (address === start + BigInt(middle * WAL_PAGE)) low = middle
    else high = middle - 1
  }
  return (low + 1) / pages
}

/** xlp_pageaddr of each page: the 8 bytes at offset 8 of XLogPageHeaderData (little-endian, as WebAssembly is). */
async function pageAddresses(pgWal: string, name: string, pages: number[]): Promise<bigint[]> {
  const file = await open(join(pgWal, name), 'r')
  try {
    const header = Buffer.alloc(16)
    const addresses: bigint[] = []
    for (const page of pages) {
      const { bytesRead } = await file.read(header, 0, 16, page * WAL_PAGE)
      addresses.push(bytesRead === 16 ? header.readBigUInt64LE(8) : -1n)
    }
    return addresses
  } finally {
    await file.close()
  }
}

/** pg_wal's segment files (24 hex digits: timeline, then the segment number in two halves), in order; none without pg_wal. */
async function segmentNames(pgWal: string): Promise<string[]> {
  try {
    return (await readdir(pgWal)).filter((name) => /^[0-9A-F]{24}$/.test(name)).sort()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

/** XLogFileName's parts: the second half counts segments within one 4 GB "log id". */
function parseName(name: string, segmentBytes: number): Segment {
  const perId = BigInt(2 ** 32 / segmentBytes)
  return {
    name,
    timeline: name.slice(0, 8),
    number: BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16)}`),
  }
}

function nameOf(timeline: string, number: bigint, segmentBytes: number): string {
  const perId = BigInt(2 ** 32 / segmentBytes)
  const hex = (value: bigint) => value.toString(16).toUpperCase().padStart(8, '0')
  return `${timeline}${hex(number / perId)}${hex(number % perId)}`
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw error
    },
  )
}
