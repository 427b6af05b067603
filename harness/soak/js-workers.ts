// postgres.js clients of the soak: pool workers (reads and writes with its cached named statements, pipelines on a
// reserved connection with a failing query among them, pipelined transactions with a savepoint, transfers, NOTIFY),
// COPY through .writable()/.readable() with CopyFail and rollback, a client ended mid-transaction, and a LISTEN client.
import type { Readable, Writable } from 'node:stream'
import postgres from 'postgres'
import type { Rng } from '../seed.ts'
import { withDeadline } from '../raw-client.ts'
import { errorKey } from '../scenarios/outcome.ts'
import { CHANNELS, KEYS_PER_WORKER, chooser, createInbox, type Inbox } from './model.ts'
import { CUT_OFF_CODES, isRunning, transferPlan, type SoakContext } from './pg-workers.ts'
import { all, expectCode, same, type Verdict } from './recorder.ts'

export type Sql = postgres.Sql

export function connectPostgresJs(ctx: SoakContext, max: number): Sql {
  return postgres(ctx.url, {
    max,
    onnotice: () => {},
    connect_timeout: Math.ceil(ctx.deadlineMs / 1000),
    idle_timeout: 0,
    max_lifetime: null,
  })
}

/** Thrown inside sql.begin() to roll back on purpose. */
class Rollback extends Error {
  override name = 'Rollback'
  readonly code = 'ROLLBACK_ON_PURPOSE'
}

const value = (rows: readonly postgres.Row[]): unknown => (rows.length === 1 ? rows[0]?.v : `${rows.length} rows`)

export async function postgresJsWorker(ctx: SoakContext, sql: Sql, worker: number, random: Rng): Promise<void> {
  const { recorder, model } = ctx
  const keys = model.keys(worker)
  const next = chooser(random, [
    'js.read',
    'js.write',
    'js.pipeline',
    'js.pipeline',
    'js.tx-pipeline',
    'js.tx-pipeline',
    'js.transfer',
    'js.notify',
  ] as const)
  while (isRunning(ctx)) {
    const kind = next()
    const k = random.int(0, KEYS_PER_WORKER - 1)
    const v = random.int(1, 1e9)
    if (kind === 'js.read') {
      await recorder.run(kind, async () =>
        keys.check(k, value(await sql`select v from soak_kv where worker = ${worker} and k = ${k}`)),
      )
    } else if (kind === 'js.write') {
      await recorder.run(kind, async () => {
        keys.doubt(k)
        const result = await sql`update soak_kv set v = ${v} where worker = ${worker} and k = ${k}`
        if (result.count !== 1) return `update count ${result.count}`
        keys.settle(k, v)
        return true
      })
    } else if (kind === 'js.pipeline') {
      await recorder.run(kind, () => pipelined(ctx, sql, worker, random))
    } else if (kind === 'js.tx-pipeline') {
      await recorder.run(kind, () => pipelinedTransaction(ctx, sql, worker, random))
    } else if (kind === 'js.transfer') {
      const { from, to, amount } = transferPlan(random)
      await recorder.run(kind, async () => {
        const [first, second] = from < to ? [from, to] : [to, from]
        try {
          await sql.begin(async (tx) => {
            for (const id of [first, second]) {
              const rows =
                id === from
                  ? await tx`update soak_accounts set balance = balance - ${amount} where id = ${from} and balance >= ${amount} returning balance`
                  : await tx`update soak_accounts set balance = balance + ${amount} where id = ${to} returning balance`
              if (rows.length !== 1) throw new Rollback('insufficient funds')
            }
          })
        } catch (error) {
          if (!(error instanceof Rollback)) throw error
        }
        return true
      })
    } else {
      await recorder.run(kind, async () => {
        const channel = random.pick(CHANNELS)
        const payload = model.payload(worker)
        model.issue(channel, payload)
        await sql.notify(channel, payload)
        model.confirm(channel, payload)
        return true
      })
    }
  }
}

