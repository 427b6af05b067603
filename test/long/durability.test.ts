// Crash durability, measured on the real CLI: node-postgres and postgres.js clients write (autocommit inserts,
// explicit transactions step by step and as multi-statement scripts, pipelined inserts, rollbacks) while the server
// is killed -9, or stopped with SIGTERM, at the moment the Nth commit is acknowledged (or the Nth COMMIT sent). After
// a restart on the same data dir, every acknowledged transaction must be there whole; one whose COMMIT got no answer
// may be there or not, but never in part; a rolled-back one, or one whose COMMIT was never sent, must not be there.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import pg from 'pg'
import postgres from 'postgres'
import { describe, expect, it, onTestFinished } from 'vitest'
import { copyTemplate, removeDataDir } from '../helpers/db.ts'
import { endClient } from '../../harness/pg.ts'
import { createRng, runSeed, withSeed, type Rng } from '../../harness/seed.ts'
import { withDeadline } from '../../harness/raw-client.ts'

const BIN = fileURLToPath(new URL('../../bin/pglite-dev-db.js', import.meta.url))
const START_DEADLINE_MS = 30_000
const STOP_DEADLINE_MS = 15_000
/** From the start of a round's load to the event that stops the server. */
const LOAD_DEADLINE_MS = 30_000
/** Writers end on the first error once the server is gone. */
const SETTLE_DEADLINE_MS = 10_000
const QUERY_DEADLINE_MS = 10_000
const PG_WRITERS = 3
const POSTGRES_JS_WRITERS = 3
const TABLE = 'durable'

// --- The CLI as a child process ---

interface Cli {
  child: ChildProcess
  url: string
  /** From spawn to the URL line. */
  startMs: number
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  stderr(): string
}

/** Owns the children and the data dir of one test: everything is killed and removed when it finishes, pass or fail. */
function useCrashBench() {
  const children: Cli[] = []
  const dirs: string[] = []
  onTestFinished(async () => {
    for (const cli of children)
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL')
    await withDeadline(Promise.all(children.map((cli) => cli.exited)), STOP_DEADLINE_MS, 'children exit after the test')
    await Promise.all(dirs.map(removeDataDir))
  })
  return {
    async dataDir(): Promise<string> {
      const dir = await copyTemplate()
      dirs.push(dir)
      return dir
    },
    async start(dataDir: string): Promise<Cli> {
      const startedAt = performance.now()
      const child = spawn(
        process.execPath,
        [BIN, '--data-dir', dataDir, '--port', '0', '--no-migrations', '--log-level', 'warn'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      )
      let stderr = ''
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      )
      const cli: Cli = { child, url: '', startMs: 0, exited, stderr: () => stderr }
      children.push(cli)
      const firstLine = once(createInterface({ input: child.stdout! }), 'line').then(([line]) => line as string)
      const diedFirst = exited.then(({ code, signal }) => {
        throw new Error(`the CLI exited (code ${code}, signal ${signal}) before printing its URL:\n${stderr}`)
      })
      cli.url = await withDeadline(Promise.race([firstLine, diedFirst]), START_DEADLINE_MS, 'the CLI URL line')
      cli.startMs = Math.round(performance.now() - startedAt)
      return cli
    },
  }
}

async function query<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  await withDeadline(client.connect(), QUERY_DEADLINE_MS, 'connect')
  try {
    return (await withDeadline(client.query<R>(text), QUERY_DEADLINE_MS, text)).rows
  } finally {
    await endClient(client)
  }
}

// --- What each client was told ---

/**
 * `open`: COMMIT not sent (yet); `doubt`: COMMIT (or the autocommit statement) sent, no answer; `acked`: the client
 * got CommandComplete COMMIT / INSERT and ReadyForQuery; `rolled-back`: ROLLBACK answered.
 */
type TxnState = 'open' | 'doubt' | 'acked' | 'rolled-back'

