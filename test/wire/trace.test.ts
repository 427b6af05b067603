// The protocol trace (--trace FILE) end to end: a real workload recorded by startDevDb, the fields each line
// decodes, `trace view`, and replaying traces with `npm run repro -- --replay` against ours (same) and stock (differs).
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { from as copyFrom } from 'pg-copy-streams'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, onTestFinished, test } from 'vitest'
import { replayTrace } from '../../harness/replay/replay.ts'
import { main } from '../../src/cli/main.ts'
import { startDevDb } from '../../src/databases/dev-db.ts'
import { createLogger, type LogRecord } from '../../src/log.ts'
import { FrameAssembler } from '../../src/server/trace/assembler.ts'
import { decodeFrontend, decodeStartupPacket, type TraceFields } from '../../src/server/trace/decode.ts'
import { copyTemplate, removeDataDir, scratchRoot } from '../helpers/db.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { runProcess } from '../../harness/process.ts'
import { connectRaw } from '../../harness/raw-client.ts'
import { stock } from '../helpers/targets.ts'
import * as wire from '../../harness/wire.ts'
import { interleaveRaw } from '../../harness/scenarios/interleave-raw.ts'

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const dbs = useDevDbs()

type Line = Record<string, unknown> & { t: number; conn: number; dir?: 'in' | 'out'; type?: string; event?: string }

async function readTrace(file: string): Promise<{ header: Record<string, unknown>; lines: Line[] }> {
  const [first, ...rest] = (await readFile(file, 'utf8')).split('\n')
  expect(rest.pop()).toBe('') // every line ends with a newline: nothing half-written
  return { header: JSON.parse(first!) as Record<string, unknown>, lines: rest.map((l) => JSON.parse(l) as Line) }
}

let scratch: string
beforeAll(async () => {
  scratch = await mkdtemp(path.join(await scratchRoot(), 'trace-test-'))
})
afterAll(() => rm(scratch, { recursive: true, force: true }))

/** startDevDb with a trace on a fresh data dir; `run(url)` is the traced workload; the trace is read after close(). */
async function recordTrace(name: string, run: (url: string) => Promise<void>): Promise<string> {
  const file = path.join(scratch, `${name}.jsonl`)
  const dataDir = await copyTemplate()
  const dev = await startDevDb({ dataDir, trace: file, migrations: false })
  try {
    await run(dev.url)
  } finally {
    await dev.close()
    await removeDataDir(dataDir)
  }
  return file
}

/** postgres.js pipelining three statements twice (one fails) while node-postgres runs a transaction, an error and a COPY. */
async function workload(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'trace-pg' })
  await client.connect()
  const sql = postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'trace-js' } })
  try {
    await client.query('create table items (id int primary key, name text)')
    // The second round is pipelined: its statements are prepared, so Bind/Execute/Sync go out back to back.
    const round = () =>
      Promise.allSettled([
        sql`select ${1}::int as a`,
        sql.unsafe('select * from no_such_table'),
        sql`select ${'two'}::text as b`,
      ])
    const js = round().then(round)
    await client.query('begin')
    await client.query('insert into items values ($1, $2)', [1, 'one'])
    await client.query('commit')
    await expect(client.query('select 1/0')).rejects.toMatchObject({ code: '22012' })
    await pipeline(Readable.from(['2\ttwo\n3\tthree\n']), client.query(copyFrom('COPY items FROM STDIN')))
    expect((await client.query('select count(*)::int as n from items')).rows).toEqual([{ n: 3 }])
    const settled = await js
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
  } finally {
    await sql.end()
    await client.end()
  }
}

