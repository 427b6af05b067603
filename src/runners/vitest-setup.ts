// pglite-dev-db/vitest's globalSetup and helpers, without the worker's setup (vitest.ts): what require() gets, since
// Vitest itself loads no CommonJS.

import { startDevDb, type DevDbOptions } from '../databases/dev-db.ts'
import { MAX_SPARE_DATABASES } from '../databases/options.ts'
import { SERVER_URL_ENV } from './worker-database.ts'
import { workersOf, type SetupProject } from './workers.ts'

export { databaseName, databaseUrl, resetDatabase } from './worker-database.ts'

/** A globalSetup function: starts the server, and returns the teardown that stops it. */
export type GlobalSetup = (project?: SetupProject) => Promise<() => Promise<void>>

/**
 * A globalSetup that starts one server with these options (startDevDb's: in memory, a free port, drizzle-kit's
 * migrations unless `migrations` says otherwise), for a setup file of your own: `export default devDbSetup({...})`.
 * Unless `spareDatabases` says otherwise, a database per worker is loaded ahead while the workers start; unless
 * `wasmOptimizer` says otherwise, V8 does not optimize Postgres's code, and JavaScript later (a test run is short: see
 * startDevDb's option).
 */
export function devDbSetup(options: DevDbOptions = {}): GlobalSetup {
  return async (project) => {
    const spareDatabases = options.spareDatabases ?? Math.min(workersOf(project), MAX_SPARE_DATABASES)
    const wasmOptimizer = options.wasmOptimizer ?? false
    const server = await startDevDb({ ...options, spareDatabases, wasmOptimizer })
    process.env[SERVER_URL_ENV] = server.url
    return async () => {
      delete process.env[SERVER_URL_ENV]
      await server.close()
    }
  }
}

/** `globalSetup: ['pglite-dev-db/vitest']`: the server with startDevDb's defaults. */
export const setup: GlobalSetup = devDbSetup()
export default setup