interface Txn {
  id: number
  ids: number[]
  state: TxnState
  writer: string
  kind: string
}

/** What stops the server: the Nth acknowledged commit, or the Nth COMMIT sent (so the server is likely executing it). */
type TriggerEvent = 'acked' | 'commit-sent'

/** Every transaction the writers began, with ids unique across rounds, and a synchronous hook on the Nth event. */
function createLedger() {
  const txns = new Map<number, Txn>()
  let nextRowId = 1
  let nextTxnId = 1
  const counts: Record<TriggerEvent, number> = { acked: 0, 'commit-sent': 0 }
  let trigger: { event: TriggerEvent; at: number; fire: () => void } | undefined
  const unexpected: string[] = []
  const count = (event: TriggerEvent) => {
    counts[event]++
    if (trigger?.event === event && counts[event] >= trigger.at) {
      const { fire } = trigger
      trigger = undefined
      fire()
    }
  }
  return {
    txns,
    unexpected,
    count: (event: TriggerEvent) => counts[event],
    begin(writer: string, kind: string, rows: number): Txn {
      const txn: Txn = { id: nextTxnId++, ids: [], state: 'open', writer, kind }
      for (let i = 0; i < rows; i++) txn.ids.push(nextRowId++)
      txns.set(txn.id, txn)
      return txn
    },
    commitSent(txn: Txn): void {
      txn.state = 'doubt'
      count('commit-sent')
    },
    ack(txn: Txn): void {
      txn.state = 'acked'
      count('acked')
    },
    rolledBack(txn: Txn): void {
      txn.state = 'rolled-back'
    },
    /** Runs `fire` synchronously inside the event that makes its count reach `at`. */
    on(event: TriggerEvent, at: number, fire: () => void): void {
      trigger = { event, at, fire }
    },
  }
}
type Ledger = ReturnType<typeof createLedger>

const insertSql = `insert into ${TABLE} (id, txn, writer) values ($1, $2, $3)`
const insertLiteral = (txn: Txn, id: number) =>
  `insert into ${TABLE} (id, txn, writer) values (${id}, ${txn.id}, '${txn.writer}')`

interface WriterEnd {
  writer: string
  /** SQLSTATE or client error code of every error this writer saw (query rejections and 'error' events). */
  errorCodes: string[]
}

const errorCode = (error: unknown): string => {
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' ? code : (error as Error).message
}

/** node-postgres: autocommit insert, BEGIN/inserts/COMMIT step by step, the same as one simple-query script, or ROLLBACK. */
async function pgWriter(writer: string, url: string, ledger: Ledger, random: Rng): Promise<WriterEnd> {
  const errorCodes: string[] = []
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  client.on('error', (error) => errorCodes.push(errorCode(error)))
  try {
    await client.connect()
    for (;;) {
      const kind = random.pick(['autocommit', 'autocommit', 'transaction', 'script', 'rollback'] as const)
      const txn = ledger.begin(writer, kind, kind === 'autocommit' ? 1 : random.int(2, 5))
      if (kind === 'autocommit') {
        ledger.commitSent(txn)
        const result = await client.query(insertSql, [txn.ids[0], txn.id, writer])
        if (result.rowCount !== 1) ledger.unexpected.push(`${writer} autocommit insert: rowCount ${result.rowCount}`)
        ledger.ack(txn)
      } else if (kind === 'script') {
        ledger.commitSent(txn)
        const results = (await client.query(
          ['begin', ...txn.ids.map((id) => insertLiteral(txn, id)), 'commit'].join(';'),
        )) as unknown as pg.QueryResult[]
        const last = results.at(-1)?.command
        if (last !== 'COMMIT') ledger.unexpected.push(`${writer} script ended with ${last}`)
        ledger.ack(txn)
      } else {
        await client.query('begin')
        for (const id of txn.ids) await client.query(insertSql, [id, txn.id, writer])
        if (kind === 'rollback') {
          await client.query('rollback')
          ledger.rolledBack(txn)
        } else {
          ledger.commitSent(txn)
          const result = await client.query('commit')
          // A COMMIT of a failed transaction answers ROLLBACK: that would be no acknowledgement.
          if (result.command !== 'COMMIT') ledger.unexpected.push(`${writer} commit answered ${result.command}`)
          else ledger.ack(txn)
        }
      }
    }
  } catch (error) {
    errorCodes.push(errorCode(error))
  } finally {
    client.connection.stream.destroy()
  }
  return { writer, errorCodes }
}

