// drizzle-kit push/pull against DATABASE_URL for the drizzle-kit scenario; pull writes to DRIZZLE_PULL_OUT.
import { defineConfig } from 'drizzle-kit'

export default defineConfig({
  dialect: 'postgresql',
  schema: './harness/clients/drizzle-push.schema.ts',
  out: process.env['DRIZZLE_PULL_OUT'] ?? './harness/clients/.drizzle-pull',
  tablesFilter: process.env['DRIZZLE_TABLES'] ? [process.env['DRIZZLE_TABLES']] : undefined,
  dbCredentials: { url: process.env['DATABASE_URL'] ?? '' },
})
