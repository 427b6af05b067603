// A memory image (image.ts) on disk: kept in the cache dir, in the files a later start reads it back from; and its
// data dir files written out to a new data dir, for a database that starts from it there (ImageNodeFS).

import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../log.ts'
import { PGDATA, isDir, isFile, isLink, type EngineImage, type ImageEntry } from './image.ts'

const IMAGE_FORMAT = 2
const MANIFEST = 'image.json'
const MEMORY_FILE = 'memory.bin'
const FILES_FILE = 'files.bin'

type Manifest = Omit<EngineImage, 'pages' | 'pageNumbers' | 'files'> & { format: number; pageNumbers: number[] }

/** `image` as files in `dir` (made through a scratch dir and a rename: a reader sees all of it or none). */
export async function saveImage(image: EngineImage, dir: string): Promise<void> {
  const scratch = `${dir}.${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await mkdir(scratch, { recursive: true })
    const { pages, pageNumbers, files, ...rest } = image
    const manifest: Manifest = { format: IMAGE_FORMAT, ...rest, pageNumbers: [...pageNumbers] }
    await writeFile(join(scratch, MEMORY_FILE), new Uint8Array(pages))
    await writeFile(join(scratch, FILES_FILE), new Uint8Array(files))
    await writeFile(join(scratch, MANIFEST), JSON.stringify(manifest))
    await rename(scratch, dir).catch(async () => {
      // Another process saved the same image first; or an older format's is there, which goes.
      if (await loadManifest(dir)) return
      await rm(dir, { recursive: true, force: true })
      await rename(scratch, dir)
    })
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/** The image saved in `dir`, or null if there is none (or of another format), or it cannot be read (logged). */
export async function loadImage(dir: string, log: Logger): Promise<EngineImage | null> {
  const manifest = await loadManifest(dir)
  if (!manifest) return null
  try {
    const [pages, files] = await Promise.all([readShared(join(dir, MEMORY_FILE)), readShared(join(dir, FILES_FILE))])
    const { memoryBytes, stackPointer, tableLength, entries, streams, pipes, cwd, timerDeadline } = manifest
    return {
      memoryBytes,
      pages,
      pageNumbers: Int32Array.from(manifest.pageNumbers),
      stackPointer,
      tableLength,
      files,
      entries,
      streams,
      pipes,
      cwd,
      timerDeadline,
    }
  } catch (error) {
    log.info('the database image kept in the cache cannot be read; it is made again', { dir, error })
    return null
  }
}

/** Whether an image of this format is saved in `dir` (its manifest alone is read). */
export async function hasImage(dir: string): Promise<boolean> {
  return (await loadManifest(dir)) !== null
}

async function loadManifest(dir: string): Promise<Manifest | null> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest
    return manifest.format === IMAGE_FORMAT ? manifest : null
  } catch {
    return null
  }
}

/** A file's bytes in shared memory (every thread that starts from the image reads the same copy). */
async function readShared(path: string): Promise<SharedArrayBuffer> {
  const file = await open(path)
  try {
    const { size } = await file.stat()
    const shared = new SharedArrayBuffer(size)
    const view = new Uint8Array(shared)
    for (let at = 0; at < size;) {
      const { bytesRead } = await file.read(view, at, size - at, at)
      if (bytesRead === 0) throw new Error(`${path} ended early`)
      at += bytesRead
    }
    return shared
  } finally {
    await file.close()
  }
}

/**
 * Fill the new data dir `dir` with the image's data dir files, for ImageNodeFS. PG_VERSION last: a copy cut short
 * (kill -9) has none, so the next start fills the directory again.
 */
export async function writeDataDir(image: EngineImage, dir: string): Promise<void> {
  const bytes = new Uint8Array(image.files)
  const inDataDir = image.entries.filter((entry) => entry.path.startsWith(`${PGDATA}/`))
  const pathOf = (entry: ImageEntry): string => join(dir, entry.path.slice(PGDATA.length + 1))
  const write = (entry: ImageEntry): Promise<void> =>
    writeFile(pathOf(entry), bytes.subarray(entry.offset!, entry.offset! + entry.size!), { mode: entry.mode & 0o777 })
  // Directories first (parents before children), then every file at once.
  for (const entry of inDataDir)
    if (isDir(entry.mode)) await mkdir(pathOf(entry), { recursive: true, mode: entry.mode & 0o777 })
  const version = inDataDir.find((entry) => entry.path === `${PGDATA}/PG_VERSION`)
  if (!version) throw new Error('the image holds no PG_VERSION')
  await Promise.all(
    inDataDir.map((entry) => {
      if (isLink(entry.mode)) return symlink(entry.link!, pathOf(entry))
      return isFile(entry.mode) && entry !== version ? write(entry) : null
    }),
  )
  await write(version)
}
