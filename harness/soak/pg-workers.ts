// node-postgres clients of the soak: pool workers (reads, writes, named statements, savepoints, transfers, NOTIFY),
// clients with their own named statements, COPY through pg-copy-streams, clients cut off mid-transaction, the
// auditor of invariants, and LISTEN clients. Each checks every answer against the model.
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import pg from 'pg'
import { from as copyFrom, to as copyTo } from 'pg-copy-streams'
import { endClient } from '../pg.ts'
import type { Rng } from '../seed.ts'
import { withDeadline } from '../raw-client.ts'
import { errorKey } from '../scenarios/outcome.ts'
import {
  ACCOUNTS,
  CHANNELS,
  INITIAL_BALANCE,
  KEYS_PER_WORKER,
  chooser,
  createInbox,
  type Inbox,
  type Model,
} from './model.ts'
import { all, expectCode, same, type Recorder, type Verdict } from './recorder.ts'

export interface SoakContext {
  url: string
  recorder: Recorder
  model: Model
  /** Workers start no new operation after this performance.now(). */
  endAt: number
  deadlineMs: number
}

export const isRunning = (ctx: SoakContext): boolean => performance.now() < ctx.endAt

/** Client-side codes of a connection we cut ourselves (node-postgres reports these without a SQLSTATE). */
export const CUT_OFF_CODES = [
  'Error',
  'ECONNRESET',
  'EPIPE',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
] as const

export function connectClient(ctx: SoakContext, kind: string): pg.Client {
  const client = new pg.Client({ connectionString: ctx.url, connectionTimeoutMillis: ctx.deadlineMs })
  client.on('error', (error) => ctx.recorder.unexpectedError(kind, error))
  return client
}

/** A checked-out pool client for one transaction; one that failed is destroyed, never handed back mid-transaction. */
async function withPoolClient<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let isBroken = false
  try {
    return await fn(client)
  } catch (error) {
    isBroken = true
    throw error
  } finally {
    client.release(isBroken)
  }
}

const READ_KEY = 'select v from soak_kv where worker = $1 and k = $2'

const firstValue = (result: pg.QueryResult): unknown =>
  result.rows.length === 1 ? result.rows[0]?.v : `${result.rows.length} rows`

/** Debit `from`, credit `to`, in account order so concurrent transfers on real Postgres cannot deadlock. */
export function transferPlan(random: Rng) {
  const from = random.int(1, ACCOUNTS)
  let to = random.int(1, ACCOUNTS - 1)
  if (to >= from) to++
  return { from, to, amount: random.int(1, INITIAL_BALANCE / 2) }
}

