// examples/playwright/playwright.config.ts: Playwright starts the database before the tests and stops it after.
// Run from the repo root: npx playwright test -c examples/playwright
import { defineConfig } from '@playwright/test'

export default defineConfig({
  testDir: '.',
  webServer: {
    command: 'npx pglite-dev-db --memory --port 0',
    // The repo root, where migrations/ is (Playwright's default is this file's directory).
    cwd: '../..',
    // The server prints its URL on stdout once it is migrated and listening; the named group becomes
    // process.env.DATABASE_URL for the tests. (`port: N` would also work, but only waits for the port to
    // listen, which it does while migrations still run.)
    wait: { stdout: /(?<database_url>postgres:\/\/\S+)/ },
    gracefulShutdown: { signal: 'SIGTERM', timeout: 10_000 },
  },
})
