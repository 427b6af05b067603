// This package's version, read from its package.json: the nearest one named pglite-dev-db above this file, which is
// the same package.json whether src/, dist/esm, dist/cjs or the checkout's bundle runs.

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const PACKAGE_NAME = 'pglite-dev-db'

export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: string
        version?: string
      }
      if (pkg.name === PACKAGE_NAME && pkg.version) return pkg.version
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
    const parent = path.dirname(dir)
    if (parent === dir)
      throw new Error(`cannot find the package.json of ${PACKAGE_NAME} above ${fileURLToPath(import.meta.url)}`)
    dir = parent
  }
}
