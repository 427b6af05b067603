// The workloads: the tables they use (one setup script for PGlite and PostgreSQL alike), and each workload's
// operation as statements with their parameters and what a correct answer looks like.

export const ACCOUNTS = 100_000
const TELLERS = 10
export const COPY_ROWS = 100_000
export const BIG_RESULT_BYTES = 1_048_576

/** Run once on every database before the first cell (PGlite: into the template data dir; PostgreSQL: over the wire). */
export const SETUP_SQL = `
drop table if exists bench_accounts, bench_tellers, bench_branches, bench_history, bench_inserts, bench_copy, bench_big;
create table bench_accounts(id int primary key, balance int not null, filler text);
insert into bench_accounts select g, 0, repeat('a', 84) from generate_series(1, ${ACCOUNTS}) g;
create table bench_branches(id int primary key, balance int not null);
insert into bench_branches values (1, 0);
create table bench_tellers(id int primary key, branch int not null, balance int not null);
insert into bench_tellers select g, 1, 0 from generate_series(1, ${TELLERS}) g;
create table bench_history(teller int not null, branch int not null, account int not null, delta int not null, at timestamptz not null);
create table bench_inserts(id bigint generated always as identity primary key, v int not null, note text);
create table bench_copy(id int not null, v int not null, note text);
create table bench_big(id int primary key, payload text not null);
alter table bench_big alter column payload set storage external;
insert into bench_big values (1, repeat('x', ${BIG_RESULT_BYTES}));
analyze;
`

/** What a driver reports for one statement, normalised. */
export interface StepResult {
  rows: number
  /** First column of the first row as text; null when there is no row or it is NULL. */
  first: string | null
  /** Rows affected, from the command tag; null when the driver or the command has none. */
  count: number | null
}

export interface Step {
  /** SQL with $n placeholders. */
  text: string
  params: ReadonlyArray<string | number>
  /** Null when the answer is right, else what was wrong. */
  check: (result: StepResult) => string | null
}

export type Op = { kind: 'steps'; steps: Step[] } | { kind: 'copy' }

export type WorkloadName = 'select1' | 'point' | 'insert' | 'tpcb' | 'big' | 'copy'

export interface Workload {
  name: WorkloadName
  title: string
  /**
   * The in-process raw form that is this workload's ceiling: simple Query for statements without parameters,
   * Parse/Bind/Describe/Execute/Sync for parameterised ones (what a driver sends for them).
   */
  rawCeiling: 'simple' | 'extended'
  /** Roughly what one operation costs PGlite (ms): a queue of N clients may take N times this between completions. */
  typicalOpMs: number
  next(rng: Rng): Op
  /** Run before and after each cell (keeps the COPY table from growing across cells). */
  resetSql?: string
  /** Checked after a cell: `sql` must return `expected(operations completed)`. */
  tally?: { sql: string; expected: (ops: number) => number }
}

export type Rng = () => number

/** mulberry32: a small seeded generator, so every run draws the same keys. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const between = (rng: Rng, low: number, high: number): number => low + Math.floor(rng() * (high - low + 1))

const firstIs = (expected: string) => (r: StepResult) =>
  r.rows === 1 && r.first === expected
    ? null
    : `expected one row starting ${expected.slice(0, 20)}, got ${r.rows} row(s) starting ${r.first?.slice(0, 20) ?? 'null'}`
const affects = (n: number) => (r: StepResult) =>
  r.count === n ? null : `expected ${n} row(s) affected, got ${r.count}`
const oneRow = (r: StepResult) => (r.rows === 1 && r.first !== null ? null : `expected one row, got ${r.rows}`)
const anything = () => null

const SELECT_1: Op = { kind: 'steps', steps: [{ text: 'select 1', params: [], check: firstIs('1') }] }
/**
 * Read from a table, not `select repeat(...)`: a prepared statement would fold that constant into its plan once, and
 * the prepared path would then do less work than the simple and unnamed ones. Storage EXTERNAL: stored uncompressed.
 */
