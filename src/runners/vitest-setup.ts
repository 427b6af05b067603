// pglite-dev-db/vitest's globalSetup and helpers, without the worker's setup (vitest.ts): what require() gets, since
// Vitest itself loads no CommonJS.

import { startDevDb, type DevDbOptions } from '../host/dev-db.ts'
import { SERVER_URL_ENV } from './worker-database.ts'

export { databaseName, databaseUrl, resetDatabase } from './worker-database.ts'

/** A globalSetup function: starts the server, and returns the teardown that stops it. */
export type GlobalSetup = () => Promise<() => Promise<void>>

/**
 * A globalSetup that starts one server with these options (startDevDb's: in memory, a free port, drizzle-kit's
 * migrations unless `migrations` says otherwise), for a setup file of your own: `export default devDbSetup({...})`.
 */
export function devDbSetup(options: DevDbOptions = {}): GlobalSetup {
  return async () => {
    const server = await startDevDb(options)
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