describe('a traced workload of two real clients', () => {
  let file: string
  let lines: Line[]
  let pgConn: number
  let jsConn: number
  beforeAll(async () => {
    file = await recordTrace('workload', workload)
    const trace = await readTrace(file)
    expect(trace.header).toMatchObject({ trace: 'pglite-dev-db protocol trace', version: 1 })
    expect(new Date(String(trace.header.started)).toISOString()).toBe(trace.header.started)
    lines = trace.lines
    const startups = lines.filter((l) => l.type === 'StartupMessage')
    const connOf = (app: string) =>
      startups.find((l) => (l.params as Record<string, string>).application_name === app)!.conn
    pgConn = connOf('trace-pg')
    jsConn = connOf('trace-js')
  })
  const of = (conn: number) => lines.filter((l) => l.conn === conn)

  test('each connection opens with connect, is named by the process id its client was told, and ends with close', () => {
    for (const conn of [pgConn, jsConn]) {
      const own = of(conn)
      expect(own[0]).toMatchObject({ event: 'connect', remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/) })
      expect(own.find((l) => l.type === 'BackendKeyData')).toMatchObject({ dir: 'out', pid: conn })
      expect(own.at(-1)).toMatchObject({ event: 'close', reason: 'Terminate' })
      expect(own.find((l) => l.type === 'StartupMessage')).toMatchObject({
        dir: 'in',
        params: { user: 'postgres', database: 'postgres' },
      })
    }
    const times = lines.map((l) => l.t)
    expect(times).toEqual([...times].sort((a, b) => a - b))
  })

  test('node-postgres: its queries, the division by zero, the COPY data, and ReadyForQuery statuses in order', () => {
    const own = of(pgConn)
    expect(own.filter((l) => l.type === 'Query').map((l) => l.query)).toEqual([
      'create table items (id int primary key, name text)',
      'begin',
      'commit',
      'select 1/0',
      'COPY items FROM STDIN',
      'select count(*)::int as n from items',
    ])
    expect(own.find((l) => l.type === 'Parse')).toMatchObject({
      dir: 'in',
      statement: '',
      query: 'insert into items values ($1, $2)',
    })
    expect(own.find((l) => l.type === 'Bind')).toMatchObject({ portal: '', statement: '', params: ['1', 'one'] })
    expect(own.find((l) => l.type === 'Execute')).toMatchObject({ portal: '', maxRows: 0 })
    expect(own.filter((l) => l.type === 'ErrorResponse')).toEqual([
      expect.objectContaining({ dir: 'out', severity: 'ERROR', code: '22012', message: 'division by zero' }),
    ])
    expect(own.find((l) => l.type === 'CopyData')).toMatchObject({ dir: 'in', data: '2\ttwo\n3\tthree\n' })
    expect(own.filter((l) => l.type === 'CommandComplete').map((l) => l.tag)).toEqual([
      'CREATE TABLE',
      'BEGIN',
      'INSERT 0 1',
      'COMMIT',
      'COPY 2',
      'SELECT 1',
    ])
    expect(own.find((l) => l.type === 'DataRow' && l.dir === 'out')).toMatchObject({ columns: 1, values: ['3'] })
    // startup, create, begin, insert (in the transaction), commit, the failed select, the COPY, the count
    expect(own.filter((l) => l.type === 'ReadyForQuery').map((l) => l.status)).toEqual([
      'I',
      'I',
      'T',
      'T',
      'I',
      'I',
      'I',
      'I',
    ])
  })

  test('postgres.js: pipelined Parse/Bind/Execute with its parameters, and the failing query', () => {
    const own = of(jsConn)
    expect(own.filter((l) => l.type === 'Parse').map((l) => l.query)).toEqual(
      expect.arrayContaining(['select $1::int as a', 'select $1::text as b']),
    )
    // unsafe() without parameters is a simple Query.
    expect(own.filter((l) => l.type === 'Query').map((l) => l.query)).toEqual([
      'select * from no_such_table',
      'select * from no_such_table',
    ])
    expect(own.filter((l) => l.type === 'Bind').map((l) => l.params)).toEqual(expect.arrayContaining([['1'], ['two']]))
    expect(own.filter((l) => l.type === 'ErrorResponse').map((l) => l.code)).toEqual(['42P01', '42P01'])
    // Pipelined: some read of this client held more than one Sync.
    const syncsPerRead = new Map<number, number>()
    for (const l of own)
      if (l.type === 'Sync') syncsPerRead.set(Number(l.read), (syncsPerRead.get(Number(l.read)) ?? 0) + 1)
    expect(Math.max(...syncsPerRead.values())).toBeGreaterThan(1)
    expect(own.filter((l) => l.type === 'DataRow').map((l) => l.values)).toEqual(
      expect.arrayContaining([['1'], ['two']]),
    )
  })

  test('trace view prints one lane per connection, errors marked with !', async () => {
    const out: string[] = []
    const io = {
      env: {},
      stdout: (line: string) => out.push(line),
      stderr: (line: string) => out.push(`stderr: ${line}`),
      stopSignal: new Promise<string>(() => {}),
    }
    expect(await main(['trace', 'view', file], io)).toBe(0)
    const indentOf = (conn: number, text: string) => {
      const line = out.find((l) => l.includes(`${conn} ${text}`))
      expect(line, `${conn} ${text} in:\n${out.join('\n')}`).toBeDefined()
      return line!.indexOf(String(conn))
    }
    expect(indentOf(pgConn, '-> Query begin')).not.toBe(indentOf(jsConn, '-> Parse'))
    expect(indentOf(pgConn, '-> Query commit')).toBe(indentOf(pgConn, '-> Query begin'))
    const error = out.find((l) => l.includes('ErrorResponse ERROR 22012'))
    expect(error?.startsWith('!')).toBe(true)
    expect(out.filter((l) => l.startsWith('!')).every((l) => l.includes('ErrorResponse'))).toBe(true)

    const only: string[] = []
    expect(
      await main(['trace', 'view', file, '--conn', String(pgConn)], { ...io, stdout: (line) => only.push(line) }),
    ).toBe(0)
    expect(only.some((l) => l.includes(`${pgConn} -> Query begin`))).toBe(true)
    expect(only.some((l) => l.includes(String(jsConn)))).toBe(false)
  })

  test('npm run repro -- --replay against a fresh server of ours (with a password) gets what the trace shows', async () => {
    const dev = await dbs.start({ password: 'replay pw' })
    const run = await runProcess(
      process.execPath,
      ['--import', 'tsx', 'scripts/repro-interleave.ts', '--replay', file, '--url', dev.url],
      { cwd: REPO_ROOT, deadlineMs: 30_000 },
    )
    const output = run.stdout.toString()
    expect(run.code, output + run.stderr).toBe(0)
    expect(output).toContain(`conn ${pgConn} (trace-pg, user postgres): same`)
    expect(output).toContain(`conn ${jsConn} (trace-js, user postgres): same`)
    expect(output).toContain('replay: every connection got what the trace shows')
  })
})

