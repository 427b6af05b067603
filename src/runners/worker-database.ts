// A database of its own for each test worker on one server: its name, its URL, and a reset to the migrated state.
// The server's URL reaches the workers in the environment, set by the global setup before they are started.

import { simpleQuery } from './simple-query.ts'

/** Where the global setup leaves the server's URL; workers start after it, with its environment. */
export const SERVER_URL_ENV = 'PGLITE_DEV_DB_URL'

/** The worker's number: 1 to the number of workers, reused by the test files that run in that worker later. */
function workerNumber(): string {
  const id = process.env['VITEST_POOL_ID']
  if (id === undefined) throw new Error('pglite-dev-db: not in a test worker (VITEST_POOL_ID is not set)')
  return id
}

/** This worker's database: `test_1`, `test_2`... Files that run at the same time run in different workers. */
export function databaseName(): string {
  return `test_${workerNumber()}`
}

/**
 * The URL of this worker's own database on the server the global setup started; the database is made from the
 * migrated template when a client first sends a query there.
 */
export function databaseUrl(): string {
  const server = process.env[SERVER_URL_ENV]
  if (server === undefined)
    throw new Error(
      `pglite-dev-db: ${SERVER_URL_ENV} is not set: add 'pglite-dev-db/vitest' to the config's globalSetup`,
    )
  const url = new URL(server)
  url.pathname = `/${databaseName()}`
  return url.href
}

/** Make this worker's database, if it is not there yet: its first query does. */
export async function createDatabase(): Promise<void> {
  await simpleQuery(databaseUrl(), 'select 1')
}

/**
 * Put this worker's database back to its migrated state (rows, sequences, temporary tables): `beforeEach(resetDatabase)`.
 * Every connection to it stays open and keeps its prepared statements. The first call also creates the database.
 * It takes no arguments: a test runner calls a hook with its own (the test's context).
 */
export async function resetDatabase(): Promise<void> {
  await simpleQuery(databaseUrl(), 'select pglite_dev_db.reset()')
}
