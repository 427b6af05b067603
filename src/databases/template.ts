// Migrated templates: initdb and the migrations run once per (PGlite version, migrations content); every later
// start of a fresh database copies the result instead (a data dir) or loads it (--memory). initdb costs seconds,
// a copy or load a fraction of that; so once the migrations were edited, the template without migrations is kept too,
// and a later edit's build starts from it. A changed migration file or PGlite version is a new key, never a stale
// template.
// PGlite's module is imported only to build or unpack one: the server looks a template up before it loads PGlite.
// A server builds and unpacks in a database thread (unless told to keep databases in its own), so that its clients and
// timers go on meanwhile.

import { createHash, randomBytes } from 'node:crypto'
import { openAsBlob, readFileSync } from 'node:fs'
import { cp, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { NO_EXTENSIONS, type LoadedExtensions } from '../engine/extensions.ts'
import type { SqlDb } from '../engine/sql-db.ts'
import type { Logger } from '../log.ts'
import { applyMigrations, migrationsFingerprint } from './migrate.ts'
import { count, reportSlowStep, type ProgressOptions } from './progress.ts'
import { baselineText, parseBaseline, readBaseline, type Baseline } from './baseline.ts'
import { DROP_UNLOADABLE_CONVERSIONS } from '../server/session/conversions.ts'

/** Bump when what a template holds changes shape. */
const TEMPLATE_FORMAT = 3
const DATA = 'data'
const TARBALL = 'data.tar'
/** What a reset puts back (baseline.ts), read once from the migrated database rather than from each server's first copy. */
const BASELINE = 'baseline.json'

/** PGlite's installed package: its directory and version. */
const PGLITE_PACKAGE: { dir: string; version: string } = (() => {
  const require = createRequire(import.meta.url)
  let dir = dirname(require.resolve('@electric-sql/pglite'))
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === '@electric-sql/pglite' && pkg.version) return { dir, version: pkg.version }
    } catch {
      // not the package root yet
    }
    const parent = dirname(dir)
    if (parent === dir) throw new Error('cannot find the package.json of @electric-sql/pglite')
    dir = parent
  }
})()

export const PGLITE_VERSION: string = PGLITE_PACKAGE.version

/**
 * Default cache: in the node_modules that holds PGlite (node_modules/@electric-sql/pglite), where build tools keep
 * theirs; found through the package, so it is the same whether src/ runs or its bundle in dist/.
 */
export const DEFAULT_CACHE_DIR = join(PGLITE_PACKAGE.dir, '..', '..', '.cache', 'pglite-dev-db')

export interface Template {
  /** The cache entry's directory. */
  dir: string
  /** The migrated database as a tarball, for PGlite's `loadDataDir` (in-memory starts). */
  tarball: string
  /** True if this call built it. */
  built: boolean
  /** Opens an engine with the bundles it was built with (every PGlite that opens it loads them too). */
  open: TemplateEngineOpener
}

/** What building or unpacking a template needs of an engine: an in-process PGlite or a DbThread both fit. */
export interface TemplateEngine extends SqlDb {
  dumpDataDir(compression: 'none'): Promise<Blob>
  close(): Promise<void>
}

export type TemplateEngineOpener = (where: { dataDir?: string; loadDataDir?: Blob }) => Promise<TemplateEngine>

/**
 * Engines with `loaded`'s bundles, in a database thread (`thread`) or in this one. initdb holds the thread that runs it
 * for seconds: a server's own thread would answer no client meanwhile.
 */
export function templateEngines(loaded: LoadedExtensions, thread: boolean): TemplateEngineOpener {
  return async (where) => {
    if (thread) {
      const { DbThread } = await import('../engine/thread.ts')
      return DbThread.create({ ...where, extensions: loaded.names })
    }
    const { PGlite } = await import('@electric-sql/pglite')
    return PGlite.create({ ...where, extensions: loaded.extensions })
  }
}

/**
 * The template for these migrations (null: none), built now if the cache lacks it. Several processes may build the
 * same key at once: each builds in its own scratch dir and the first rename wins.
 */
