// examples/drizzle-kit/drizzle.config.ts: drizzle-kit against the database at DATABASE_URL, which
// `pglite-dev-db --run` sets. Run from the repo root, e.g.
//   npx pglite-dev-db --memory --port 0 --no-migrations --run "npx drizzle-kit migrate --config examples/drizzle-kit/drizzle.config.ts"
import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'postgresql',
  schema: './examples/schema.ts',
  out: './migrations',
  dbCredentials: { url: process.env['DATABASE_URL']! },
})
