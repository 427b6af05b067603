// examples/vitest/db.ts: a test file's connection, to its worker's own database (test_1 ... test_4), created on
// first use from the migrated template and put back to that state before each test.
import postgres from 'postgres'
import { afterAll, beforeEach, inject } from 'vitest'

export const database = `test_${process.env.VITEST_POOL_ID}`
const url = new URL(inject('databaseUrl'))
url.pathname = `/${database}`
export const sql = postgres(url.href)

beforeEach(async () => {
  await sql`select pglite_dev_db.reset()`
})
afterAll(() => sql.end())