export async function migratedTemplate(
  migrationsDir: string | null,
  cacheDir: string,
  log: Logger,
  loaded: LoadedExtensions = NO_EXTENSIONS,
  progress: ProgressOptions = {},
  open: TemplateEngineOpener = templateEngines(loaded, false),
): Promise<Template> {
  const { key, migrations } = await templateKey(migrationsDir, loaded)
  const dir = join(cacheDir, `template-${key}`)
  const template = { dir, tarball: join(dir, TARBALL), open }
  if (await exists(template.tarball)) return { ...template, built: false }

  // Migrations start from the template without any (same PGlite, same bundles) when there is one. A build kept it
  // if the cache held another migrated template (the migrations were edited here): saving it costs a first build
  // (a CI job's, say) about a second, and saves an edit's build several.
  const empty = migrationsDir === null ? null : `template-${(await templateKey(null, loaded)).key}`
  const fromEmpty = empty !== null && (await exists(join(cacheDir, empty, TARBALL)))
  const keepEmpty = empty !== null && !fromEmpty && (await holdsOtherTemplates(cacheDir, [`template-${key}`, empty]))
  const started = performance.now()
  log.info('building the database template (once per migrations and PGlite version)', {
    cache: dir,
    from: fromEmpty ? 'the template without migrations' : 'initdb',
    ...(loaded.names.length > 0 ? { extensions: loaded.names.join(',') } : {}),
  })
  const step = `building the database template (${fromEmpty ? 'the empty one' : 'initdb'} + ${count(migrations, 'migration')})`
  const emptyDir = empty === null ? null : join(cacheDir, empty)
  await reportSlowStep(
    log,
    step,
    () => buildTemplate(migrationsDir, cacheDir, template, { empty: emptyDir, fromEmpty, keepEmpty }, log, progress),
    progress,
  )
  log.info('database template ready', { ms: Math.round(performance.now() - started) })
  const kept = [`template-${key}`, ...(empty ? [empty] : [])]
  await sweepOtherTemplates(cacheDir, kept).catch((error: unknown) =>
    log.warn('could not remove old templates', { cacheDir, error }),
  )
  return { ...template, built: true }
}

/**
 * `empty`: the directory of the template without migrations; `fromEmpty`: it is there, so the build loads it instead
 * of running initdb (a second or so instead of several); `keepEmpty`: it is kept there once initdb ran.
 */
async function buildTemplate(
  migrationsDir: string | null,
  cacheDir: string,
  template: Omit<Template, 'built'>,
  { empty, fromEmpty: found, keepEmpty }: { empty: string | null; fromEmpty: boolean; keepEmpty: boolean },
  log: Logger,
  progress: ProgressOptions,
): Promise<void> {
  await mkdir(cacheDir, { recursive: true })
  let fromEmpty = found
  const loadEmpty = async (dir: string) => template.open({ loadDataDir: await openAsBlob(join(dir, TARBALL)) })
  // Built in memory: initdb there is several times faster than on PGlite's node filesystem.
  const db =
    empty !== null && fromEmpty
      ? // Gone since it was seen (another server's sweep), say: initdb after all, and the empty one is kept again.
        await loadEmpty(empty).catch((error: unknown) => {
          log.warn('could not load the template without migrations; running initdb', { error })
          fromEmpty = false
          return template.open({})
        })
      : await template.open({})
  try {
    // Kept when asked, or again when the one found could not be loaded. Only writing it may fail quietly: an engine
    // that fails to dump fails the build here, not later as if a migration had.
    if (empty !== null && !fromEmpty && (keepEmpty || found))
      await saveTemplate(await dumpTemplate(db, log), cacheDir, empty).catch((error: unknown) =>
        log.warn('could not keep the template without migrations', { error }),
      )
    if (migrationsDir) await applyMigrations(db, migrationsDir, log, progress)
    await saveTemplate(await dumpTemplate(db, log), cacheDir, template.dir)
  } finally {
    await db.close()
  }
}

/** What `db` holds now, as a template keeps it: its files, and the baseline if it can be read. */
async function dumpTemplate(db: TemplateEngine, log: Logger): Promise<{ tarball: Blob; baseline: Baseline | null }> {
  // Without it a server reads the baseline from its first new database instead, which then waits for that.
  const baseline = await readBaseline(db).catch((error: unknown) => {
    log.warn('cannot read what a reset puts back; each server reads it again', { error })
    return null
  })
  // Its copies then find no conversion to drop when they first serve (server/session/conversions.ts).
  await db.exec(DROP_UNLOADABLE_CONVERSIONS)
  // The WAL written so far (initdb's, the migrations') is dropped, not recycled: every database made from the
  // template copies its current WAL segment on its first write, and this one then holds a page, not megabytes.
  await db.exec('SET wal_recycle = off; SELECT pg_switch_wal(); CHECKPOINT; RESET wal_recycle')
  return { tarball: await db.dumpDataDir('none'), baseline }
}