export async function pgPoolWorker(ctx: SoakContext, pool: pg.Pool, worker: number, random: Rng): Promise<void> {
  const { recorder, model } = ctx
  const keys = model.keys(worker)
  const next = chooser(random, [
    'kv.read',
    'kv.read',
    'kv.write',
    'kv.write',
    'kv.named',
    'kv.named',
    'tx.savepoint',
    'tx.savepoint',
    'tx.transfer',
    'tx.transfer',
    'notify',
    'notify.tx',
  ] as const)
  while (isRunning(ctx)) {
    const kind = next()
    const k = random.int(0, KEYS_PER_WORKER - 1)
    const v = random.int(1, 1e9)
    if (kind === 'kv.read') {
      await recorder.run(kind, async () => keys.check(k, firstValue(await pool.query(READ_KEY, [worker, k]))))
    } else if (kind === 'kv.write') {
      await recorder.run(kind, async () => {
        keys.doubt(k)
        const result = await pool.query('update soak_kv set v = $3 where worker = $1 and k = $2', [worker, k, v])
        if (result.rowCount !== 1) return `update rowCount ${result.rowCount}`
        keys.settle(k, v)
        return true
      })
    } else if (kind === 'kv.named') {
      // The same statement names on every pool connection: each connection's are its own.
      await recorder.run(kind, async () => {
        if (random.chance(0.5)) {
          const nonce = random.int(1, 1e6)
          const result = await pool.query({
            name: 'soak_kv_get',
            text: 'select v, $3::int as nonce from soak_kv where worker = $1 and k = $2',
            values: [worker, k, nonce],
          })
          return all(same('nonce', result.rows[0]?.nonce, nonce), keys.check(k, result.rows[0]?.v, 'named read'))
        }
        keys.doubt(k)
        const result = await pool.query({
          name: 'soak_kv_put',
          text: 'update soak_kv set v = $3 where worker = $1 and k = $2 returning v',
          values: [worker, k, v],
        })
        if (firstValue(result) !== v) return `named update returned ${JSON.stringify(result.rows)}`
        keys.settle(k, v)
        return true
      })
    } else if (kind === 'tx.savepoint') {
      await recorder.run(kind, () => savepointTransaction(ctx, pool, worker, random))
    } else if (kind === 'tx.transfer') {
      await recorder.run(kind, () => transfer(pool, random))
    } else if (kind === 'notify') {
      await recorder.run(kind, async () => {
        const channel = random.pick(CHANNELS)
        const payload = model.payload(worker)
        model.issue(channel, payload)
        await pool.query('select pg_notify($1, $2)', [channel, payload])
        model.confirm(channel, payload)
        return true
      })
    } else {
      // NOTIFY with a write in one transaction: delivered at COMMIT, never after ROLLBACK.
      await recorder.run(kind, () =>
        withPoolClient(pool, async (client) => {
          const channel = random.pick(CHANNELS)
          const payload = model.payload(worker)
          const commit = random.chance(0.6)
          const before = keys.expected(k)
          await client.query('begin')
          keys.doubt(k)
          await client.query('update soak_kv set v = $3 where worker = $1 and k = $2', [worker, k, v])
          await client.query('select pg_notify($1, $2)', [channel, payload])
          if (commit) model.issue(channel, payload)
          const end = await client.query(commit ? 'commit' : 'rollback')
          if (commit) {
            model.confirm(channel, payload)
            keys.settle(k, v)
          } else if (before !== undefined) {
            // The next read of k checks that the rolled-back write is gone.
            keys.settle(k, before)
          }
          return same('end of transaction', end.command, commit ? 'COMMIT' : 'ROLLBACK')
        }),
      )
    }
  }
}

/**
 * BEGIN; write k1; SAVEPOINT; write k2; then roll back to the savepoint (plainly, or after a failing statement) or
 * release it; read both inside; COMMIT or ROLLBACK; the model follows what was kept.
 */
async function savepointTransaction(ctx: SoakContext, pool: pg.Pool, worker: number, random: Rng): Promise<Verdict> {
  const keys = ctx.model.keys(worker)
  const k1 = random.int(0, KEYS_PER_WORKER - 1)
  const k2 = (k1 + random.int(1, KEYS_PER_WORKER - 1)) % KEYS_PER_WORKER
  const [v1, v2] = [random.int(1, 1e9), random.int(1, 1e9)]
  const ending = random.pick(['release', 'rollback-to', 'error-then-rollback-to'] as const)
  const commit = random.chance(0.75)
  return withPoolClient(pool, async (client) => {
    const before = [keys.expected(k1), keys.expected(k2)]
    await client.query('begin')
    keys.doubt(k1)
    keys.doubt(k2)
    await client.query('update soak_kv set v = $3 where worker = $1 and k = $2', [worker, k1, v1])
    await client.query('savepoint s1')
    await client.query('update soak_kv set v = $3 where worker = $1 and k = $2', [worker, k2, v2])
    const verdicts: Verdict[] = []
    if (ending === 'error-then-rollback-to') {
      const failing = client.query('select 1 / (v - v) from soak_kv where worker = $1 and k = $2', [worker, k1])
      verdicts.push(await expectCode(ctx.recorder, 'tx.savepoint', '22012', failing))
    }
    await client.query(ending === 'release' ? 'release savepoint s1' : 'rollback to savepoint s1')
    const inside = await client.query('select k, v from soak_kv where worker = $1 and k = any($2::int[]) order by k', [
      worker,
      [k1, k2],
    ])
    const kept2 = ending === 'release' ? v2 : before[1]
    const got = new Map(inside.rows.map((r) => [r.k as number, r.v as number]))
    verdicts.push(same('inside: k1', got.get(k1), v1))
    if (kept2 !== undefined) verdicts.push(same(`inside after ${ending}: k2`, got.get(k2), kept2))
    const end = await client.query(commit ? 'commit' : 'rollback')
    verdicts.push(same('end of transaction', end.command, commit ? 'COMMIT' : 'ROLLBACK'))
    if (commit) {
      keys.settle(k1, v1)
      if (kept2 !== undefined) keys.settle(k2, kept2)
    } else {
      if (before[0] !== undefined) keys.settle(k1, before[0])
      if (before[1] !== undefined) keys.settle(k2, before[1])
    }
    return all(...verdicts)
  })
}

