// What the database must hold, as the soak's clients know it: each worker's own keys, the accounts' total, every
// COPY batch with its fate, and every notification per channel. A value is "in doubt" from the moment its write is
// sent until the answer comes; an unexpected failure leaves it in doubt and the next read learns it.
import type { Rng } from '../seed.ts'
import type { Recorder, Verdict } from './recorder.ts'

export const KEYS_PER_WORKER = 8
export const ACCOUNTS = 16
export const INITIAL_BALANCE = 1_000
export const CHANNELS = ['soak_ch_0', 'soak_ch_1', 'soak_ch_2'] as const

export function schemaSql(workerIds: readonly number[]): string {
  return `
drop table if exists soak_kv, soak_accounts, soak_copy, soak_ghost;
create table soak_kv (worker int not null, k int not null, v int not null, primary key (worker, k));
create table soak_accounts (id int primary key, balance int not null check (balance >= 0));
create table soak_copy (worker int not null, batch int not null, i int not null, payload text not null, primary key (batch, i));
create table soak_ghost (worker int not null, seq int not null);
insert into soak_kv select w, k, 0 from unnest(array[${workerIds.join(',')}]::int[]) w, generate_series(0, ${KEYS_PER_WORKER - 1}) k;
insert into soak_accounts select id, ${INITIAL_BALANCE} from generate_series(1, ${ACCOUNTS}) id;`
}

/** Each distinct choice once, in order, then weighted random picks: a short or slow run still covers every kind. */
export function chooser<T>(random: Rng, weighted: readonly T[]): () => T {
  const distinct = [...new Set(weighted)]
  let taken = 0
  return () => (taken < distinct.length ? distinct[taken++]! : random.pick(weighted))
}

/** One worker's keys: only this worker writes them, one operation at a time, so every read has one right answer. */
export interface Keys {
  readonly worker: number
  /** The key's value as last acknowledged; undefined while a write is in doubt. */
  expected(k: number): number | undefined
  /** Call before sending a write: until `settle`, the key may hold either value. */
  doubt(k: number): void
  settle(k: number, v: number): void
  /** Compares a read; a key in doubt learns the value read. */
  check(k: number, got: unknown, what?: string): Verdict
  entries(): Array<[number, number | undefined]>
}

function createKeys(worker: number): Keys {
  const values: Array<number | undefined> = Array.from({ length: KEYS_PER_WORKER }, () => 0)
  return {
    worker,
    expected: (k) => values[k],
    doubt: (k) => {
      values[k] = undefined
    },
    settle: (k, v) => {
      values[k] = v
    },
    check(k, got, what = 'read') {
      const want = values[k]
      if (want === undefined) {
        if (typeof got === 'number') values[k] = got
        return true
      }
      return got === want ? true : `worker ${worker} key ${k} ${what}: expected ${want}, got ${JSON.stringify(got)}`
    },
    entries: () => values.map((v, k) => [k, v]),
  }
}

export type BatchState = 'doubt' | 'committed' | 'aborted'

export interface Batch {
  id: number
  worker: number
  rows: number
  state: BatchState
}

export interface Model {
  keys(worker: number): Keys
  allKeys(): Keys[]
  /** A new COPY batch, in doubt until its commit or rollback is answered. */
  batch(worker: number, rows: number): Batch
  batches: Map<number, Batch>
  /** Notifications by channel: `issued` before the NOTIFY (or its COMMIT) is sent, `confirmed` once answered. */
  notifications: { issued: Map<string, Set<string>>; confirmed: Map<string, Set<string>> }
  /** A fresh payload for `worker`, unique in the run. */
  payload(worker: number): string
  issue(channel: string, payload: string): void
  confirm(channel: string, payload: string): void
  nextSeq(): number
}

export function createModel(workerIds: readonly number[]): Model {
  const keys = new Map(workerIds.map((w) => [w, createKeys(w)]))
  const batches = new Map<number, Batch>()
  const issued = new Map(CHANNELS.map((c) => [c as string, new Set<string>()]))
  const confirmed = new Map(CHANNELS.map((c) => [c as string, new Set<string>()]))
  let seq = 0
  let nextBatch = 1
  return {
    keys(worker) {
      const found = keys.get(worker)
      if (!found) throw new Error(`worker ${worker} has no keys`)
      return found
    },
    allKeys: () => [...keys.values()],
    batch(worker, rows) {
      const batch: Batch = { id: nextBatch++, worker, rows, state: 'doubt' }
      batches.set(batch.id, batch)
      return batch
    },
    batches,
    notifications: { issued, confirmed },
    payload: (worker) => `${worker}:${++seq}`,
    issue: (channel, payload) => issued.get(channel)!.add(payload),
    confirm: (channel, payload) => confirmed.get(channel)!.add(payload),
    nextSeq: () => ++seq,
  }
}

/** What a listener checks on every notification: its own channel, sent by someone, not twice. */
export function createInbox(channel: string, model: Model, recorder: Recorder, who: string) {
  const received = new Set<string>()
  let onChange: (() => void) | undefined
  const isComplete = () => [...model.notifications.confirmed.get(channel)!].every((p) => received.has(p))
  return {
    received,
    deliver(gotChannel: string, payload: string) {
      const known = model.notifications.issued.get(channel)
      recorder.check(
        'listen.receive',
        gotChannel !== channel
          ? `${who} on ${channel} got a notification for ${gotChannel}: ${payload}`
          : !known?.has(payload)
            ? `${who} on ${channel} got ${payload}, which nobody committed (rolled back or cut off?)`
            : received.has(payload)
              ? `${who} on ${channel} got ${payload} twice`
              : true,
      )
      received.add(payload)
      onChange?.()
    },
    /** True once every confirmed notification of the channel has arrived. */
    isComplete,
    /** Resolves once isComplete(); checked again on every delivery. The caller bounds it. */
    complete(): Promise<void> {
      return new Promise((resolve) => {
        const check = () => {
          if (isComplete()) {
            onChange = undefined
            resolve()
          }
        }
        onChange = check
        check()
      })
    },
    missing: () => [...model.notifications.confirmed.get(channel)!].filter((p) => !received.has(p)),
  }
}
export type Inbox = ReturnType<typeof createInbox>
