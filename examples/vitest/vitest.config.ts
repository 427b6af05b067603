import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // One server for the run (in memory, migrated); in each worker, DATABASE_URL names a database of its own.
    globalSetup: 'pglite-dev-db/vitest',
    setupFiles: 'pglite-dev-db/vitest',
  },
})
