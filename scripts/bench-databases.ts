// Benchmark for a database per test worker: how long a new database takes to be ready on first connect (the
// first, and the next ones with the spare loaded ahead), how long `select pglite_dev_db.reset()` takes in place and
// as a fresh copy (after DDL), and how long 4 workers wait to get their databases at once. Real server, real
// node-postgres clients. Then six copies of one database by CREATE DATABASE ... TEMPLATE, in memory and with a data
// dir, each timed from the client. Then 4 pgbench processes, each on its own database, busy at once: throughput and
// the cores the server used, with databases in worker threads (the default) and with --no-database-threads.
// Prints Markdown tables and writes the figures as JSON.
// Usage: npm run bench:databases -- [--resets N] [--seconds S] [--json PATH] [--no-database-threads (for the first table)]
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { startDevDb } from '../src/databases/dev-db.ts'

const { values } = parseArgs({
  options: {
    resets: { type: 'string' },
    seconds: { type: 'string' },
    json: { type: 'string' },
    'no-database-threads': { type: 'boolean' },
  },
})
const RESETS = Number(values.resets ?? 50)
const COPIES = 6
const SECONDS = Number(values.seconds ?? 8)
const JSON_PATH = values.json ?? 'results/benchmarks-databases.json'

/** pgbench scripts: short statements (a point select and an insert), and a statement that keeps Postgres busy. */
const WORKLOADS = {
  'point select + insert': `\\set id random(1, 1000)
select * from customers where email = 'w1-' || :id || '@example.com';
insert into customers (email, name) values ('w' || :client_id || '-' || :id || '-' || pg_catalog.random() || '@example.com', 'W');
`,
  'aggregate over 20k generated rows': `select count(*), sum(g) from generate_series(1, 20000) g;
`,
}

const dev = await startDevDb({ migrations: 'migrations', databaseThreads: !values['no-database-threads'] })
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
    await client.query(
      `insert into customers (email, name) select 'r' || g || '@example.com', 'R' from generate_series(1, 10) g`,
    )
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
  process.stdout.write(
    [
      '| measurement | n | p50 ms | p95 ms | max ms |',
      '| --- | --- | --- | --- | --- |',
      ...rows.map((r) => `| ${r.what} | ${r.n} | ${ms(r.p50)} | ${ms(r.p95)} | ${ms(r.max)} |`),
    ].join('\n') + '\n',
  )
  // node-postgres's end() does not reject: it resolves once the socket has ended.
  await Promise.all(clients.splice(0).map((client) => client.end()))
  await dev.close()

  const copies = { memory: await templateCopies(false), dataDir: await templateCopies(true) }
  process.stdout.write(
    [
      '',
      '| CREATE DATABASE ... TEMPLATE base (1,000 rows), one after another | in memory, ms | with a data dir, ms |',
      '| --- | --- | --- |',
      ...copies.memory.map(
        (memory, i) => `| copy ${i + 1} | ${memory.toFixed(0)} | ${copies.dataDir[i]!.toFixed(0)} |`,
      ),
    ].join('\n') + '\n',
  )

  const busy = await busyDatabases()
  process.stdout.write(
    [
      '',
      `| 4 databases busy at once (${SECONDS} s, pgbench -c 1 on each) | threads: tps | threads: server cores | one thread: tps | one thread: server cores | tps ratio |`,
      '| --- | --- | --- | --- | --- | --- |',
      ...busy.map(
        (b) =>
          `| ${b.workload} | ${b.threads.tps.toFixed(0)} | ${b.threads.cores.toFixed(2)} | ${b.single.tps.toFixed(0)} | ${b.single.cores.toFixed(2)} | ${(b.threads.tps / b.single.tps).toFixed(2)}x |`,
      ),
    ].join('\n') + '\n',
  )
  await writeFile(JSON_PATH, JSON.stringify({ date: new Date().toISOString(), rows, copies, busy }, null, 2) + '\n')
  process.stderr.write(`figures written to ${JSON_PATH}\n`)
} finally {
  await Promise.all(clients.map((client) => client.end()))
  await dev.close()
}

/** Each copy's time, from the client: COPIES copies of a database of 1,000 rows made with CREATE DATABASE ... TEMPLATE. */
async function templateCopies(withDataDir: boolean): Promise<number[]> {
  const dir = withDataDir ? await mkdtemp(join(tmpdir(), 'bench-copies-')) : null
  const server = await startDevDb({ migrations: false, ...(dir ? { dataDir: join(dir, 'data') } : {}) })
  const admin = new pg.Client({ connectionString: server.url })
  try {
    await admin.connect()
    await admin.query('create database base')
    const base = new pg.Client({ connectionString: server.url.replace(/\/postgres$/, '/base') })
    await base.connect()
    await base.query('create table kept (a int); insert into kept select generate_series(1, 1000)')
    await base.end()
    // Not while the server still loads its spare (in memory) after its start.
    await server.databases.spareLoaded()
    const times: number[] = []
    for (let i = 1; i <= COPIES; i++) {
      const started = performance.now()
      await admin.query(`create database copy_${i} template base`)
      times.push(performance.now() - started)
    }
    return times
  } finally {
    await admin.end()
    await server.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  }
}

/** For each workload: 4 pgbench processes on 4 databases, on a server with database threads and on one without. */
async function busyDatabases() {
  const dir = await mkdtemp(join(tmpdir(), 'bench-databases-'))
  try {
    const results = []
    for (const [workload, script] of Object.entries(WORKLOADS)) {
      const file = join(dir, 'script.sql')
      await writeFile(file, script)
      const threads = await busyRun(file, true)
      const single = await busyRun(file, false)
      results.push({ workload, threads, single })
    }
    return results
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function busyRun(script: string, databaseThreads: boolean): Promise<{ tps: number; cores: number }> {
  const server = await startDevDb({ migrations: 'migrations', databaseThreads })
  try {
    const { port } = server
    const names = ['busy_1', 'busy_2', 'busy_3', 'busy_4']
    // Created (and with threads, their threads started) before the clock runs.
    for (const name of names) {
      const client = new pg.Client({ connectionString: server.url.replace(/\/postgres$/, `/${name}`) })
      await client.connect()
      await client.query('select 1')
      await client.end()
    }
    const cpu = process.cpuUsage()
    const started = performance.now()
    const outputs = await Promise.all(
      names.map((name) =>
        promisify(execFile)(
          'pgbench',
          [
            '-n',
            '-c',
            '1',
            '-T',
            String(SECONDS),
            '-f',
            script,
            '-h',
            '127.0.0.1',
            '-p',
            String(port),
            '-U',
            'postgres',
            name,
          ],
          {
            env: { ...process.env, PGGSSENCMODE: 'disable' },
            timeout: (SECONDS + 60) * 1000,
          },
        ),
      ),
    )
    const used = process.cpuUsage(cpu)
    const wall = performance.now() - started
    const tps = outputs.reduce((sum, { stdout }) => sum + Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? NaN), 0)
    return { tps, cores: (used.user + used.system) / 1000 / wall }
  } finally {
    await server.close()
  }
}