/** 3–12 queries written at once on one reserved connection (each with its own Sync); every fourth may divide by zero. */
async function pipelined(ctx: SoakContext, sql: Sql, worker: number, random: Rng): Promise<Verdict> {
  const keys = ctx.model.keys(worker)
  const reserved = await sql.reserve()
  try {
    const plan = Array.from({ length: random.int(3, 12) }, () => ({
      k: random.int(0, KEYS_PER_WORKER - 1),
      x: random.int(-1e6, 1e6),
      fail: random.chance(0.25),
    }))
    const settled = await Promise.allSettled(
      plan.map(({ k, x, fail }) =>
        fail
          ? reserved`select 1 / (v - v) as v from soak_kv where worker = ${worker} and k = ${k}`
          : reserved`select v, ${x}::int + 1 as x from soak_kv where worker = ${worker} and k = ${k}`,
      ),
    )
    const verdicts = await Promise.all(
      settled.map(async (result, i) => {
        const { k, x, fail } = plan[i]!
        if (fail)
          return expectCode(
            ctx.recorder,
            'js.pipeline',
            '22012',
            result.status === 'rejected' ? Promise.reject(result.reason as Error) : Promise.resolve(result.value),
          )
        if (result.status === 'rejected') throw result.reason
        return all(
          same(`pipeline query ${i} x`, result.value[0]?.x, x + 1),
          keys.check(k, result.value[0]?.v, `pipeline query ${i}`),
        )
      }),
    )
    return all(...verdicts)
  } finally {
    reserved.release()
  }
}

/**
 * sql.begin returning unawaited queries (postgres.js pipelines them): two writes and a read that must see them.
 * Sometimes a savepoint inside writes a third key and fails, so that write is rolled back and the rest commits.
 */
async function pipelinedTransaction(ctx: SoakContext, sql: Sql, worker: number, random: Rng): Promise<Verdict> {
  const keys = ctx.model.keys(worker)
  const k1 = random.int(0, KEYS_PER_WORKER - 1)
  const k2 = (k1 + random.int(1, KEYS_PER_WORKER - 1)) % KEYS_PER_WORKER
  const [v1, v2] = [random.int(1, 1e9), random.int(1, 1e9)]
  const withSavepoint = random.chance(0.4)
  const k3 = (k2 + 1) % KEYS_PER_WORKER === k1 ? (k2 + 2) % KEYS_PER_WORKER : (k2 + 1) % KEYS_PER_WORKER
  const before3 = keys.expected(k3)
  keys.doubt(k1)
  keys.doubt(k2)
  const results = await sql.begin(async (tx) => {
    const writes = await Promise.all([
      tx`update soak_kv set v = ${v1} where worker = ${worker} and k = ${k1} returning v`,
      tx`update soak_kv set v = ${v2} where worker = ${worker} and k = ${k2} returning v`,
      tx`select k, v from soak_kv where worker = ${worker} and k in (${k1}, ${k2}) order by k`,
    ])
    let savepoint: Verdict = true
    if (withSavepoint) {
      savepoint = await expectCode(
        ctx.recorder,
        'js.tx-pipeline',
        '22012',
        tx.savepoint(async (sp) => {
          await sp`update soak_kv set v = -2 where worker = ${worker} and k = ${k3}`
          await sp`select 1 / (v - v) from soak_kv where worker = ${worker} and k = ${k3}`
        }),
      )
    }
    return { writes, savepoint, third: await tx`select v from soak_kv where worker = ${worker} and k = ${k3}` }
  })
  keys.settle(k1, v1)
  keys.settle(k2, v2)
  const [w1, w2, read] = results.writes
  const seen = new Map(read.map((r) => [r.k as number, r.v as number]))
  return all(
    same('pipelined update 1', value(w1), v1),
    same('pipelined update 2', value(w2), v2),
    same('pipelined read of both', [seen.get(k1), seen.get(k2)], [v1, v2]),
    results.savepoint,
    before3 === undefined ? true : same('key after a rolled-back savepoint', value(results.third), before3),
  )
}

async function readAll(stream: Readable): Promise<string> {
  let out = ''
  for await (const chunk of stream) out += (chunk as Buffer).toString()
  return out
}

function writeAll(stream: Writable, data: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject)
    stream.end(data, () => resolve())
  })
}