test('an interleaving traced on ours replays the same on ours and differently on stock', async () => {
  const file = await recordTrace('interleave', async (url) => {
    // Still connected when the server stops: its FATAL 57P01 ends the recording, and the replay does not wait for it.
    const bystander = await connectRaw(url)
    onTestFinished(() => bystander.destroy())
    expect((await interleaveRaw(url)).kind).toBe('ok')
  })
  expect((await readTrace(file)).lines.filter((l) => l.type === 'ErrorResponse').map((l) => l.code)).toEqual(['57P01'])
  const replay = async (url: string) => {
    const out: string[] = []
    const status = await replayTrace({ file, url, print: (line) => out.push(line) })
    return { status, output: out.join('\n') }
  }
  const ours = await dbs.start()
  const same = await replay(ours.url)
  expect(same.status, same.output).toBe(0)

  const stockServer = await stock.start()
  onTestFinished(() => stockServer.close())
  const differs = await replay(stockServer.url)
  expect(differs.status, differs.output).toBe(1)
  // A runs B's statement (column b) or fails: either way its replies are not the traced ones.
  expect(differs.output).toMatch(/DIFFERS at reply \d+/)
  expect(differs.output).toMatch(/traced: .*RowDescription\(a\)/)
})

test('passwords and SASL messages are never written; a large value is cut with its length noted, and a replay refuses it', async () => {
  const password = 'trace-secret-pw'
  const secretFile = path.join(scratch, 'secret-pw.jsonl')
  const dev = await dbs.start({ password, trace: secretFile })
  const client = new pg.Client({ connectionString: dev.url })
  await client.connect()
  const big = 'x'.repeat(100_000)
  expect((await client.query('select length($1) as n', [big])).rows).toEqual([{ n: 100_000 }])
  await client.end()
  await dev.close()

  const text = await readFile(secretFile, 'utf8')
  expect(text).not.toContain(password)
  expect(text).not.toMatch(/[rsp]=[A-Za-z0-9+/=]{8}/) // no SCRAM attributes (nonce, salt, proof)
  const { lines } = await readTrace(secretFile)
  const types = lines.filter((l) => l.dir).map((l) => l.type)
  expect(types).toEqual(
    expect.arrayContaining([
      'AuthenticationSASL',
      'SASLInitialResponse',
      'AuthenticationSASLContinue',
      'SASLResponse',
      'AuthenticationSASLFinal',
      'AuthenticationOk',
    ]),
  )
  expect(lines.find((l) => l.type === 'SASLInitialResponse')).toEqual(
    expect.objectContaining({ mechanism: 'SCRAM-SHA-256' }),
  )
  expect(Object.keys(lines.find((l) => l.type === 'SASLResponse')!).sort()).toEqual([
    'conn',
    'dir',
    'len',
    'read',
    't',
    'type',
  ])
  const bind = lines.find((l) => l.type === 'Bind')!
  expect(bind.truncated).toBe(true)
  expect((bind.params as string[])[0]).toMatch(/^x{65536}…\(100000 bytes\)$/)

  const out: string[] = []
  expect(await replayTrace({ file: secretFile, url: dev.url, print: (line) => out.push(line) })).toBe(2)
  expect(out.join('\n')).toContain('the trace holds only part of this')
})

