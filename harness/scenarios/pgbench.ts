// pgbench (libpq, PostgreSQL 15 client tools) against the server: 8 clients of TPC-B-like transactions in extended
// and simple protocol, then the TPC-B invariant: sum(abalance) = sum(tbalance) = sum(bbalance) = sum(delta).
// Tables are pgbench's fixed pgbench_* names: point this only at a throwaway database.
import { spawn } from 'node:child_process'
import pg from 'pg'
import { endClient } from '../pg.ts'
import { StalledError, withDeadline } from '../raw-client.ts'
import { attempt, createTally, recordFailure, verdictOf, type Outcome, type Scenario, type Tally } from './outcome.ts'

export interface PgbenchOptions {
  clients?: number
  transactions?: number
  /** Kill a run after this many consecutive one-second progress reports with no transaction done. */
  idleProgressReports?: number
  /** Hard bound on each pgbench process. */
  runDeadlineMs?: number
  /** Query modes to run one after the other, each with every client. */
  modes?: ReadonlyArray<'simple' | 'extended' | 'prepared'>
}

/** pgbench prints messages, not SQLSTATEs; these are the messages a shared session produces, with Postgres's codes. */
const KNOWN_MESSAGES: Array<[RegExp, string]> = [
  [/portal ".*" does not exist/, '34000'],
  [/prepared statement ".*" does not exist/, '26000'],
  [/prepared statement ".*" already exists/, '42P05'],
  [/bind message supplies \d+ parameters/, '08P01'],
  [/current transaction is aborted/, '25P02'],
  [/server closed the connection unexpectedly|connection to server .* failed|terminating connection/, '08006'],
]

function keyOf(message: string): string {
  return KNOWN_MESSAGES.find(([pattern]) => pattern.test(message))?.[1] ?? `pgbench: ${message.slice(0, 40)}`
}

/** One line per aborted client: `client 2 script 0 aborted in command 4 query 0: ERROR:  portal "" does not exist`, `client 3 command 4: no results`. */
const ABORT_LINE =
  /^pgbench: error: (client \d+ (?:script \d+ aborted in )?command \d+(?: query \d+)?: (?:(?:ERROR|FATAL):\s+)?(.*))$/gm

export interface PgbenchRun {
  exitCode: number | null
  stdout: string
  stderr: string
  isKilled: boolean
  /** Transactions counted from progress reports (what we know when the run had to be killed). */
  progressed: number
}

