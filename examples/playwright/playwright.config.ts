import { defineConfig } from '@playwright/test'

export default defineConfig({
  webServer: {
    command: 'npx pglite-dev-db --memory --port 0',
    // The URL is printed once the database is migrated and listening; the named group becomes DATABASE_URL.
    wait: { stdout: /(?<database_url>postgres:\/\/\S+)/ },
    gracefulShutdown: { signal: 'SIGTERM', timeout: 10_000 },
  },
})