/**
 * postgres.js (one connection): an autocommit insert, several pipelined at once (each its own transaction), or an
 * explicit transaction as one multi-statement simple query. Not sql.begin(): on a reserved connection whose server
 * dies, postgres.js 3.4.9 throws an uncatchable TypeError from a timer (porsager/postgres#1208, #1154).
 */
async function postgresJsWriter(writer: string, url: string, ledger: Ledger, random: Rng): Promise<WriterEnd> {
  const errorCodes: string[] = []
  // fetch_types off: when the server is killed as a connection opens, postgres.js's array-type query rejects with
  // nobody to catch it (an unhandled rejection that fails the run); these writers send only ints and text.
  const sql = postgres(url, {
    max: 1,
    onnotice: () => {},
    connect_timeout: 5,
    idle_timeout: 0,
    max_lifetime: null,
    fetch_types: false,
  })
  const insert = async (txn: Txn) => {
    ledger.commitSent(txn)
    const result = await sql`insert into durable (id, txn, writer) values (${txn.ids[0]!}, ${txn.id}, ${writer})`
    if (result.count !== 1) ledger.unexpected.push(`${writer} autocommit insert: count ${result.count}`)
    ledger.ack(txn)
  }
  try {
    for (;;) {
      const kind = random.pick(['autocommit', 'pipelined', 'script'] as const)
      if (kind === 'autocommit') {
        await insert(ledger.begin(writer, kind, 1))
      } else if (kind === 'pipelined') {
        // Issued together, they go out as one pipeline on the connection; each is acknowledged on its own.
        const settled = await Promise.allSettled(
          Array.from({ length: random.int(2, 5) }, () => insert(ledger.begin(writer, kind, 1))),
        )
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
        if (failed) throw failed.reason
      } else {
        const txn = ledger.begin(writer, kind, random.int(2, 5))
        ledger.commitSent(txn)
        await sql.unsafe(['begin', ...txn.ids.map((id) => insertLiteral(txn, id)), 'commit'].join(';'))
        ledger.ack(txn)
      }
    }
  } catch (error) {
    errorCodes.push(errorCode(error))
  } finally {
    await sql.end({ timeout: 0 })
  }
  return { writer, errorCodes }
}

/** Starts every writer against `url`; resolves when all of them have stopped (on their first error). */
function runWriters(url: string, ledger: Ledger, random: Rng, round: number): Promise<WriterEnd[]> {
  return Promise.all([
    ...Array.from({ length: PG_WRITERS }, (_, i) =>
      pgWriter(`pg${round}.${i}`, url, ledger, random.fork(round * 100 + i)),
    ),
    ...Array.from({ length: POSTGRES_JS_WRITERS }, (_, i) =>
      postgresJsWriter(`js${round}.${i}`, url, ledger, random.fork(round * 100 + 50 + i)),
    ),
  ])
}

// --- Checking the restarted server against the ledger ---

interface Audit {
  ackedTxns: number
  ackedRows: number
  found: number
  lost: string[]
  partial: string[]
  /** Rolled back, or COMMIT never sent, yet present. */
  ghosts: string[]
  /** Rows of transactions nobody began. */
  unknown: string[]
  doubtPresent: number
  doubtAbsent: number
}