/** One pgbench process (also the benchmark's): killed past `runDeadlineMs` or after `idleProgressReports` reports of 0 tps. */
export function runPgbench(
  url: string,
  args: string[],
  options: Pick<Required<PgbenchOptions>, 'runDeadlineMs' | 'idleProgressReports'>,
): Promise<PgbenchRun> {
  const { hostname, port, username, pathname } = new URL(url)
  const child = spawn(
    'pgbench',
    ['-h', hostname, '-p', port || '5432', '-U', username || 'postgres', ...args, pathname.slice(1) || 'postgres'],
    {
      // GSSENCRequest is refused only by servers that answer it; without a ticket cache libpq skips it anyway.
      env: { ...process.env, PGCONNECT_TIMEOUT: '5', PGGSSENCMODE: 'disable', PGAPPNAME: 'pgbench-scenario' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  const run: PgbenchRun = { exitCode: null, stdout: '', stderr: '', isKilled: false, progressed: 0 }
  let idleReports = 0
  const kill = () => {
    run.isKilled = true
    child.kill('SIGKILL')
  }
  const timer = setTimeout(kill, options.runDeadlineMs)
  child.stdout.on('data', (chunk: Buffer) => (run.stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => {
    const text = chunk.toString()
    run.stderr += text
    for (const match of text.matchAll(/^progress: [\d.]+ s, ([\d.]+) tps/gm)) {
      const tps = Number(match[1])
      run.progressed += tps
      idleReports = tps === 0 ? idleReports + 1 : 0
      if (idleReports >= options.idleProgressReports && !run.isKilled) kill()
    }
  })
  return new Promise((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      run.exitCode = code
      resolve(run)
    })
  })
}

function recordRun(tally: Tally, run: PgbenchRun, expected: number): number {
  const processed = Number(
    /number of transactions actually processed: (\d+)/.exec(run.stdout)?.[1] ?? Math.round(run.progressed),
  )
  const failed = Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? 0)
  tally.queries += expected
  tally.ok += processed
  const aborts = [...run.stderr.matchAll(ABORT_LINE)]
  for (const [, line, message] of aborts)
    recordFailure(tally, Object.assign(new Error(line), { code: keyOf(message ?? '') }))
  if (failed > 0)
    recordFailure(tally, Object.assign(new Error(`${failed} failed transactions`), { code: 'PGBENCH_FAILED' }))
  if (run.isKilled) {
    // The summary is lost with the process: count what progress reports saw, and one stall for the rest.
    recordFailure(tally, new StalledError(`pgbench ${processed}/${expected} transactions, then no progress`))
    tally.stalled += Math.max(0, expected - processed - 1)
  } else if (aborts.length === 0 && processed !== expected) {
    recordFailure(
      tally,
      Object.assign(new Error(`exit ${run.exitCode}: ${run.stderr.trim().split('\n').pop() ?? ''}`), {
        code: 'PGBENCH',
      }),
    )
  }
  return processed
}

export async function pgbench(url: string, options: PgbenchOptions = {}): Promise<Outcome> {
  const resolved: Required<PgbenchOptions> = {
    modes: options.modes ?? ['extended', 'simple'],
    clients: options.clients ?? 8,
    transactions: options.transactions ?? 50,
    idleProgressReports: options.idleProgressReports ?? 3,
    runDeadlineMs: options.runDeadlineMs ?? 60_000,
  }
  const tally = createTally()
  const details: Record<string, unknown> = {}
  // Server-side data generation (G): pgbench's default client-side COPY FROM STDIN kills a stock PGlite.
  const init = await runPgbench(url, ['-i', '-s', '1', '-I', 'dtGvp', '-q'], {
    ...resolved,
    idleProgressReports: Infinity,
  })
  const isInitialized = await attempt(tally, async () =>
    init.exitCode === 0
      ? true
      : Promise.reject(
          Object.assign(new Error(init.stderr.trim()), { code: init.isKilled ? 'STALLED_INIT' : 'PGBENCH_INIT' }),
        ),
  )
  if (isInitialized !== 'ok') return verdictOf(tally, details)

  let processed = 0
  for (const mode of resolved.modes) {
    // -n: pgbench's pre-run vacuum truncates pgbench_history, which would break the sums across two runs.
    // -M prepared: libpq's PQprepare blocks its thread until the Parse is answered. With clients sharing a thread,
    // one client inside a transaction waits for that thread while the thread waits for the session it holds; a
    // thread per client is how an app using PQprepare behaves (one connection per thread).
    const threads = mode === 'prepared' ? resolved.clients : 2
    const args = [
      '-n',
      '-c',
      String(resolved.clients),
      '-j',
      String(threads),
      '-t',
      String(resolved.transactions),
      '-M',
      mode,
      '-P',
      '1',
    ]
    const run = await runPgbench(url, args, resolved)
    details[mode] = { exitCode: run.exitCode, isKilled: run.isKilled }
    processed += recordRun(tally, run, resolved.clients * resolved.transactions)
  }

  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', (error) => recordFailure(tally, error))
  let isConnected = false
  try {
    await attempt(tally, async () => {
      await withDeadline(client.connect(), 5_000, 'connect for the balance check')
      isConnected = true
      const { rows } = await withDeadline(
        client.query<{ a: string; t: string; b: string; d: string; h: string }>(
          `select (select sum(abalance) from pgbench_accounts)::text a, (select sum(tbalance) from pgbench_tellers)::text t,
                  (select sum(bbalance) from pgbench_branches)::text b, (select coalesce(sum(delta), 0) from pgbench_history)::text d,
                  (select count(*) from pgbench_history)::text h`,
        ),
        10_000,
        'balance check',
      )
      const sums = rows[0]
      details.balances = sums
      if (!sums) return 'balance check returned no row'
      if (!(sums.a === sums.t && sums.t === sums.b && sums.b === sums.d))
        return `balances differ: ${JSON.stringify(sums)}`
      return Number(sums.h) === processed
        ? true
        : `history has ${sums.h} rows, pgbench reported ${processed} transactions`
    })
  } finally {
    if (isConnected) await endClient(client)
    else client.connection.stream.destroy()
  }
  return verdictOf(tally, details)
}

export const pgbenchScenario: Scenario = { name: 'pgbench', run: (url) => pgbench(url) }
/** -M prepared: every client Parses the same statement names (P_0, P_1, ...) once and reuses them. */
export const pgbenchPreparedScenario: Scenario = {
  name: 'pgbench-prepared',
  run: (url) => pgbench(url, { modes: ['prepared'] }),
}
