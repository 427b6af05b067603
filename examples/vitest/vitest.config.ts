// examples/vitest/vitest.config.ts: run from the repo root with
//   npx vitest run --config examples/vitest/vitest.config.ts
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('.', import.meta.url)),
    globalSetup: ['./global-setup.ts'],
    // Four test files at once, each in its own worker (VITEST_POOL_ID 1 to 4), each on its own database.
    maxWorkers: 4,
    // Creating a database loads a PGlite: about a second when idle, several on a busy 2-core machine.
    hookTimeout: 30_000,
    testTimeout: 30_000,
  },
})