async function audit(url: string, ledger: Ledger): Promise<Audit> {
  const rows = await query<{ txn: number; ids: number[] }>(
    url,
    `select txn, array_agg(id order by id) as ids from ${TABLE} group by txn`,
  )
  const present = new Map(rows.map((r) => [r.txn, r.ids]))
  const result: Audit = {
    ackedTxns: 0,
    ackedRows: 0,
    found: 0,
    lost: [],
    partial: [],
    ghosts: [],
    unknown: [],
    doubtPresent: 0,
    doubtAbsent: 0,
  }
  const describe = (txn: Txn, ids: number[] | undefined) =>
    `txn ${txn.id} (${txn.writer} ${txn.kind}, ${txn.state}): wrote ${JSON.stringify(txn.ids)}, found ${JSON.stringify(ids ?? [])}`
  for (const txn of ledger.txns.values()) {
    const ids = present.get(txn.id)
    present.delete(txn.id)
    const whole = ids !== undefined && JSON.stringify(ids) === JSON.stringify(txn.ids)
    if (ids !== undefined && !whole) result.partial.push(describe(txn, ids))
    if (txn.state === 'acked') {
      result.ackedTxns++
      result.ackedRows += txn.ids.length
      if (whole) result.found++
      else result.lost.push(describe(txn, ids))
    } else if (txn.state === 'doubt') {
      if (ids === undefined) result.doubtAbsent++
      else result.doubtPresent++
    } else if (ids !== undefined) {
      result.ghosts.push(describe(txn, ids))
    }
  }
  for (const [txn, ids] of present) result.unknown.push(`txn ${txn}: ${JSON.stringify(ids)}`)
  return result
}

function expectDurable(a: Audit): void {
  expect({ lost: a.lost, partial: a.partial, ghosts: a.ghosts, unknown: a.unknown }).toEqual({
    lost: [],
    partial: [],
    ghosts: [],
    unknown: [],
  })
  expect(a.found).toBe(a.ackedTxns)
}

const figures = (a: Audit) =>
  `acknowledged ${a.ackedTxns} txns (${a.ackedRows} rows), found ${a.found}, lost ${a.lost.length}, partial ${a.partial.length}, ` +
  `ghosts ${a.ghosts.length}, in doubt present/absent ${a.doubtPresent}/${a.doubtAbsent}`

async function createTable(url: string): Promise<void> {
  await query(url, `create table ${TABLE} (id int primary key, txn int not null, writer text not null)`)
}

/** Runs the writers until the count of `event` reaches `at`, then `stop()`s the server from inside that event; waits for the writers. */
async function loadUntil(
  cli: Cli,
  ledger: Ledger,
  random: Rng,
  round: number,
  event: TriggerEvent,
  at: number,
  stop: () => void,
): Promise<WriterEnd[]> {
  let fired!: () => void
  const firedAt = new Promise<void>((resolve) => (fired = resolve))
  ledger.on(event, at, () => {
    stop()
    fired()
  })
  const writers = runWriters(cli.url, ledger, random, round)
  // A writer that fails before the trigger (a bug) must not leave this waiting for acks that never come.
  const stoppedEarly = writers.then((ends) => {
    throw new Error(
      `every writer stopped at ${ledger.count(event)} of ${at} ${event}: ${JSON.stringify(ends)}\n${cli.stderr()}`,
    )
  })
  await withDeadline(Promise.race([firedAt, stoppedEarly]), LOAD_DEADLINE_MS, `${at} ${event}`)
  return withDeadline(writers, SETTLE_DEADLINE_MS, 'writers stop after the server went away')
}

/** FUZZ_SEED replays a run's choices (which writer does what, where the server dies); timing still varies. */
const seed = runSeed()
const FILE = 'test/long/durability.test.ts'

