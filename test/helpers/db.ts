// Per-test PGlite instances. global-setup.ts initdb's one template data dir per run and keeps the memory image of a
// PGlite booted on it: a test's PGlite starts from that image in memory (about 0.3 s of CPU where a copy of the data
// dir and a boot cost 1.2 s), and tests that need a data dir copy the template.
import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import { access, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { inject } from 'vitest'
import type { EngineImage, Instances } from '../../src/engine/image.ts'
import { loadImage, saveImage } from '../../src/engine/image-on-disk.ts'
import { ImageFS } from '../../src/engine/start-from-image.ts'
import { takeImage, watchInstances } from '../../src/engine/take-image.ts'
import { createLogger } from '../../src/log.ts'

export interface TestDb {
  db: PGlite
  /** Closes the instance; safe to call twice. */
  close(): Promise<void>
}

const run = promisify(execFile)

/** Prepared transactions allowed, as the PostgreSQL oracle of .ci/run and startDevDb allow them. */
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'max_prepared_transactions=64']

/**
 * Where test data dirs live: $PGLITE_TEST_TMPDIR, else /dev/shm when writable (a tmpfs copies the ~1000-file data dir
 * about 6× faster than ext4 here), else the OS temp dir.
 */
export async function scratchRoot(): Promise<string> {
  const configured = process.env.PGLITE_TEST_TMPDIR
  if (configured) return configured
  try {
    await access('/dev/shm', constants.W_OK)
    return '/dev/shm'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'EACCES')
      return os.tmpdir()
    throw error
  }
}

/** `pglite-run-<pid of the vitest main process>-<random>`: global-setup sweeps those whose process is gone. */
export const RUN_DIR_PATTERN = /^pglite-run-(\d+)-/

export function createRunDir(root: string): Promise<string> {
  return mkdtemp(path.join(root, `pglite-run-${process.pid}-`))
}

/** A fresh copy of the template data dir, beside it in the run dir; the caller removes it (`removeDataDir`). */
export async function copyTemplate(templateDir: string = inject('pgliteTemplateDir')): Promise<string> {
  const dataDir = await mkdtemp(path.join(path.dirname(templateDir), 'db-'))
  try {
    // cp(1) copies the ~1000 files in a fifth of the time fs.cp takes, which goes through the event loop per file.
    await run('cp', ['-R', `${templateDir}/.`, dataDir])
  } catch (error) {
    await removeDataDir(dataDir)
    throw error
  }
  return dataDir
}

export const removeDataDir = (dataDir: string): Promise<void> => rm(dataDir, { recursive: true, force: true })

/** This process's WASM instances, which a start from the image needs; watched from the first use on. */
let instances: Instances | undefined
const watched = (): Instances => (instances ??= watchInstances())

/** The image of a PGlite booted on the template's files (`tarball`), saved in `imageDir`: global-setup, once a run. */
export async function saveTestImage(tarball: Blob, imageDir: string): Promise<void> {
  const seen = watched()
  const booted = await PGlite.create({ loadDataDir: tarball, startParams: START_PARAMS })
  try {
    await saveImage(takeImage(booted, seen, 0), imageDir)
  } finally {
    await booted.close()
  }
}

const images = new Map<string, Promise<EngineImage>>()

async function testImage(imageDir: string): Promise<EngineImage> {
  const image = await loadImage(imageDir, createLogger({ level: 'silent' }))
  if (!image) throw new Error(`no PGlite image in ${imageDir} (test/global-setup.ts saves it)`)
  return image
}

/** A fresh PGlite in memory, started from the run's image (`imageDir` in a process outside vitest). */
export async function openTestDb(imageDir: string = inject('pgliteImageDir')): Promise<TestDb> {
  const seen = watched()
  let loading = images.get(imageDir)
  if (!loading) images.set(imageDir, (loading = testImage(imageDir)))
  const image = await loading
  // No Postgres timer to arm: none was when the image was taken (saveTestImage).
  const db = await PGlite.create({
    fs: new ImageFS(image, seen, () => {}),
    initialMemory: image.memoryBytes,
    startParams: START_PARAMS,
  })
  let closing: Promise<void> | undefined
  return { db, close: () => (closing ??= db.closed ? Promise.resolve() : db.close()) }
}