/** `dump` as the template in `dir`, unless another process made it first. */
async function saveTemplate(
  dump: { tarball: Blob; baseline: Baseline | null },
  cacheDir: string,
  dir: string,
): Promise<void> {
  const scratch = join(cacheDir, `.building-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(scratch)
    if (dump.baseline) await writeFile(join(scratch, BASELINE), await baselineText(dump.baseline))
    await writeFile(join(scratch, TARBALL), Buffer.from(await dump.tarball.arrayBuffer()))
    try {
      await rename(scratch, dir)
    } catch (error) {
      // Another process finished the same template first: use theirs.
      if (!(await exists(join(dir, TARBALL)))) throw error
    }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

/**
 * A new data dir (no PG_VERSION yet) gets a copy of the template's files (the caller's lock file there stays).
 * The template's own data dir is unpacked from its tarball the first time a data dir needs it.
 */
export async function seedDataDir(dataDir: string, template: Template): Promise<boolean> {
  if (await exists(join(dataDir, 'PG_VERSION'))) return false
  const source = join(template.dir, DATA)
  if (!(await exists(join(source, 'PG_VERSION')))) {
    const scratch = join(template.dir, `.unpacking-${process.pid}-${randomBytes(4).toString('hex')}`)
    try {
      await mkdir(scratch)
      const db = await template.open({ dataDir: scratch, loadDataDir: await templateBlob(template) })
      await db.close()
      await rename(scratch, source).catch(async (error: unknown) => {
        if (!(await exists(join(source, 'PG_VERSION')))) throw error
      })
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
  }
  // PG_VERSION last: a copy cut short (kill -9) has none, so the next start seeds the directory again.
  const marker = join(source, 'PG_VERSION')
  await cp(source, dataDir, { recursive: true, filter: (path) => path !== marker })
  await cp(marker, join(dataDir, 'PG_VERSION'))
  return true
}

/**
 * Where the image (engine/image.ts) of a database started from `template` with these start parameters and bundles is
 * kept: beside the template, so that it goes when the template goes.
 */
export function imageDir(template: Template, startParams: readonly string[], extensions: readonly string[]): string {
  const key = createHash('sha256').update(JSON.stringify({ startParams, extensions })).digest('hex').slice(0, 16)
  return join(template.dir, `image-${key}`)
}

/** The baseline kept beside `template`; null if it has none (a template built before they were kept) or a stale one. */
export async function keptBaseline(template: Template): Promise<Baseline | null> {
  let text: string
  try {
    text = await readFile(join(template.dir, BASELINE), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  return parseBaseline(text)
}

/** Keep `baseline`, read from a fresh copy of `template`, beside it (for a template built before they were kept). */
export async function keepBaseline(template: Template, baseline: Baseline): Promise<void> {
  const scratch = join(template.dir, `.${BASELINE}-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await writeFile(scratch, await baselineText(baseline))
    await rename(scratch, join(template.dir, BASELINE))
  } finally {
    await rm(scratch, { force: true })
  }
}

/** Whether `dataDir` already holds a database (then no template is needed). */
export function holdsDatabase(dataDir: string): Promise<boolean> {
  return exists(join(dataDir, 'PG_VERSION'))
}

export async function templateBlob(template: Template): Promise<Blob> {
  // Read only when a database opens from it (DbThread.create reads it once and transfers the bytes to the thread). A
  // file-backed Blob can be read again: dev-db.ts opens once more when the database needs more extensions.
  return openAsBlob(template.tarball, { type: 'application/x-tar' })
}

/** The cache key: format, PGlite version, the bundles loaded (a template built without vector cannot serve with it), migrations. */
async function templateKey(
  migrationsDir: string | null,
  loaded: LoadedExtensions,
): Promise<{ key: string; migrations: number }> {
  const hash = createHash('sha256').update(`pglite-dev-db template ${TEMPLATE_FORMAT}\0pglite ${PGLITE_VERSION}\0`)
  if (loaded.names.length > 0) hash.update(`extensions ${loaded.names.join(',')}\0`)
  const fingerprint = migrationsDir ? await migrationsFingerprint(resolve(migrationsDir)) : ''
  // A folder of no migrations is not none: applying them makes drizzle's table of migrations applied.
  if (migrationsDir) hash.update(`migrations\0${fingerprint}`)
  return { key: hash.digest('hex').slice(0, 16), migrations: fingerprint === '' ? 0 : fingerprint.split('\n').length }
}

/** Whether `cacheDir` holds a template other than those named. */
async function holdsOtherTemplates(cacheDir: string, names: readonly string[]): Promise<boolean> {
  const entries = await readdir(cacheDir).catch((error: NodeJS.ErrnoException) =>
    error.code === 'ENOENT' ? [] : Promise.reject(error),
  )
  return entries.some((name) => name.startsWith('template-') && !names.includes(name))
}

/** Templates of older keys (edited migrations, another PGlite) are dead weight of ~40 MB each: keep the newest few. */
async function sweepOtherTemplates(cacheDir: string, keep: readonly string[]): Promise<void> {
  const KEEP = 4
  const names = await readdir(cacheDir)
  // Another process may sweep at the same time: an entry gone meanwhile is simply skipped.
  const dated = (
    await Promise.all(
      names
        .filter((name) => name.startsWith('template-') && !keep.includes(name))
        .map(async (name) =>
          stat(join(cacheDir, name)).then(
            (info) => ({ name, mtime: info.mtimeMs }),
            () => null,
          ),
        ),
    )
  ).filter((entry) => entry !== null)
  dated.sort((a, b) => b.mtime - a.mtime)
  for (const { name } of dated.slice(KEEP - keep.length))
    await rm(join(cacheDir, name), { recursive: true, force: true })
  // Scratch dirs of builds that were killed (their pid is in the name).
  for (const name of names) {
    const pid = /^\.building-(\d+)-/.exec(name)?.[1]
    if (pid !== undefined && !isAlive(Number(pid))) await rm(join(cacheDir, name), { recursive: true, force: true })
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}
