// The npm package as `npm pack` makes it (prepack builds dist/), made once per test run for the files that install
// it: the first to ask packs into the run's dir; the others wait for the tarball (or the failure) to appear there.
import { existsSync, watch } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { inject } from 'vitest'
import { runProcess } from '../../harness/process.ts'
import { withDeadline } from '../../harness/raw-client.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PACK_DEADLINE_MS = 240_000
const TARBALL = 'pglite-dev-db.tgz'
const FAILED = 'failed.txt'

/** The packed tarball of this checkout, shared by every test file of the run. */
export async function packedTarball(): Promise<string> {
  const dir = path.join(path.dirname(inject('pgliteTemplateDir')), 'pack')
  const packs = await mkdir(dir).then(
    () => true,
    (error: NodeJS.ErrnoException) => (error.code === 'EEXIST' ? false : Promise.reject(error)),
  )
  if (packs) await pack(dir)
  return withDeadline(packedIn(dir), PACK_DEADLINE_MS, 'the packed tarball')
}

async function pack(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'out'))
  const run = await runProcess('npm', ['pack', '--json', '--pack-destination', path.join(dir, 'out')], {
    cwd: ROOT,
    deadlineMs: PACK_DEADLINE_MS,
    env: { npm_config_loglevel: 'error' },
  }).catch((error: unknown) => ({ code: null, stdout: Buffer.alloc(0), stderr: String(error) }))
  if (run.code !== 0) {
    await writeFile(path.join(dir, FAILED), `npm pack failed (exit ${run.code}) in ${ROOT}\n${run.stderr.slice(-4000)}`)
    return
  }
  const stdout = run.stdout.toString()
  const [{ filename }] = JSON.parse(stdout.slice(stdout.indexOf('['))) as [{ filename: string }]
  // Renamed into place: a waiter never sees a tarball half written.
  await rename(path.join(dir, 'out', filename), path.join(dir, TARBALL))
}

/** Resolves with the tarball once it is in `dir`, or rejects with the packer's failure. */
function packedIn(dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const look = () => {
      if (existsSync(path.join(dir, FAILED))) {
        watcher.close()
        readFile(path.join(dir, FAILED), 'utf8').then((text) => reject(new Error(text)), reject)
      } else if (existsSync(path.join(dir, TARBALL))) {
        watcher.close()
        resolve(path.join(dir, TARBALL))
      }
    }
    const watcher = watch(dir, look)
    watcher.on('error', reject)
    // Looked at once the watch is on, so that nothing written in between is missed.
    look()
  })
}
