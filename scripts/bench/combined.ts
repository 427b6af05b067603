// How many queries ride in combined calls (several clients' units in one engine call) under a closed loop of
// postgres.js clients running `select 1`, read from the server's getStats(). The clients run in this process, beside
// the server: the rates are not the benchmark's (npm run bench), only the sharing is.
// Usage: npm run bench:combined -- [--clients 16,64] [--seconds 3]
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { startDevDb } from '../../src/databases/dev-db.ts'

const { values } = parseArgs({ options: { clients: { type: 'string' }, seconds: { type: 'string' } } })
const counts = (values.clients ?? '16,64').split(',').map(Number)
const seconds = Number(values.seconds ?? 3)

const dev = await startDevDb({ port: 0, tls: false, migrations: false })
try {
  for (const clients of counts) {
    const sql = postgres(dev.url, { max: clients, prepare: true })
    await sql`select 1`
    const before = dev.server.getStats()
    let queries = 0
    const end = performance.now() + seconds * 1000
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (performance.now() < end) {
          await sql`select 1 as x`
          queries++
        }
      }),
    )
    const after = dev.server.getStats()
    const calls = after.combinedCalls - before.combinedCalls
    const units = after.combinedUnits - before.combinedUnits
    process.stdout.write(
      `${clients} clients: ${queries} queries, ${units} (${Math.round((units / queries) * 100)}%) in ${calls} combined calls, ${(units / Math.max(1, calls)).toFixed(1)} units a call\n`,
    )
    await sql.end({ timeout: 5 })
  }
} finally {
  await dev.close()
}
