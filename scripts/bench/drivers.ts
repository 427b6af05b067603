// The clients: one connection per benchmark client through postgres.js or node-postgres, and the in-process
// ceilings on one PGlite (db.query, and raw simple / extended protocol bytes). Each runs an Op and checks every answer.

import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import postgres from 'postgres'
import { StalledError, withDeadline } from './procs.ts'
import { encodeCopyIn, encodeExtended, encodeQuery, scanReply } from './wire.ts'
import { COPY_ROWS, copyChunksOf, inline, type Op, type Step, type StepResult } from './workloads.ts'

export class WrongResultError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WrongResultError'
  }
}

export interface Session {
  run(op: Op): Promise<void>
  close(): Promise<void>
}

export type DriverName = 'postgres.js' | 'node-postgres'
export const DRIVERS: readonly DriverName[] = ['postgres.js', 'node-postgres']

const CONNECT_TIMEOUT_S = 10
const CLOSE_DEADLINE_MS = 3_000
const COPY_SQL = 'copy bench_copy from stdin'

function verify(step: Step, result: StepResult): void {
  const problem = step.check(result)
  if (problem) throw new WrongResultError(`${step.text.slice(0, 40)}: ${problem}`)
}

function firstOf(row: Record<string, unknown> | undefined): string | null {
  if (!row) return null
  const value = Object.values(row)[0]
  return value === null || value === undefined ? null : String(value)
}

/** Correct answers carry no notices for these workloads; one (e.g. "there is already a transaction in progress") means another client's statement ran in ours. */
const noticeError = (text: string) => new WrongResultError(`unexpected notice: ${text}`)

const templates = new Map<string, TemplateStringsArray>()

/** `select ... $1 ... $2` as the strings of the tagged template sql`select ... ${a} ... ${b}`, so postgres.js runs as apps call it. */
export function templateOf(text: string): TemplateStringsArray {
  let strings = templates.get(text)
  if (!strings) {
    const numbers = [...text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]))
    if (numbers.some((n, i) => n !== i + 1)) throw new Error(`placeholders must run $1, $2, ... in order: ${text}`)
    const parts = text.split(/\$\d+/)
    strings = Object.assign(parts, { raw: parts }) as unknown as TemplateStringsArray
    templates.set(text, strings)
  }
  return strings
}

/** postgres.js 3.4, `max: 1` (one connection per client), `prepare: true` (its default): named statements, Bind/Execute after the first run. */
async function connectPostgresJs(url: string): Promise<Session> {
  let notice: WrongResultError | null = null
  const sql = postgres(url, {
    max: 1,
    prepare: true,
    idle_timeout: 0,
    connect_timeout: CONNECT_TIMEOUT_S,
    fetch_types: false,
    onnotice: (n) => {
      notice ??= noticeError(`${n.severity} ${n.message}`)
    },
  })
  await sql`select 1`
  return {
    async run(op) {
      if (op.kind === 'copy') {
        // The pipeline ends at the server's CommandComplete. postgres.js reports no row count for a COPY: the cell
        // checks the table instead (Workload.tally).
        await pipeline(Readable.from(copyChunksOf()), await sql`copy bench_copy from stdin`.writable())
      } else {
        for (const step of op.steps) {
          const result = await sql(templateOf(step.text), ...step.params)
          verify(step, { rows: result.length, first: firstOf(result[0]), count: result.count })
        }
      }
      if (notice) throw notice
    },
    async close() {
      await withDeadline(sql.end({ timeout: 1 }), CLOSE_DEADLINE_MS, 'postgres.js end')
    },
  }
}