test('a trace file that cannot be written warns once and serving goes on', async () => {
  const records: LogRecord[] = []
  const logger = createLogger({ level: 'warn', sink: (r) => records.push(r) })
  const dev = await dbs.start({ trace: path.join(scratch, 'no-such-dir', 'trace.jsonl'), logger })
  for (let i = 0; i < 3; i++) {
    const client = await connectRaw(dev.url)
    expect((await client.query('select 1 as one')).rows).toEqual([['1']])
    await client.end()
  }
  await dev.close()
  expect(records.filter((r) => r.level === 'warn').map((r) => r.msg)).toEqual([
    'cannot write the protocol trace; serving goes on without it',
  ])
})

test('frames are decoded the same whatever the chunking: split at every offset', () => {
  const client = Buffer.concat([
    wire.sslRequest(),
    wire.startup({ user: 'u', database: 'd' }),
    wire.parse('s1', 'select $1::int', [23]),
    wire.bind('p1', 's1', ['42', null]),
    wire.describe('P', 'p1'),
    wire.execute('p1', 10),
    wire.sync(),
    wire.copyData('a\tb\n'),
    wire.terminate(),
  ])
  const decodeAll = (chunks: Buffer[]): TraceFields[] => {
    const out: TraceFields[] = []
    const assembler: FrameAssembler = new FrameAssembler(
      1 << 20,
      false,
      (frame) => {
        if (assembler.typed) return out.push(decodeFrontend(frame, 'PasswordMessage'))
        const fields = decodeStartupPacket(frame)
        if (fields.type === 'StartupMessage') assembler.typed = true
        out.push(fields)
      },
      () => out.push({ type: 'Garbage' }),
    )
    for (const chunk of chunks) assembler.push(chunk)
    return out
  }
  const whole = decodeAll([client])
  expect(whole.map((f) => f.type)).toEqual([
    'SSLRequest',
    'StartupMessage',
    'Parse',
    'Bind',
    'Describe',
    'Execute',
    'Sync',
    'CopyData',
    'Terminate',
  ])
  expect(whole[2]).toEqual({ type: 'Parse', statement: 's1', query: 'select $1::int', paramTypes: [23] })
  expect(whole[3]).toEqual({
    type: 'Bind',
    portal: 'p1',
    statement: 's1',
    paramFormats: [],
    params: ['42', null],
    resultFormats: [],
  })
  expect(whole[5]).toEqual({ type: 'Execute', portal: 'p1', maxRows: 10 })
  for (let a = 1; a < client.length; a++) {
    expect(decodeAll([client.subarray(0, a), client.subarray(a)])).toEqual(whole)
    const b = Math.min(client.length - 1, a + 7)
    if (b > a) expect(decodeAll([client.subarray(0, a), client.subarray(a, b), client.subarray(b)])).toEqual(whole)
  }
  expect(decodeAll([...client].map((byte) => Buffer.of(byte)))).toEqual(whole)
})
