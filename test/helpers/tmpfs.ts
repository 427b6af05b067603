// A small tmpfs of a test's own, to fill up: mounting needs root, which CI has (.ci/run).
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { onTestFinished } from 'vitest'

const run = promisify(execFile)

/** Whether this process may mount one. */
export const canMountTmpfs = process.getuid?.() === 0

/** A tmpfs of `sizeMb` at a fresh directory, unmounted (after the servers of the test closed) and removed after it. */
export async function mountTmpfs(sizeMb: number): Promise<string> {
  if (!canMountTmpfs) {
    throw new Error(
      `this test mounts a ${sizeMb} MB tmpfs to fill it, which needs root (uid ${process.getuid?.()}); CI runs it as root (.ci/run)`,
    )
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglite-disk-'))
  await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir])
  // onTestFinished runs after afterEach, where useDevDbs closes the servers that hold files here.
  onTestFinished(async () => {
    try {
      await run('umount', [dir])
    } catch (error) {
      // Still busy: detach it anyway so no mount outlives the run, and say so.
      await run('umount', ['-l', dir])
      throw new Error(`${dir} was still in use; unmounted lazily`, { cause: error })
    }
    await rm(dir, { recursive: true, force: true })
  })
  return dir
}