/** Moves money between two accounts, or rolls back when the debit would go below zero. The auditor checks the total. */
async function transfer(pool: pg.Pool, random: Rng): Promise<Verdict> {
  const { from, to, amount } = transferPlan(random)
  return withPoolClient(pool, async (client) => {
    await client.query('begin')
    const [first, second] = from < to ? [from, to] : [to, from]
    const debit = async () =>
      (
        await client.query(
          'update soak_accounts set balance = balance - $2 where id = $1 and balance >= $2 returning balance',
          [from, amount],
        )
      ).rowCount === 1
    const credit = () =>
      client.query('update soak_accounts set balance = balance + $2 where id = $1 returning balance', [to, amount])
    let isFunded = true
    for (const id of [first, second]) {
      if (id === from) isFunded = await debit()
      else await credit()
      if (!isFunded) break
    }
    const end = await client.query(isFunded ? 'commit' : 'rollback')
    return same('end of transfer', end.command, isFunded ? 'COMMIT' : 'ROLLBACK')
  })
}

/** Its own connection, and statements named like everyone else's but with its own text: `soak_calc` multiplies by `factor`. */
export async function pgNamedWorker(ctx: SoakContext, worker: number, factor: number, random: Rng): Promise<void> {
  const { recorder, model } = ctx
  const keys = model.keys(worker)
  const next = chooser(random, ['calc', 'calc', 'get', 'put', 'reconnect'] as const)
  let client = connectClient(ctx, 'named')
  await client.connect()
  try {
    while (isRunning(ctx)) {
      const k = random.int(0, KEYS_PER_WORKER - 1)
      const x = random.int(-1e4, 1e4)
      const v = random.int(1, 1e9)
      const choice = next()
      if (choice === 'reconnect') {
        // A new connection prepares its statements again; the old one's are gone with it.
        await recorder.run('named.reconnect', async () => {
          await endClient(client)
          client = connectClient(ctx, 'named')
          await client.connect()
          return true
        })
        continue
      }
      await recorder.run(`named.${choice}`, async () => {
        if (choice === 'calc')
          return same(
            'soak_calc',
            firstValue(await client.query({ name: 'soak_calc', text: `select $1::int * ${factor} as v`, values: [x] })),
            x * factor,
          )
        if (choice === 'get')
          return keys.check(
            k,
            firstValue(await client.query({ name: 'soak_get', text: READ_KEY, values: [worker, k] })),
            'named get',
          )
        keys.doubt(k)
        const result = await client.query({
          name: 'soak_put',
          text: 'update soak_kv set v = $3 where worker = $1 and k = $2 returning v',
          values: [worker, k, v],
        })
        if (firstValue(result) !== v) return `soak_put returned ${JSON.stringify(result.rows)}`
        keys.settle(k, v)
        return true
      })
    }
  } finally {
    await endClient(client)
  }
}

