// Runs once per `vitest run`: initdb one PGlite data dir that tests copy and keep the image their PGlite instances
// start from (test/helpers/db.ts), make sure the servers' template for no migrations is in the default cache, and
// start the PostgreSQL oracles (test/oracles.ts).
// Everything of one run lives under one `pglite-run-<pid>-*` dir, so a run that was killed is swept by the next.
import { readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import type { TestProject } from 'vitest/node'
import { createRunDir, RUN_DIR_PATTERN, saveTestImage, scratchRoot } from './helpers/db.ts'
import { startOracles } from './oracles.ts'
import { DEFAULT_CACHE_DIR, migratedTemplate } from '../src/databases/template.ts'
import { createLogger } from '../src/log.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** A closed, initdb'd PGlite data dir inside this run's dir; copy it, never open it in place. */
    pgliteTemplateDir: string
    /** The memory image of a PGlite booted on that data dir, which test/helpers/db.ts's openTestDb() starts from. */
    pgliteImageDir: string
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}

/** Removes the run dirs of vitest processes that no longer exist (killed before their teardown). */
async function sweepDeadRuns(root: string): Promise<void> {
  for (const entry of await readdir(root)) {
    const pid = RUN_DIR_PATTERN.exec(entry)?.[1]
    if (pid !== undefined && !isAlive(Number(pid))) await rm(path.join(root, entry), { recursive: true, force: true })
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = await scratchRoot()
  await sweepDeadRuns(root)
  const runDir = await createRunDir(root)
  const templateDir = path.join(runDir, 'template')
  const imageDir = path.join(runDir, 'image')
  // The oracles start beside initdb; the workers, started after this, inherit the URLs in their environment.
  const [oracles, template] = await Promise.allSettled([
    startOracles(),
    (async () => {
      const db = await PGlite.create({ dataDir: templateDir })
      await db.query('select 1')
      const tarball = await db.dumpDataDir('none')
      await db.close()
      await saveTestImage(tarball, imageDir)
      // The servers' template for no migrations, in the default cache, which a new database of theirs copies: built
      // here, as an earlier run left it, so that a fresh checkout's first test to make a database does not wait
      // seconds for it, inside its deadline.
      // Only time is saved: without it (a read-only cache, say) the first server builds it, as a user's would.
      await migratedTemplate(null, DEFAULT_CACHE_DIR, createLogger({ level: 'silent' })).catch((error: unknown) =>
        console.warn('global-setup: no template in the default cache;', error),
      )
    })(),
  ])
  if (template.status === 'rejected') {
    if (oracles.status === 'fulfilled') await oracles.value()
    throw template.reason
  }
  if (oracles.status === 'rejected') throw oracles.reason
  const stopOracles = oracles.value
  project.provide('pgliteTemplateDir', templateDir)
  project.provide('pgliteImageDir', imageDir)
  return async () => {
    await stopOracles()
    await rm(runDir, { recursive: true, force: true })
  }
}
