// Bounded shutdown for node-postgres clients and pools: a server that stalls must not hang the test run.
import type pg from 'pg'
import { StalledError, withDeadline } from './raw-client.ts'

const END_DEADLINE_MS = 5_000

/** end() with a bound; past it the socket is destroyed (end() waits for a query the server never answers). */
export async function endClient(client: pg.Client, ms = END_DEADLINE_MS): Promise<void> {
  try {
    await withDeadline(client.end(), ms, 'node-postgres end')
  } catch (error) {
    if (!(error instanceof StalledError)) throw error
    client.connection.stream.destroy()
  }
}

/** Tracks a pool's clients so a stalled pool can be torn down: pool.end() waits for every checked-out client. */
export function trackPool(pool: pg.Pool): { end(ms?: number): Promise<void> } {
  const clients = new Set<pg.PoolClient>()
  pool.on('connect', (client) => clients.add(client))
  pool.on('remove', (client) => clients.delete(client))
  return {
    async end(ms = END_DEADLINE_MS) {
      try {
        await withDeadline(pool.end(), ms, 'node-postgres pool end')
      } catch (error) {
        if (!(error instanceof StalledError)) throw error
        for (const client of clients) (client as unknown as pg.Client).connection.stream.destroy()
      }
    },
  }
}