const BIG: Op = {
  kind: 'steps',
  steps: [
    {
      text: 'select payload from bench_big where id = 1',
      params: [],
      check: (r) =>
        r.rows === 1 && r.first?.length === BIG_RESULT_BYTES
          ? null
          : `expected ${BIG_RESULT_BYTES} characters, got ${r.first?.length ?? 'no row'}`,
    },
  ],
}
const COPY: Op = { kind: 'copy' }

export const WORKLOADS: readonly Workload[] = [
  { name: 'select1', title: 'select 1', rawCeiling: 'simple', typicalOpMs: 1, next: () => SELECT_1 },
  {
    name: 'point',
    title: `point select by primary key (${ACCOUNTS / 1000}k rows)`,
    rawCeiling: 'extended',
    typicalOpMs: 1,
    next(rng) {
      const id = between(rng, 1, ACCOUNTS)
      return {
        kind: 'steps',
        steps: [
          { text: 'select id, balance from bench_accounts where id = $1', params: [id], check: firstIs(String(id)) },
        ],
      }
    },
  },
  {
    name: 'insert',
    title: 'single-row insert',
    rawCeiling: 'extended',
    typicalOpMs: 2,
    next: (rng) => ({
      kind: 'steps',
      steps: [
        {
          text: 'insert into bench_inserts(v, note) values ($1, $2)',
          params: [between(rng, 0, 1_000_000), 'bench'],
          check: affects(1),
        },
      ],
    }),
  },
  {
    name: 'tpcb',
    title: "TPC-B transaction (pgbench's shape, 7 statements)",
    rawCeiling: 'extended',
    typicalOpMs: 10,
    next(rng) {
      const account = between(rng, 1, ACCOUNTS)
      const teller = between(rng, 1, TELLERS)
      const delta = between(rng, -5000, 5000)
      return {
        kind: 'steps',
        steps: [
          { text: 'begin', params: [], check: anything },
          {
            text: 'update bench_accounts set balance = balance + $1 where id = $2',
            params: [delta, account],
            check: affects(1),
          },
          { text: 'select balance from bench_accounts where id = $1', params: [account], check: oneRow },
          {
            text: 'update bench_tellers set balance = balance + $1 where id = $2',
            params: [delta, teller],
            check: affects(1),
          },
          {
            text: 'update bench_branches set balance = balance + $1 where id = $2',
            params: [delta, 1],
            check: affects(1),
          },
          {
            text: 'insert into bench_history(teller, branch, account, delta, at) values ($1, $2, $3, $4, current_timestamp)',
            params: [teller, 1, account, delta],
            check: affects(1),
          },
          { text: 'commit', params: [], check: anything },
        ],
      }
    },
  },
  {
    name: 'big',
    title: '1 MB result (one 1 MB text value from a table)',
    rawCeiling: 'simple',
    typicalOpMs: 20,
    next: () => BIG,
  },
  {
    name: 'copy',
    title: `COPY ${COPY_ROWS / 1000}k rows in`,
    rawCeiling: 'simple',
    typicalOpMs: 150,
    next: () => COPY,
    resetSql: 'truncate bench_copy',
    tally: { sql: 'select count(*) from bench_copy', expected: (ops) => ops * COPY_ROWS },
  },
]

let copyChunks: Buffer[] | null = null

/** The COPY payload (text format, ~1.4 MB), cut into 64 kB writes as a streaming client sends it. */
export function copyChunksOf(): Buffer[] {
  if (!copyChunks) {
    const lines: string[] = []
    for (let i = 1; i <= COPY_ROWS; i++) lines.push(`${i}\t${i % 1000}\tcopied row\n`)
    const data = Buffer.from(lines.join(''))
    copyChunks = []
    for (let offset = 0; offset < data.length; offset += 65_536) copyChunks.push(data.subarray(offset, offset + 65_536))
  }
  return copyChunks
}

/** `$n` replaced by literals, for the simple-Query form of a parameterised step. */
export function inline(text: string, params: ReadonlyArray<string | number>): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = params[Number(n) - 1]
    return typeof value === 'number' ? String(value) : `'${String(value).replaceAll("'", "''")}'`
  })
}
