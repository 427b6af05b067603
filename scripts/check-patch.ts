// CI guard: the committed patch must be exactly what scripts/build-patch.ts makes from the current src/server.
// Usage: npm run check:patch   (exit 0 current, 1 stale, missing, uncommitted, or the build failed)

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PATCH = 'patches/@electric-sql+pglite-socket+0.2.17.patch'
const FIX = 'Run `npm run build:patch` and commit patches/.'

function run(command: string, args: string[], inherit = false): { status: number | null; stdout: string } {
  const result = spawnSync(command, args, {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', inherit ? 'inherit' : 'pipe', 'inherit'],
  })
  if (result.error) throw new Error(`could not run ${command}`, { cause: result.error })
  return { status: result.status, stdout: result.stdout ?? '' }
}

function checkPatch(): string | null {
  if (run('npm', ['run', '--silent', 'build:patch'], true).status !== 0) return 'building the patch failed (see above).'
  if (!existsSync(`${ROOT}/${PATCH}`)) return `${PATCH} is missing after the build.`
  if (run('git', ['ls-files', '--error-unmatch', '--', PATCH]).status !== 0) return `${PATCH} is not committed.`
  // Unstaged, staged and untracked changes all count: CI checks out HEAD, so only HEAD matters.
  const status = run('git', ['status', '--porcelain', '--untracked-files=all', '--', 'patches/'])
  if (status.status !== 0) return 'git status failed.'
  if (status.stdout.trim() !== '') {
    const stat = run('git', ['diff', 'HEAD', '--stat', '--', 'patches/'])
    return `patches/ differs from HEAD after a rebuild:\n${status.stdout}${stat.stdout}`
  }
  return null
}

try {
  const problem = checkPatch()
  if (problem) {
    console.error(`check-patch: ${problem}\n${FIX}`)
    process.exitCode = 1
  } else {
    console.log('check-patch: patches/ is current')
  }
} catch (error) {
  console.error('check-patch:', error)
  process.exitCode = 1
}