/** CSV with commas and quotes in the payload; read back in text format, where neither is escaped. */
function copyRows(worker: number, batch: number, rows: number, random: Rng): { csv: string[]; text: string } {
  const csv: string[] = []
  let text = ''
  for (let i = 0; i < rows; i++) {
    const payload = `row ${i}, "quoted" ${random.int(0, 1e6)}`
    csv.push(`${worker},${batch},${i},"${payload.replaceAll('"', '""')}"\n`)
    text += `${i}\t${payload}\n`
  }
  return { csv, text }
}

async function copyOut(client: pg.Client, sql: string): Promise<string> {
  let out = ''
  await pipeline(
    client.query(copyTo(sql)),
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        out += chunk.toString()
        done()
      },
    }),
  )
  return out
}

/** COPY FROM STDIN (CSV, through pg-copy-streams) autocommit or in a transaction that commits or rolls back; COPY TO STDOUT reads it back. */
export async function pgCopyWorker(ctx: SoakContext, worker: number, random: Rng): Promise<void> {
  const next = chooser(random, ['autocommit', 'autocommit', 'commit', 'rollback'] as const)
  const client = connectClient(ctx, 'copy.pg')
  await client.connect()
  try {
    while (isRunning(ctx)) {
      const mode = next()
      await ctx.recorder.run(`copy.pg.${mode}`, async () => {
        const batch = ctx.model.batch(worker, random.int(1, 400))
        const { csv, text } = copyRows(worker, batch.id, batch.rows, random)
        if (mode !== 'autocommit') await client.query('begin')
        await pipeline(
          Readable.from(csv),
          client.query(copyFrom('copy soak_copy (worker, batch, i, payload) from stdin with (format csv)')),
        )
        if (mode !== 'autocommit') await client.query(mode)
        batch.state = mode === 'rollback' ? 'aborted' : 'committed'
        const out = await copyOut(
          client,
          `copy (select i, payload from soak_copy where batch = ${batch.id} order by i) to stdout`,
        )
        return same(`batch ${batch.id} (${mode}) read back`, out, mode === 'rollback' ? '' : text)
      })
    }
  } finally {
    await endClient(client)
  }
}

/**
 * A client that goes away without a word inside a transaction that inserted a row into soak_ghost, overwrote one of
 * this worker's keys with -1 and sent a NOTIFY: idle in the transaction, or with a statement still in flight. None
 * of it may ever be seen. Between cuts it reads its keys back through the pool, and sometimes writes one for real.
 */
export async function pgDisconnectWorker(ctx: SoakContext, pool: pg.Pool, worker: number, random: Rng): Promise<void> {
  const { recorder, model } = ctx
  const keys = model.keys(worker)
  const next = chooser(random, ['idle-in-transaction', 'statement-in-flight', 'write', 'read'] as const)
  while (isRunning(ctx)) {
    const k = random.int(0, KEYS_PER_WORKER - 1)
    const mode = next()
    if (mode === 'read') {
      await recorder.run('disconnect.read', async () =>
        keys.check(k, firstValue(await pool.query(READ_KEY, [worker, k])), 'after a cut-off client'),
      )
      continue
    }
    if (mode === 'write') {
      const v = random.int(1, 1e9)
      await recorder.run('disconnect.write', async () => {
        keys.doubt(k)
        await pool.query('update soak_kv set v = $3 where worker = $1 and k = $2', [worker, k, v])
        keys.settle(k, v)
        return true
      })
      continue
    }
    await recorder.run(
      `disconnect.${mode}`,
      async () => {
        const client = new pg.Client({ connectionString: ctx.url, connectionTimeoutMillis: ctx.deadlineMs })
        // We cut it: its connection errors are the expected consequence, counted as such.
        client.on('error', (error) => recorder.expectedError(`disconnect.${mode}`, errorKey(error)))
        await client.connect()
        await client.query('begin')
        await client.query('insert into soak_ghost (worker, seq) values ($1, $2)', [worker, model.nextSeq()])
        await client.query('update soak_kv set v = -1 where worker = $1 and k = $2', [worker, k])
        await client.query('select pg_notify($1, $2)', [
          random.pick(CHANNELS),
          `cut off: pg ${mode} ${model.nextSeq()}`,
        ])
        let inFlight: Promise<unknown> | undefined
        if (mode === 'statement-in-flight') {
          inFlight = client
            .query('insert into soak_ghost (worker, seq) values ($1, $2)', [worker, model.nextSeq()])
            .then(
              () => 'answered before the cut',
              (error: unknown) => errorKey(error),
            )
        }
        client.connection.stream.destroy()
        if (inFlight) {
          const outcome = await inFlight
          if (outcome !== 'answered before the cut') recorder.expectedError(`disconnect.${mode}`, outcome as string)
        }
        // Another client: the key still holds its committed value (on our server, once the rollback has run).
        return keys.check(k, firstValue(await pool.query(READ_KEY, [worker, k])), 'after a cut-off client')
      },
      { expectedCodes: CUT_OFF_CODES },
    )
  }
}