/** COPY FROM STDIN via .writable(): autocommit, in a transaction rolled back on purpose, or given up half-way (CopyFail). */
export async function postgresJsCopyWorker(ctx: SoakContext, sql: Sql, worker: number, random: Rng): Promise<void> {
  const next = chooser(random, ['autocommit', 'autocommit', 'rollback', 'copy-fail'] as const)
  while (isRunning(ctx)) {
    const mode = next()
    const kind = `copy.js.${mode}`
    await ctx.recorder.run(kind, async () => {
      const batch = ctx.model.batch(worker, random.int(1, 400))
      let text = ''
      let data = ''
      for (let i = 0; i < batch.rows; i++) {
        const payload = `js ${i} ${random.int(0, 1e6)}`
        data += `${worker}\t${batch.id}\t${i}\t${payload}\n`
        text += `${i}\t${payload}\n`
      }
      const copyIn = 'copy soak_copy (worker, batch, i, payload) from stdin'
      const verdicts: Verdict[] = []
      if (mode === 'autocommit') {
        await writeAll(await sql.unsafe(copyIn).writable(), data)
        batch.state = 'committed'
      } else if (mode === 'rollback') {
        try {
          await sql.begin(async (tx) => {
            await writeAll(await tx.unsafe(copyIn).writable(), data)
            throw new Rollback('roll the COPY back')
          })
        } catch (error) {
          if (!(error instanceof Rollback)) throw error
        }
        batch.state = 'aborted'
      } else {
        // One row, then the client gives up: CopyFail. Postgres answers 57014, which postgres.js does not surface (the
        // query resolved with the stream already); the read-back shows nothing stayed, and the connection goes on
        // serving the pool.
        const writable = await sql.unsafe(copyIn).writable()
        const failed = new Promise<unknown>((resolve) => writable.once('error', resolve))
        writable.write(data.slice(0, data.indexOf('\n') + 1))
        writable.destroy(new Error('client gave up'))
        const error = await failed
        batch.state = 'aborted'
        if ((error as Error).message !== 'client gave up')
          verdicts.push(`CopyFail: the stream failed with ${errorKey(error)} ${(error as Error).message}`)
      }
      const out = await readAll(
        await sql
          .unsafe(`copy (select i, payload from soak_copy where batch = ${batch.id} order by i) to stdout`)
          .readable(),
      )
      verdicts.push(same(`batch ${batch.id} (${mode}) read back`, out, batch.state === 'aborted' ? '' : text))
      return all(...verdicts)
    })
  }
}

/**
 * A postgres.js client that ends its own connection (sql.end({ timeout: 0 }): Terminate, then close) inside a
 * transaction that inserted a ghost row and sent a NOTIFY. Nothing of it may be seen; the auditor and the listeners check.
 */
export async function postgresJsCutOffWorker(ctx: SoakContext, worker: number, random: Rng): Promise<void> {
  while (isRunning(ctx)) {
    await ctx.recorder.run('disconnect.js-ended', async () => {
      const own = connectPostgresJs(ctx, 1)
      const outcome = await own
        .begin(async (tx) => {
          await tx`insert into soak_ghost (worker, seq) values (${worker}, ${ctx.model.nextSeq()})`
          await tx`select pg_notify(${random.pick(CHANNELS)}, ${`cut off: js ended ${ctx.model.nextSeq()}`})`
          // With the transaction open and nothing in flight: the connection is terminated before COMMIT can be sent.
          await own.end({ timeout: 0 })
        })
        .then(
          () => 'committed',
          (error: unknown) => errorKey(error),
        )
      if (!(CUT_OFF_CODES as readonly string[]).includes(outcome))
        return `a transaction whose connection was ended answered ${outcome}`
      ctx.recorder.expectedError('disconnect.js-ended', outcome)
      return true
    })
  }
}

export interface JsListener {
  inbox: Inbox
  close(): Promise<void>
}

export async function startPostgresJsListener(ctx: SoakContext, channel: string, who: string): Promise<JsListener> {
  const sql = connectPostgresJs(ctx, 1)
  const inbox = createInbox(channel, ctx.model, ctx.recorder, who)
  // postgres.js hands a listener only its channel's notifications, so this one checks delivery, not routing.
  await withDeadline(
    sql.listen(channel, (payload) => inbox.deliver(channel, payload)),
    ctx.deadlineMs,
    `${who} listen`,
  )
  return { inbox, close: () => sql.end({ timeout: 1 }) }
}
