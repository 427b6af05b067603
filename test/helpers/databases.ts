// For tests of databases by name: the server's URL naming another database, and the servers and clients a test
// file opens, ended after each test (bounded).
import pg from 'pg'
import type postgres from 'postgres'
import { afterEach } from 'vitest'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { endClient } from '../../harness/pg.ts'
import { withDeadline } from '../../harness/raw-client.ts'

const CLOSE_DEADLINE_MS = 20_000

/** `base` (the server's URL) with another database name. */
export const urlOf = (base: string, database: string): string => base.replace(/\/[^/]*$/, `/${database}`)

export interface DatabaseTests {
  /** Servers, node-postgres clients and postgres.js pools to end after each test. */
  devs: DevDb[]
  clients: pg.Client[]
  sqls: postgres.Sql[]
  /** A node-postgres client whose database is open: a database opens at its first client's first query, not at connect. */
  client(url: string): Promise<pg.Client>
}

/** For a test file: what its tests open is ended after each (clients, then pools, then servers). */
export function useDatabaseTests(): DatabaseTests {
  const tests: DatabaseTests = {
    devs: [],
    clients: [],
    sqls: [],
    async client(url) {
      const c = new pg.Client({ connectionString: url })
      c.on('error', () => {})
      tests.clients.push(c)
      await c.connect()
      await c.query('select 1')
      return c
    },
  }
  afterEach(async () => {
    await Promise.all(tests.clients.splice(0).map((client) => endClient(client)))
    await Promise.all(tests.sqls.splice(0).map((sql) => sql.end({ timeout: 5 })))
    await withDeadline(
      Promise.all(tests.devs.splice(0).map((dev) => dev.close())),
      CLOSE_DEADLINE_MS,
      'close after test',
    )
  })
  return tests
}
