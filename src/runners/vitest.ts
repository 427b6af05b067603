// pglite-dev-db/vitest. As a globalSetup: one server for the test run, in memory, migrated as the command finds the
// migrations. As a setup file: DATABASE_URL names this worker's own database before the test files load, and the
// database is made (from the migrated template) in a beforeAll with room for it, not in a test's first hook.

import { createDatabase, databaseUrl, SERVER_URL_ENV } from './worker-database.ts'

export * from './vitest-setup.ts'
export { default } from './vitest-setup.ts'

/** Making a database copies the template into a new PGlite: seconds, more while every worker makes its own at once. */
const CREATE_TIMEOUT_MS = 120_000

// In a worker of a run whose globalSetup started the server (and never in the globalSetup's own process).
if (process.env['VITEST_POOL_ID'] !== undefined && process.env[SERVER_URL_ENV] !== undefined) {
  process.env['DATABASE_URL'] = databaseUrl()
  const { beforeAll } = await import('vitest')
  beforeAll(createDatabase, CREATE_TIMEOUT_MS)
}
