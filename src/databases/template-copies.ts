// Copies of a database that a client names as the TEMPLATE of CREATE DATABASE (a test suite's template, copied once
// per test file, say). In memory the first copy boots from the template's files with its image taken (engine/image.ts);
// with a data dir the image is taken from a boot of those files in memory, and the first copy starts from it too. The
// next ones start from that image (its files written to the copy's data dir), in a fraction of the time, as long as
// the template has had no call since its files were read: any call may have changed them. In database threads only,
// and only without extension bundles beyond those every database loads (database-builder.ts imageFits). An image is
// let go HOLD_MS after its last use.

import { mkdir, rm } from 'node:fs/promises'
import type { EngineImage } from '../engine/image.ts'
import { writeDataDir } from '../engine/image-on-disk.ts'
import { DbThread } from '../engine/thread.ts'
import { bootForImage } from '../engine/boot-image.ts'
import type { Logger } from '../log.ts'
import type { Instance } from './database-builder.ts'
import { isLockFile } from './data-dir-lock.ts'
import { renameDatabase } from './rename-database.ts'
import { listTar, rewriteTar } from './tar.ts'
import { RESERVE_ENTRY } from './wal-reserve.ts'

const HOLD_MS = 30_000

/**
 * Where a copy starts from: an image, the template's files (then `template` had made `calls` calls; -1: none counted),
 * or both (with a data dir, an image just made of the files, which a copy boots from should the image fail it).
 */
export interface CopySource {
  image: EngineImage | null
  files: Blob | null
  template: Instance | undefined
  calls: number
}

interface Kept {
  image: EngineImage
  /** The template's callsMade when its files were read. */
  calls: number
  letGo: NodeJS.Timeout
}

interface CopyOptions {
  startParams: string[]
  log: Logger
}

export class TemplateCopies {
  readonly #kept = new Map<DbThread, Kept>()
  /** Templates whose image could not be made: their copies into a data dir boot there, with no boot in memory first. */
  readonly #notImaged = new WeakSet<DbThread>()

  /** The image a copy of `template` starts from, if one is kept and the template had no call since. */
  imageOf(template: Instance | undefined): EngineImage | null {
    if (!(template instanceof DbThread)) return null
    const kept = this.#kept.get(template)
    if (!kept) return null
    if (kept.calls !== template.callsMade || template.closed) {
      this.forget(template)
      return null
    }
    kept.letGo.refresh()
    return kept.image
  }

  /**
   * What a copy of the template (`template()`, open or not yet, named `inside`) starts from: the image of an earlier
   * copy, or (not `imageable`, or none kept) the files `readFiles` reads, with the template's calls after that; for a
   * copy into a data dir (`boot` given), with the image made of those files by a boot in memory. Called in the
   * template's turn, so that copies asked for meanwhile wait for that image instead of making their own.
   */
  async source(
    template: () => Instance | undefined,
    imageable: boolean,
    readFiles: () => Promise<Blob>,
    boot: CopyOptions | null,
    inside: string,
  ): Promise<CopySource> {
    const image = imageable ? this.imageOf(template()) : null
    if (image) return { image, files: null, template: undefined, calls: 0 }
    const files = await readFiles()
    const db = template()
    const calls = db instanceof DbThread ? db.callsMade : -1
    const made =
      boot && imageable && db instanceof DbThread ? await this.#imageFromFiles(db, files, calls, inside, boot) : null
    return { image: made, files, template: db, calls }
  }

  /**
   * Start copy `name` from `image`, named `inside` in the image's files until renamed; in `dataDir` (empty), which gets
   * the image's files first, or in memory. Null if it could not be (the image is not used again, and `dataDir` is
   * empty again: the copy boots from the template's files instead).
   */
  async start(
    image: EngineImage,
    name: string,
    inside: string,
    dataDir: string | null,
    options: CopyOptions,
  ): Promise<DbThread | null> {
    let db: DbThread
    try {
      if (dataDir !== null) await writeDataDir(image, dataDir)
      db = await DbThread.create({
        image,
        startParams: options.startParams,
        extensions: [],
        database: inside,
        ...(dataDir !== null ? { dataDir } : {}),
      })
    } catch (error) {
      this.#drop(image)
      options.log.warn('could not start a copy of the template database from its image; booting it', {
        database: name,
        template: inside,
        error,
      })
      if (dataDir !== null) {
        await rm(dataDir, { recursive: true, force: true })
        await mkdir(dataDir, { recursive: true })
      }
      return null
    }
    try {
      if (name !== inside) await renameDatabase(db, inside, name)
    } catch (error) {
      await db.close().catch((closing: unknown) => {
        throw new Error(`could not rename the copy's database, nor close it: ${String(closing)}`, { cause: error })
      })
      throw error
    }
    return db
  }

  /** `copy` was booted, with its image taken, from the files `template` had after `calls` calls: keep its image. */
  keep(template: Instance | undefined, calls: number, copy: Instance): void {
    if (!(copy instanceof DbThread)) return
    // Not the copy's to hold for its life (about 50 MB), whether kept here or not.
    const image = copy.image
    copy.image = null
    if (template instanceof DbThread && image && !(image instanceof Error)) this.#keepImage(template, calls, image)
  }

  /**
   * The image of a boot of the template's `files` in memory, kept for the copies after this one. Null if that boot
   * fails (the copy boots in its data dir, as the next ones do).
   */
  async #imageFromFiles(
    template: DbThread,
    files: Blob,
    calls: number,
    inside: string,
    options: CopyOptions,
  ): Promise<EngineImage | null> {
    if (this.#notImaged.has(template)) return null
    let image: EngineImage | Error | null
    try {
      image = await bootForImage({
        loadDataDir: files,
        startParams: options.startParams,
        extensions: [],
        database: inside,
      })
    } catch (error) {
      image = error as Error
    }
    if (!image || image instanceof Error) {
      this.#notImaged.add(template)
      options.log.warn('could not make an image of the template database; its copies boot', {
        template: inside,
        error: image,
      })
      return null
    }
    this.#keepImage(template, calls, image)
    return image
  }

  #keepImage(template: DbThread, calls: number, image: EngineImage): void {
    this.forget(template)
    const letGo = setTimeout(() => this.#kept.delete(template), HOLD_MS).unref()
    this.#kept.set(template, { image, calls, letGo })
  }

  /** No copy of `template` starts from an image kept until now. */
  forget(template: Instance | undefined): void {
    if (!(template instanceof DbThread)) return
    clearTimeout(this.#kept.get(template)?.letGo)
    this.#kept.delete(template)
  }

  #drop(image: EngineImage): void {
    for (const [template, kept] of this.#kept) if (kept.image === image) this.forget(template)
  }

  /** The server stops: every image goes. */
  clear(): void {
    for (const { letGo } of this.#kept.values()) clearTimeout(letGo)
    this.#kept.clear()
  }
}

/**
 * The files of `db` as a copy starts from, a tarball PGlite loads: checkpointed first, so that the copy needs no WAL
 * replay; without the server's lock files and WAL reserve, and with PG_VERSION last (a copy into a data dir cut short
 * leaves no database there).
 */
export async function templateFiles(db: Instance): Promise<Blob> {
  await db.exec('CHECKPOINT')
  const tar = new Uint8Array(await (await db.dumpDataDir('none')).arrayBuffer())
  const files = rewriteTar(
    tar,
    listTar(tar),
    (file) => isLockFile(file) || file === RESERVE_ENTRY,
    (file) => file === 'PG_VERSION',
  )
  return new Blob([files], { type: 'application/x-tar' })
}
