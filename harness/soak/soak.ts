// Soak: many kinds of real clients against one server for a bounded time, every answer checked against what the
// clients know they wrote (model.ts), invariants audited while it runs and once more at the end. Without a URL it
// starts pglite-dev-db in memory (startDevDb); with one it drops and recreates soak_* tables there. The command is
// scripts/soak.ts; test/long/soak.test.ts runs it short.
import type { Duplex } from 'node:stream'
import pg from 'pg'
import { startDevDb, type DevDb } from '../../src/databases/dev-db.ts'
import { endClient, trackPool } from '../pg.ts'
import { createRng } from '../seed.ts'
import { StalledError, withDeadline } from '../raw-client.ts'
import {
  connectPostgresJs,
  postgresJsCopyWorker,
  postgresJsCutOffWorker,
  postgresJsWorker,
  startPostgresJsListener,
} from './js-workers.ts'
import { CHANNELS, createModel, schemaSql, type Model } from './model.ts'
import {
  audit,
  connectClient,
  pgAuditor,
  pgCopyWorker,
  pgDisconnectWorker,
  pgNamedWorker,
  pgPoolWorker,
  startPgListener,
  type SoakContext,
} from './pg-workers.ts'
import { all, createRecorder, formatTally, same, type SoakTally, type Verdict } from './recorder.ts'

export interface SoakOptions {
  /** Soak this server. Default: start pglite-dev-db (startDevDb) in memory, or on `dataDir`. */
  url?: string
  /** For the server the soak starts itself: a data dir instead of memory (a copied template opens faster). */
  dataDir?: string
  /** How long workers start new operations. Default 60. */
  seconds?: number
  /** Seeds every worker's choices. Default: a random one, printed. */
  seed?: number
  /** Progress lines. Default: stderr. */
  log?: (line: string) => void
}

export interface SoakReport {
  seed: number
  seconds: number
  target: string
  elapsedMs: number
  tally: SoakTally
  /** Wrong results, unexpected errors and stalls: the run passes only at 0. */
  unexpected: number
}

const OP_DEADLINE_MS = 15_000
const PROGRESS_EVERY_MS = 10_000
const PG_POOL = { workers: 8, max: 8 }
const POSTGRES_JS_POOL = { workers: 5, max: 7 }
const NAMED_FACTORS = [3, 5, 7]

/** Worker ids: each worker owns the soak_kv rows of its id. */
const ids = {
  pgPool: Array.from({ length: PG_POOL.workers }, (_, i) => 1 + i),
  postgresJs: Array.from({ length: POSTGRES_JS_POOL.workers }, (_, i) => 101 + i),
  named: NAMED_FACTORS.map((_, i) => 201 + i),
  disconnect: 301,
  jsCutOff: 302,
  copyPg: 401,
  copyJs: 402,
}
const KEY_OWNERS = [...ids.pgPool, ...ids.postgresJs, ...ids.named, ids.disconnect]

