// Snapshots: a stopped server's data dir as one gzip tarball (the format of PGlite's dumpDataDir and loadDataDir),
// and a start from one. Taken only while no server holds the data dir: PGlite keeps its working state in memory and
// writes it back as it goes, so the files under a running server are no consistent database.

import { constants } from 'node:fs'
import { access, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { gunzip, gzip } from 'node:zlib'
import type { PGlite } from '@electric-sql/pglite'
import { isLockFile, lockDataDir, type DataDirLock } from './data-dir-lock.ts'
import { RESERVE_ENTRY } from './wal-reserve.ts'
import { DevServerError } from '../errors.ts'
import { loadExtensions } from '../engine/extensions.ts'
import type { Logger } from '../log.ts'
import { listTar, rewriteTar, TarFormatError } from './tar.ts'
import { holdsDatabase } from './template.ts'

const gzipAsync = promisify(gzip)
const gunzipAsync = promisify(gunzip)

/** The file whose presence makes a directory a database: written last when a snapshot is unpacked (see below). */
const PG_VERSION = 'PG_VERSION'

export interface SnapshotResult {
  file: string
  /** Size of the gzip file. */
  bytes: number
  ms: number
}

/**
 * Writes `dataDir` to `file` as a gzip tarball (replacing it atomically). The data dir is locked meanwhile, so a
 * server running on it makes this fail with ERR_DATA_DIR_LOCKED naming its pid. `extensions` are loaded while it is
 * open, for those that change how Postgres starts (shared_preload_libraries).
 */
export async function writeSnapshot(
  dataDir: string,
  file: string,
  options: { extensions?: readonly string[]; log: Logger },
): Promise<SnapshotResult> {
  const started = performance.now()
  const loaded = await loadExtensions(options.extensions ?? [])
  if (!(await holdsDatabase(dataDir)))
    throw new DevServerError('ERR_CONFIG', `there is no database in ${dataDir} to snapshot`)
  let lock: DataDirLock
  try {
    lock = await lockDataDir(dataDir)
  } catch (error) {
    if (!(error instanceof DevServerError)) throw error
    throw new DevServerError(
      error.code,
      `cannot snapshot a data dir a server is using (its files are not a consistent database while it runs): ${error.message}`,
      { cause: error },
    )
  }
  let tar: Uint8Array
  try {
    let db: PGlite
    try {
      const { PGlite } = await import('@electric-sql/pglite')
      db = await PGlite.create({ dataDir, extensions: loaded.extensions })
    } catch (error) {
      throw new DevServerError('ERR_PGLITE', `cannot open the database in ${dataDir}: ${(error as Error).message}`, {
        cause: error,
      })
    }
    try {
      // Everything in the data files, so loading the snapshot needs no WAL replay.
      await db.exec('CHECKPOINT')
      tar = new Uint8Array(await (await db.dumpDataDir('none')).arrayBuffer())
    } finally {
      await db.close()
    }
  } finally {
    await lock.release()
  }
  const compressed = await gzipAsync(clean(tar, dataDir))
  const scratch = `${file}.${process.pid}.tmp`
  try {
    await writeFile(scratch, compressed)
    await rename(scratch, file)
  } catch (error) {
    await rm(scratch, { force: true })
    throw new DevServerError(
      'ERR_CONFIG',
      `cannot write the snapshot ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    )
  }
  const result = { file, bytes: compressed.length, ms: Math.round(performance.now() - started) }
  options.log.info('snapshot written', { ...result, dataDir })
  return result
}

/** ERR_CONFIG if a start from snapshot `file` into `dataDir` (or memory) cannot be: no such file, or a database there already. */
export async function checkSnapshot(file: string, dataDir: string | undefined): Promise<void> {
  if (dataDir !== undefined && (await holdsDatabase(dataDir))) {
    throw new DevServerError(
      'ERR_CONFIG',
      `the data dir ${dataDir} already holds a database; --from-snapshot starts only a new or empty data dir (remove it, or choose another --data-dir)`,
    )
  }
  try {
    await access(file, constants.R_OK)
  } catch (error) {
    throw new DevServerError(
      'ERR_CONFIG',
      `cannot read the snapshot ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    )
  }
}

/**
 * The snapshot `file` as PGlite's `loadDataDir` takes it, for a start in memory or into `dataDir`. A data dir must
 * not hold a database yet: ERR_CONFIG, as loading would mix two databases' files.
 */
export async function readSnapshot(file: string, dataDir: string | undefined, log: Logger): Promise<Blob> {
  await checkSnapshot(file, dataDir)
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (error) {
    throw new DevServerError(
      'ERR_CONFIG',
      `cannot read the snapshot ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      { cause: error },
    )
  }
  // gzip's magic number (RFC 1952 §2.3.1); a plain tar (dumpDataDir('none')) is taken as well.
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = await gunzipAsync(bytes)
    } catch (error) {
      throw new DevServerError(
        'ERR_CONFIG',
        `the snapshot ${file} is not a valid gzip file: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }
  log.info('loading snapshot', { file, bytes: bytes.length })
  return new Blob([clean(bytes, file)], { type: 'application/x-tar' })
}

/**
 * The tarball without our lock file (a snapshot must not carry the pid of the process that took it into the data dir
 * it seeds) and WAL reserve (16 MB of zeros), and with PG_VERSION last: unpacking into a data dir that is cut short
 * (kill -9) leaves no PG_VERSION, so the directory is not taken for a database next time. ERR_CONFIG if it is not a
 * data dir tarball.
 */
function clean(tar: Uint8Array, what: string): Uint8Array {
  let entries
  try {
    entries = listTar(tar)
  } catch (error) {
    if (!(error instanceof TarFormatError)) throw error
    throw new DevServerError('ERR_CONFIG', `${what} is not a database snapshot: ${error.message}`, { cause: error })
  }
  if (!entries.some((entry) => entry.name === PG_VERSION))
    throw new DevServerError('ERR_CONFIG', `${what} is not a database snapshot: it has no ${PG_VERSION}`)
  return rewriteTar(
    tar,
    entries,
    (name) => isLockFile(name) || name === RESERVE_ENTRY,
    (name) => name === PG_VERSION,
  )
}
