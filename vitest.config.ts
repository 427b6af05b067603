import { defineConfig } from 'vitest/config'
import LongestFirst from './test/sequencer.ts'

export default defineConfig({
  test: {
    // Two cores here and 300–700 MB per PGlite: two files at a time.
    maxWorkers: 2,
    // Generous because a PGlite instance and pgbench runs are slow on 2 cores; scenarios bound their own waits.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    sequence: { sequencer: LongestFirst },
    projects: [
      // No PGlite, no socket: seconds (`npm run test:unit`).
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'server',
          include: ['test/{wire,host,long}/**/*.test.ts'],
          // PGlite is WASM with a large heap: a process per file isolates memory and any instance that dies.
          pool: 'forks',
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
})