/** node-postgres 8, one pg.Client: simple Query without parameters, unnamed Parse/Bind/Describe/Execute/Sync with them. */
async function connectNodePostgres(url: string): Promise<Session> {
  let failure: Error | null = null
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_S * 1000 })
  client.on('error', (error) => (failure ??= error))
  client.on('notice', (n) => (failure ??= noticeError(`${n.severity ?? ''} ${n.message}`)))
  await client.connect()
  return {
    async run(op) {
      if (op.kind === 'copy') {
        const stream = client.query(copyFrom(COPY_SQL))
        await pipeline(Readable.from(copyChunksOf()), stream)
        if (stream.rowCount !== COPY_ROWS)
          throw new WrongResultError(`COPY: expected ${COPY_ROWS} rows, got ${stream.rowCount}`)
      } else {
        for (const step of op.steps) {
          const result = await client.query(step.text, step.params as Array<string | number>)
          verify(step, {
            rows: result.rows.length,
            first: firstOf(result.rows[0] as Record<string, unknown>),
            count: result.rowCount,
          })
        }
      }
      if (failure) throw failure
    },
    async close() {
      try {
        await withDeadline(client.end(), CLOSE_DEADLINE_MS, 'node-postgres end')
      } catch (error) {
        if (!(error instanceof StalledError)) throw error
        client.connection.stream.destroy()
      }
    },
  }
}

export function connect(driver: DriverName, url: string): Promise<Session> {
  return driver === 'postgres.js' ? connectPostgresJs(url) : connectNodePostgres(url)
}

// --- In process: the ceilings. One PGlite, one loop; nothing between the loop and PGlite but the call. ---

export type CeilingName = 'db.query' | 'raw simple' | 'raw extended'
export const CEILINGS: readonly CeilingName[] = ['db.query', 'raw simple', 'raw extended']

function countOfTag(tag: string | null): number | null {
  const match = tag ? /(\d+)$/.exec(tag) : null
  return match ? Number(match[1]) : null
}

async function runRaw(db: PGlite, bytes: Uint8Array): Promise<StepResult & { tag: string | null }> {
  const reply = scanReply(await db.execProtocolRaw(bytes))
  if (reply.error) throw Object.assign(new Error(reply.error), { code: reply.error.slice(0, 5) })
  return { rows: reply.rows, first: reply.first, count: countOfTag(reply.tag), tag: reply.tag }
}

const queries = new Map<string, Buffer>()
/** Statements without parameters are encoded once: the ceiling should spend its time in PGlite, not in our encoder. */
function queryOf(text: string): Buffer {
  let bytes = queries.get(text)
  if (!bytes) queries.set(text, (bytes = encodeQuery(text)))
  return bytes
}

/** A Session on the in-process PGlite (raw extended has no COPY form: its run() throws for one). */
export function inProcessSession(name: CeilingName, db: PGlite): Session {
  const blob = new Blob(copyChunksOf())
  const copyBytes = encodeCopyIn(COPY_SQL, copyChunksOf())
  const copyCheck = (count: number | null | undefined) => {
    if (count !== COPY_ROWS) throw new WrongResultError(`COPY: expected ${COPY_ROWS} rows, got ${count}`)
  }
  const runStep: (step: Step) => Promise<StepResult> =
    name === 'db.query'
      ? async (step) => {
          const result = await db.query<Record<string, unknown>>(step.text, step.params as unknown[])
          return { rows: result.rows.length, first: firstOf(result.rows[0]), count: result.affectedRows ?? null }
        }
      : name === 'raw simple'
        ? (step) =>
            runRaw(db, step.params.length === 0 ? queryOf(step.text) : encodeQuery(inline(step.text, step.params)))
        : (step) => runRaw(db, encodeExtended(step.text, step.params.map(String)))
  return {
    async run(op) {
      if (op.kind === 'copy') {
        if (name === 'db.query')
          copyCheck((await db.query("copy bench_copy from '/dev/blob'", [], { blob })).affectedRows)
        else if (name === 'raw simple') copyCheck((await runRaw(db, copyBytes)).count)
        else throw new Error('no raw extended form for COPY')
        return
      }
      for (const step of op.steps) verify(step, await runStep(step))
    },
    async close() {},
  }
}
