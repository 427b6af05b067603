// Benchmark for a database per test worker: how long a new database takes to be ready on first connect (the
// first, and the next ones with the spare loaded ahead), how long `select pglite_dev_db.reset()` takes in place and
// as a fresh copy (after DDL), and how long 4 workers wait to get their databases at once. Real server, real
// node-postgres clients. Prints a Markdown table and writes the figures as JSON.
// Usage: npm run bench:databases -- [--resets N] [--json PATH]
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { startDevDb } from '../src/dev-server.ts'

const { values } = parseArgs({ options: { resets: { type: 'string' }, json: { type: 'string' } } })
const RESETS = Number(values.resets ?? 50)
const JSON_PATH = values.json ?? 'docs/benchmarks-databases.json'

const dev = await startDevDb({ migrations: 'migrations' })
const urlFor = (name: string) => dev.url.replace(/\/postgres$/, `/${name}`)
const clients: pg.Client[] = []
async function connect(name: string): Promise<{ client: pg.Client; ms: number }> {
  const started = performance.now()
  const client = new pg.Client({ connectionString: urlFor(name) })
  await client.connect()
  await client.query('select 1')
  clients.push(client)
  return { client, ms: performance.now() - started }
}
/** Between timed steps: let the spare (the next new database, loaded in the background) finish loading. */
const settle = () => dev.databases.spareLoaded()
const stats = (samples: number[]) => {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { n: samples.length, p50: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1]! }
}

try {
  const first = await connect('bench_first')
  await settle()
  const withSpare: number[] = []
  for (let i = 0; i < 3; i++) {
    withSpare.push((await connect(`bench_spare_${i}`)).ms)
    await settle()
  }
  const fourStarted = performance.now()
  await Promise.all([0, 1, 2, 3].map((i) => connect(`bench_worker_${i}`)))
  const fourWorkers = performance.now() - fourStarted

  const { client } = await connect('bench_reset')
  const inPlace: number[] = []
  for (let i = 0; i < RESETS; i++) {
    await client.query(`insert into customers (email, name) select 'r' || g || '@example.com', 'R' from generate_series(1, 10) g`)
    const started = performance.now()
    await client.query('select pglite_dev_db.reset()')
    // The reset is done before the client's next statement runs: time until that one is answered.
    await client.query('select 1')
    inPlace.push(performance.now() - started)
  }
  await settle()
  const freshCopy: number[] = []
  for (let i = 0; i < 3; i++) {
    await client.query(`create table bench_ddl_${i} (x int)`)
    const started = performance.now()
    await client.query('select pglite_dev_db.reset()')
    await client.query('select 1')
    freshCopy.push(performance.now() - started)
    await settle()
  }

  const rows = [
    { what: 'new database, first connect (no spare yet)', ...stats([first.ms]) },
    { what: 'new database, first connect (spare ready)', ...stats(withSpare) },
    { what: '4 workers connect to 4 new databases at once (until all answered)', ...stats([fourWorkers]) },
    { what: 'reset in place (10 rows inserted before each)', ...stats(inPlace) },
    { what: 'reset after DDL (fresh copy, spare ready)', ...stats(freshCopy) },
  ]
  const ms = (value: number) => value.toFixed(1)
  process.stdout.write(['| measurement | n | p50 ms | p95 ms | max ms |', '| --- | --- | --- | --- | --- |', ...rows.map((r) => `| ${r.what} | ${r.n} | ${ms(r.p50)} | ${ms(r.p95)} | ${ms(r.max)} |`)].join('\n') + '\n')
  await writeFile(JSON_PATH, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n')
  process.stderr.write(`figures written to ${JSON_PATH}\n`)
} finally {
  await Promise.all(clients.map((client) => client.end().catch(() => {})))
  await dev.close()
}
