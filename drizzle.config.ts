// drizzle-kit config for the example app. `generate` needs no database; `migrate`/`push` target DATABASE_URL,
// e.g. a running pglite-dev-db (postgres://postgres@127.0.0.1:<port>/postgres).
import { defineConfig } from 'drizzle-kit'

const url = process.env['DATABASE_URL']

export default defineConfig({
  dialect: 'postgresql',
  schema: './examples/schema.ts',
  out: './migrations',
  ...(url ? { dbCredentials: { url } } : {}),
})