describe('crash durability of the CLI', () => {
  it('kill -9 under a write load, three times: every acknowledged commit survives, every transaction is all-or-nothing', () =>
    withSeed(seed, FILE, async () => {
      const random = createRng(seed)
      const bench = useCrashBench()
      const dir = await bench.dataDir()
      let cli = await bench.start(dir)
      await createTable(cli.url)
      const ledger = createLedger()
      for (let round = 1; round <= 3; round++) {
        // Rounds 1 and 3 die right after a commit was acknowledged, round 2 right after a COMMIT was sent.
        const event: TriggerEvent = round === 2 ? 'commit-sent' : 'acked'
        const at = ledger.count(event) + random.int(150, 400)
        const acked = ledger.count('acked')
        const victim = cli
        const ends = await loadUntil(victim, ledger, random, round, event, at, () => victim.child.kill('SIGKILL'))
        expect(await withDeadline(victim.exited, STOP_DEADLINE_MS, 'kill -9 exit')).toEqual({
          code: null,
          signal: 'SIGKILL',
        })
        // Killed mid-load: every writer ended on a connection error, none on a Postgres error.
        for (const end of ends)
          expect(
            end.errorCodes.filter((code) => /^[0-9A-Z]{5}$/.test(code)),
            end.writer,
          ).toEqual([])
        expect(ledger.unexpected).toEqual([])

        cli = await bench.start(dir)
        const result = await audit(cli.url, ledger)
        console.log(
          `kill -9 round ${round} (seed ${seed}): killed at ${event} #${at}, ${ledger.count('acked') - acked} acks this round; ` +
            `restart ${cli.startMs} ms; ${figures(result)}`,
        )
        expectDurable(result)
        expect(result.ackedTxns).toBeGreaterThan(acked)
      }
      const stopping = once(cli.child, 'exit')
      cli.child.kill('SIGTERM')
      expect(await withDeadline(stopping, STOP_DEADLINE_MS, 'SIGTERM exit')).toEqual([0, null])
    }))

  it('SIGTERM under a write load: exit 0, clients told 57P01, every acknowledged commit there after a restart', () =>
    withSeed(seed, FILE, async () => {
      const random = createRng(seed).fork(1)
      const bench = useCrashBench()
      const dir = await bench.dataDir()
      const cli = await bench.start(dir)
      await createTable(cli.url)
      const ledger = createLedger()
      const at = random.int(200, 400)
      let signalledAt = 0
      const ends = await loadUntil(cli, ledger, random, 1, 'acked', at, () => {
        signalledAt = performance.now()
        cli.child.kill('SIGTERM')
      })
      const exit = await withDeadline(cli.exited, STOP_DEADLINE_MS, 'SIGTERM exit')
      const stopMs = Math.round(performance.now() - signalledAt)
      expect(exit, cli.stderr()).toEqual({ code: 0, signal: null })
      expect(ledger.unexpected).toEqual([])
      // Every client is told why: FATAL 57P01 admin_shutdown. node-postgres reports it on the query it was running, or
      // as an 'error' event between queries; postgres.js waits for the ReadyForQuery that a FATAL never gets and reports
      // CONNECTION_CLOSED instead (so it does against real Postgres).
      const told = ends.filter((end) => end.errorCodes.includes('57P01'))
      expect(
        told.map((end) => end.writer),
        JSON.stringify(ends),
      ).toEqual(ends.filter((end) => end.writer.startsWith('pg')).map((end) => end.writer))

      const again = await bench.start(dir)
      const result = await audit(again.url, ledger)
      console.log(
        `SIGTERM (seed ${seed}) at ack ${at}: stopped in ${stopMs} ms, exit 0; ${told.length}/${ends.length} clients got 57P01 ` +
          `(${ends.map((e) => `${e.writer}:${e.errorCodes.join('+')}`).join(' ')}); restart ${again.startMs} ms; ${figures(result)}`,
      )
      expectDurable(result)
      expect(result.ackedTxns).toBeGreaterThanOrEqual(at)
      const stopping = once(again.child, 'exit')
      again.child.kill('SIGTERM')
      expect(await withDeadline(stopping, STOP_DEADLINE_MS, 'SIGTERM exit')).toEqual([0, null])
    }))
})
