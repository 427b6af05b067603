import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'postgresql',
  schema: './schema.ts',
  out: './drizzle',
  // Used by drizzle-kit migrate, push and pull: the URL pglite-dev-db --run hands the command.
  dbCredentials: { url: process.env['DATABASE_URL']! },
})
