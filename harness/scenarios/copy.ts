// COPY with real clients while another client keeps querying: psql's \copy in and out (csv and binary),
// postgres.js streaming COPY FROM STDIN, a COPY that the client aborts (CopyFail rolls it back), a COPY inside a
// rolled-back transaction, and pgbench -i's client-side data load (COPY FROM STDIN of 100k rows). Every table is
// checked by count and checksum afterwards. On stock, the first COPY FROM STDIN takes PGlite down.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import postgres from 'postgres'
import { endClient } from '../pg.ts'
import { LIBPQ_ENV, runProcess } from '../process.ts'
import { withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario } from './outcome.ts'

const ROWS = 2_000
const PROCESS_DEADLINE_MS = 20_000

/** A libpq tool with `input` on stdin; PGDATABASE carries the URL for tools that take no -d. */
const runTool = (tool: string, args: string[], url: string, input: Buffer | string = '') =>
  runProcess(tool, args, { env: { ...LIBPQ_ENV, PGDATABASE: url }, input, deadlineMs: PROCESS_DEADLINE_MS })

const psql = (url: string, command: string, input?: Buffer | string) =>
  runTool('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-d', url, '-c', command], url, input)

function csvRows(count: number, from = 0): string {
  const lines: string[] = []
  for (let i = from; i < from + count; i++) lines.push(`${i},"name ${i}, with comma","line ""${i}""\nsecond line"`)
  return `${lines.join('\n')}\n`
}

export async function copyScenario(url: string): Promise<Outcome> {
  const tally = createTally()
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', (error) => recordFailure(tally, error))
  const sql = postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 5 })
  let isConnected = false
  let bystanderRunning = true
  const q = async <R extends pg.QueryResultRow>(text: string) =>
    (await withDeadline(client.query<R>(text), 5_000, text)).rows
  /** count and an order-independent checksum of a table's rows */
  const summary = async (table: string) =>
    (
      await q<{ n: number; sum: string | null }>(
        `select count(*)::int as n, md5(string_agg(t::text, '|' order by t::text)) as sum from ${table} t`,
      )
    )[0]
  try {
    await withDeadline(client.connect(), 5_000, 'connect')
    isConnected = true
    await q(
      'drop table if exists copy_src, copy_bin, copy_js; create table copy_src (id int primary key, name text, note text); create table copy_bin (like copy_src); create table copy_js (like copy_src)',
    )
    // A bystander that keeps the session busy between the COPYs; each of its answers is checked.
    const bystander = (async () => {
      for (let i = 0; bystanderRunning && i < 500; i++) {
        const verdict = await attempt(tally, async () => {
          const rows = await withDeadline(sql`select ${i}::int + 1 as v`.execute(), 5_000, `bystander ${i}`)
          return rows[0]?.v === i + 1 ? true : `bystander ${i}: ${JSON.stringify(rows)}`
        })
        if (verdict === 'stalled' || verdict === 'error') return
      }
    })()

    // Each step checks what it did; after the first that fails the rest are not run (on stock PGlite is gone).
    const steps: Array<() => Promise<true | string>> = [
      async () => {
        const run = await psql(url, '\\copy copy_src from pstdin with (format csv)', csvRows(ROWS))
        const got = await summary('copy_src')
        return run.code === 0 && got?.n === ROWS
          ? true
          : `psql \\copy csv in: exit ${run.code} ${run.stderr.trim()}, ${got?.n} rows`
      },
      async () => {
        const run = await psql(url, '\\copy (select * from copy_src order by id) to pstdout with (format csv)')
        return run.code === 0 && run.stdout.toString() === csvRows(ROWS)
          ? true
          : `psql \\copy csv out: exit ${run.code} ${run.stderr.trim()}, ${run.stdout.length} bytes`
      },
      async () => {
        const out = await psql(url, '\\copy copy_src to pstdout with (format binary)')
        const run = await psql(url, '\\copy copy_bin from pstdin with (format binary)', out.stdout)
        const [src, bin] = [await summary('copy_src'), await summary('copy_bin')]
        return out.code === 0 && run.code === 0 && bin?.n === ROWS && bin.sum === src?.sum
          ? true
          : `binary round trip: exit ${out.code}/${run.code} ${run.stderr.trim()}, ${JSON.stringify([src, bin])}`
      },
      async () => {
        // postgres.js streams CopyData as it is written; the server gathers it until CopyDone.
        const writable = await withDeadline(sql`copy copy_js from stdin`.writable(), 5_000, 'copy writable')
        for (let i = 0; i < ROWS; i += 100) {
          const chunk = Array.from({ length: 100 }, (_, k) => `${i + k}\tjs ${i + k}\t\\N\n`).join('')
          if (!writable.write(chunk)) await new Promise((resolve) => writable.once('drain', resolve))
        }
        await withDeadline(
          new Promise<void>((resolve, reject) =>
            writable.end((error?: Error | null) => (error ? reject(error) : resolve())),
          ),
          5_000,
          'copy end',
        )
        const got = await summary('copy_js')
        return got?.n === ROWS ? true : `postgres.js copy: ${got?.n} rows`
      },
      async () => {
        // The client gives up half-way: CopyFail. Nothing of that COPY may stay.
        const writable = await withDeadline(sql`copy copy_js from stdin`.writable(), 5_000, 'copy writable')
        const failed = new Promise<unknown>((resolve) => writable.once('error', resolve))
        writable.write(`${ROWS + 1}\thalf\t\\N\n`)
        writable.destroy(new Error('client gave up'))
        await withDeadline(failed, 5_000, 'CopyFail answered')
        const got = await summary('copy_js')
        return got?.n === ROWS ? true : `after CopyFail: ${got?.n} rows, expected ${ROWS}`
      },
      async () => {
        // A script (psql -f) so that the \\copy runs inside the transaction; its data comes on stdin.
        const dir = await mkdtemp(join(tmpdir(), 'pglite-copy-'))
        const script = join(dir, 'rolled-back.sql')
        await writeFile(script, 'begin;\n\\copy copy_src from pstdin with (format csv)\nrollback;\n')
        const run = await runTool(
          'psql',
          ['-X', '-v', 'ON_ERROR_STOP=1', '-At', '-d', url, '-f', script],
          url,
          csvRows(10, ROWS),
        ).finally(() => rm(dir, { recursive: true, force: true }))
        const got = await summary('copy_src')
        return run.code === 0 && got?.n === ROWS
          ? true
          : `COPY in a rolled-back transaction: exit ${run.code} ${run.stderr.trim()}, ${got?.n} rows`
      },
      async () => {
        // pgbench's default initialization loads pgbench_accounts with COPY FROM STDIN (client-side generation).
        const run = await runTool('pgbench', ['-i', '-s', '1', '-q', '-I', 'dtgvp', url], url)
        const [row] = await q<{ n: number }>('select count(*)::int as n from pgbench_accounts')
        return run.code === 0 && row?.n === 100_000
          ? true
          : `pgbench -i: exit ${run.code} ${run.stderr.trim().split('\n').pop()}, ${row?.n} accounts`
      },
    ]
    for (const step of steps) if ((await attempt(tally, step)) !== 'ok') break
    bystanderRunning = false
    await withDeadline(bystander, 10_000, 'bystander')
  } catch (error) {
    recordFailure(tally, error)
  } finally {
    bystanderRunning = false
    await sql.end({ timeout: 2 }) // does not reject: after 2 s it destroys the sockets
    if (isConnected) await endClient(client)
    else client.connection.stream.destroy()
  }
  return verdictOf(tally)
}

export const copyInOutScenario: Scenario = { name: 'copy', run: (url) => copyScenario(url) }
