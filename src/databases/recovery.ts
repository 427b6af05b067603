// A database whose PGlite died (a FATAL or PANIC, a full disk, a statement that could not be stopped and whose thread
// was ended) is reopened: its clients were told; the database is opened again from its data dir (every committed
// transaction is there), or in memory from what its files still held (as after a crash) or, failing that, the
// migrated state.

import type { Logger } from '../log.ts'
import type { DbThread } from '../engine/thread.ts'
import type { Instance } from './database-builder.ts'
import { lackOfSpace, placeReserve } from './wal-reserve.ts'

/** A database that died is reopened: tried again this often, and given up on after this long. */
const RECOVERY_RETRY_MS = 2_000
const RECOVERY_GIVE_UP_MS = 10 * 60_000

/** What a reopening needs of the databases (databases.ts Databases). */
export interface Reopening {
  readonly log: Logger
  /** The server is stopping: nothing more is tried. */
  closed(): boolean
  /** `db` is still what serves database `name`. */
  serves(name: string, db: Instance): boolean
  /** The data dir of database `name`; null in memory. */
  onDisk(name: string): string | null
  /** Database `name` opened again: from its data dir, from `rescued` files, or at the migrated state. */
  reopen(name: string, rescued: Blob | null): Promise<Instance>
  /** `db` serves database `name` from now on. */
  adopt(name: string, db: Instance): void
  recovered(dead: Instance, db: Instance): void
  lost(name: string, error: Error): void
  /** Runs `work` after the work queued on `name`. */
  serialize<T>(name: string, work: () => Promise<T>): Promise<T>
}

/**
 * Reopen database `name`, whose `dead` thread died of `cause`. On disk, the WAL segment its recovery writes first is
 * the reserve kept for it (wal-reserve.ts), so it reopens on a full disk too; without one, it waits for that much
 * space, for as long as it takes. Another failure is tried again, for a while.
 */
export function reopenAfterDeath(databases: Reopening, name: string, dead: DbThread, cause: Error): void {
  if (databases.closed()) return
  const { log } = databases
  log.error('a database stopped unexpectedly; reopening it', { database: name, error: cause })
  const started = performance.now()
  void databases.serialize(name, async () => {
    if (!databases.serves(name, dead)) return
    const dir = databases.onDisk(name)
    // Files that cannot be read back leave the migrated state to reopen from (logged below as what was lost).
    const rescued =
      dir === null
        ? await dead.rescueFiles().catch((error: unknown) => {
            log.warn("the stopped database's files could not be read back", { database: name, error })
            return null
          })
        : null
    await dead
      .close(0)
      .catch((error: unknown) =>
        log.warn("the stopped database's thread did not end cleanly", { database: name, error }),
      )
    let giveUpAt = started + RECOVERY_GIVE_UP_MS
    for (let attempt = 1; !databases.closed(); attempt++) {
      try {
        if (dir !== null && (await placeReserve(dir)))
          log.info("the WAL segment kept in reserve takes the recovery's first writes", { database: name })
        const db = await databases.reopen(name, rescued)
        databases.adopt(name, db)
        databases.recovered(dead, db)
        log.info('database reopened', {
          database: name,
          ms: Math.round(performance.now() - started),
          ...(rescued === null && dir === null ? { lost: 'everything since the migrated state' } : {}),
        })
        return
      } catch (error) {
        const lack = dir === null ? null : await lackOfSpaceMessage(dir, log)
        if (lack) {
          log.error('cannot reopen the database until space is freed; waiting for it', { database: name, error: lack })
          await spaceFreed(databases, dir!)
          giveUpAt = performance.now() + RECOVERY_GIVE_UP_MS
          continue
        }
        if (performance.now() > giveUpAt) {
          log.error('cannot reopen the database; giving up', { database: name, error })
          databases.lost(name, error as Error)
          return
        }
        if (attempt === 1 || attempt % 15 === 0)
          log.error('cannot reopen the database yet; trying again every 2 s', { database: name, error })
        await new Promise((resolve) => setTimeout(resolve, RECOVERY_RETRY_MS))
      }
    }
  })
}

/** Resolves once `dir`'s file system has the space a recovery needs (looked at every few seconds), or the server stops. */
async function spaceFreed(databases: Reopening, dir: string): Promise<void> {
  while (!databases.closed()) {
    await new Promise((resolve) => setTimeout(resolve, RECOVERY_RETRY_MS))
    if ((await lackOfSpaceMessage(dir, databases.log)) === null) return
  }
}

/** lackOfSpace's message; null when there is room or the file system cannot be asked (that is logged). */
async function lackOfSpaceMessage(dir: string, log: Logger): Promise<string | null> {
  try {
    return (await lackOfSpace(dir))?.message ?? null
  } catch (error) {
    log.warn('cannot read the free space of a data dir', { dataDir: dir, error })
    return null
  }
}