export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const seconds = options.seconds ?? 60
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32)
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const random = createRng(seed)
  let dev: DevDb | undefined
  if (!options.url)
    dev = await startDevDb({ migrations: false, ...(options.dataDir ? { dataDir: options.dataDir } : {}) })
  const url = options.url ?? dev!.url
  const target = options.url
    ? options.url
    : `pglite-dev-db (startDevDb, ${options.dataDir ? 'data dir' : 'in memory'}) at ${url}`
  log(`soak: seed ${seed}, ${seconds} s, against ${target}`)
  const recorder = createRecorder(OP_DEADLINE_MS)
  const model = createModel(KEY_OWNERS)
  const closers: Array<() => Promise<unknown>> = []
  const startedAt = performance.now()
  let progress: NodeJS.Timeout | undefined
  // A driver's own background query (postgres.js fetches array types on connect) that fails has no caller to tell:
  // against a broken server that is a finding for the report, not a crash of the soak.
  const onUnhandled = (reason: unknown) => recorder.unexpectedError('unhandled', reason)
  process.on('unhandledRejection', onUnhandled)
  try {
    const setup = new pg.Client({ connectionString: url, connectionTimeoutMillis: OP_DEADLINE_MS })
    await withDeadline(setup.connect(), OP_DEADLINE_MS, 'connect for setup')
    try {
      await withDeadline(setup.query(schemaSql(KEY_OWNERS)), OP_DEADLINE_MS, 'create soak tables')
    } finally {
      await endClient(setup)
    }

    const ctx: SoakContext = { url, recorder, model, endAt: Number.POSITIVE_INFINITY, deadlineMs: OP_DEADLINE_MS }
    const pool = new pg.Pool({ connectionString: url, max: PG_POOL.max, connectionTimeoutMillis: OP_DEADLINE_MS })
    pool.on('error', (error) => recorder.unexpectedError('pool', error))
    closers.push(poolCloser(pool))
    const sql = connectPostgresJs(ctx, POSTGRES_JS_POOL.max)
    closers.push(() => sql.end({ timeout: 5 }))

    const pgListeners = await Promise.all(
      [CHANNELS[0], CHANNELS[1]].map((channel, i) => startPgListener(ctx, channel, `pg listener ${i}`)),
    )
    const jsListener = await startPostgresJsListener(ctx, CHANNELS[2], 'postgres.js listener')
    closers.push(...pgListeners.map((l) => () => l.close()), () => jsListener.close())

    ctx.endAt = performance.now() + seconds * 1000
    progress = setInterval(() => {
      const ops = Object.values(recorder.tally.kinds).reduce((sum, k) => sum + k.ops, 0)
      log(
        `soak: ${Math.round((performance.now() - startedAt) / 1000)} s, ${ops} operations, ${recorder.unexpectedCount} unexpected`,
      )
    }, PROGRESS_EVERY_MS)
    const workers = [
      ...ids.pgPool.map((w) => pgPoolWorker(ctx, pool, w, random.fork(w))),
      ...ids.postgresJs.map((w) => postgresJsWorker(ctx, sql, w, random.fork(w))),
      ...ids.named.map((w, i) => pgNamedWorker(ctx, w, NAMED_FACTORS[i]!, random.fork(w))),
      pgDisconnectWorker(ctx, pool, ids.disconnect, random.fork(ids.disconnect)),
      postgresJsCutOffWorker(ctx, ids.jsCutOff, random.fork(ids.jsCutOff)),
      pgCopyWorker(ctx, ids.copyPg, random.fork(ids.copyPg)),
      postgresJsCopyWorker(ctx, sql, ids.copyJs, random.fork(ids.copyJs)),
      pgAuditor(ctx),
    ]
    // A worker that throws outside an operation (its own connect) is itself unexpected; the others carry on.
    const finished = Promise.all(
      workers.map((w) => w.catch((error: unknown) => recorder.unexpectedError('worker', error))),
    )
    // Operations are bounded one by one; this bounds what runs between them, and the report still gets written.
    await withDeadline(finished, seconds * 1000 + 2 * OP_DEADLINE_MS, 'workers finish').catch((error: unknown) => {
      if (!(error instanceof StalledError)) throw error
      recorder.unexpectedError('workers', error)
    })
    clearInterval(progress)

    // --- Final checks, with every writer stopped ---
    await recorder.run('final.notifications', async () => {
      await Promise.all(pgListeners.map((l) => l.sync()))
      // After a round trip that began once every NOTIFY was answered, a node-postgres listener has them all.
      const verdicts: Verdict[] = pgListeners.map((l, i) => same(`pg listener ${i} missing`, l.inbox.missing(), []))
      await jsListener.inbox.complete()
      return all(...verdicts)
    })
    const checker = connectClient(ctx, 'final')
    closers.push(() => endClient(checker))
    const connected = await recorder.run('final.connect', async () => {
      await checker.connect()
      return true
    })
    if (connected === true) {
      await recorder.run('final.audit', () => audit(checker, model))
      await recorder.run('final.keys', () => checkKeys(checker, model))
      await recorder.run('final.copy', () => checkBatches(checker, model))
    }
  } finally {
    process.off('unhandledRejection', onUnhandled)
    clearInterval(progress)
    for (const close of closers.reverse())
      await close().catch((error: unknown) => recorder.unexpectedError('close', error))
    if (dev)
      await withDeadline(dev.close(), OP_DEADLINE_MS, 'server close').catch((error: unknown) =>
        recorder.unexpectedError('close', error),
      )
  }
  return {
    seed,
    seconds,
    target,
    elapsedMs: Math.round(performance.now() - startedAt),
    tally: recorder.tally,
    unexpected: recorder.unexpectedCount,
  }
}

/**
 * pool.end() resolves once it has asked its clients to end, before their sockets have closed; a server stopped right
 * after would still tell them 57P01. The closer this returns also waits (bounded) for every socket of the pool to close.
 */
function poolCloser(pool: pg.Pool): () => Promise<void> {
  const tracked = trackPool(pool)
  const open = new Set<Duplex>()
  pool.on('connect', (client) => {
    const socket = (client as unknown as pg.Client).connection.stream
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  })
  return async () => {
    await tracked.end()
    const closing = [...open].map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())))
    try {
      await withDeadline(Promise.all(closing), OP_DEADLINE_MS, 'pool sockets close')
    } catch (error) {
      if (!(error instanceof StalledError)) throw error
      for (const socket of open) socket.destroy()
    }
  }
}

/** Every key holds the value its owner last had acknowledged. */
async function checkKeys(client: pg.Client, model: Model): Promise<Verdict> {
  const { rows } = await client.query<{ worker: number; k: number; v: number }>(
    'select worker, k, v from soak_kv order by worker, k',
  )
  const got = new Map(rows.map((r) => [`${r.worker}/${r.k}`, r.v]))
  return all(
    ...model
      .allKeys()
      .flatMap((keys) => keys.entries().map(([k]) => keys.check(k, got.get(`${keys.worker}/${k}`), 'final'))),
  )
}

/** Every committed COPY batch is there whole, every aborted one is not. */
async function checkBatches(client: pg.Client, model: Model): Promise<Verdict> {
  const { rows } = await client.query<{ batch: number; n: number }>(
    'select batch, count(*)::int as n from soak_copy group by batch',
  )
  const got = new Map(rows.map((r) => [r.batch, r.n]))
  return all(
    ...[...model.batches.values()].map((b) => {
      const n = got.get(b.id) ?? 0
      if (b.state === 'committed') return same(`committed batch ${b.id} rows`, n, b.rows)
      if (b.state === 'aborted') return same(`aborted batch ${b.id} rows`, n, 0)
      return n === 0 || n === b.rows ? true : `batch ${b.id} in doubt has ${n} of ${b.rows} rows`
    }),
  )
}

export function formatReport(report: SoakReport): string {
  return [
    `soak: seed ${report.seed}, ${report.seconds} s (${(report.elapsedMs / 1000).toFixed(1)} s with setup and final checks) against ${report.target}`,
    '',
    formatTally(report.tally),
    '',
    report.unexpected === 0 ? 'result: ok, nothing unexpected' : `result: FAILED, ${report.unexpected} unexpected`,
  ].join('\n')
}
