import { defineConfig } from '@playwright/test'

export default defineConfig({
  webServer: {
    command: 'npx pglite-dev-db --memory --port 0',
    // The URL is printed as soon as the server listens (the first query waits for the migrations); the named group becomes DATABASE_URL.
    wait: { stdout: /(?<database_url>postgres:\/\/\S+)/ },
    gracefulShutdown: { signal: 'SIGTERM', timeout: 10_000 },
  },
})