/** Invariants checked in one REPEATABLE READ snapshot: money conserved, no ghost row or -1 value, every COPY batch whole. */
export async function audit(client: pg.Client, model: Model): Promise<Verdict> {
  await client.query('begin isolation level repeatable read')
  const [money, ghosts, negative, batches] = [
    await client.query(
      'select count(*)::int as n, sum(balance)::int as total, min(balance)::int as low from soak_accounts',
    ),
    await client.query('select count(*)::int as n from soak_ghost'),
    await client.query('select worker, k, v from soak_kv where v < 0'),
    await client.query('select batch, count(*)::int as n from soak_copy group by batch'),
  ]
  const end = await client.query('commit')
  const { n, total, low } = money.rows[0] as { n: number; total: number; low: number }
  const verdicts: Verdict[] = [
    same(
      'accounts (count, total, no negative balance)',
      [n, total, low >= 0],
      [ACCOUNTS, ACCOUNTS * INITIAL_BALANCE, true],
    ),
    same('rows of cut-off clients', ghosts.rows[0]?.n, 0),
    same('values of cut-off clients', negative.rows, []),
    same('audit commit', end.command, 'COMMIT'),
  ]
  for (const { batch: id, n } of batches.rows as Array<{ batch: number; n: number }>) {
    const batch = model.batches.get(id)
    if (!batch) verdicts.push(`COPY batch ${id} nobody wrote: ${n} rows`)
    else if (batch.state === 'aborted') verdicts.push(`COPY batch ${id} was rolled back, yet ${n} rows are visible`)
    else verdicts.push(same(`COPY batch ${id} rows`, n, batch.rows))
  }
  return all(...verdicts)
}

export async function pgAuditor(ctx: SoakContext): Promise<void> {
  const client = connectClient(ctx, 'audit')
  await client.connect()
  try {
    while (isRunning(ctx)) await ctx.recorder.run('audit', () => audit(client, ctx.model))
  } finally {
    await endClient(client)
  }
}

export interface PgListener {
  inbox: Inbox
  /** A round trip: every notification committed before it has been delivered by the time it answers. */
  sync(): Promise<void>
  close(): Promise<void>
}

export async function startPgListener(ctx: SoakContext, channel: string, who: string): Promise<PgListener> {
  const client = connectClient(ctx, 'listen')
  const inbox = createInbox(channel, ctx.model, ctx.recorder, who)
  client.on('notification', (n) => inbox.deliver(n.channel, n.payload ?? ''))
  await client.connect()
  await client.query(`listen ${channel}`)
  return {
    inbox,
    sync: async () => {
      await withDeadline(client.query('select 1'), ctx.deadlineMs, `${who} sync`)
    },
    close: () => endClient(client),
  }
}
