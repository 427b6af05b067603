// Many servers (the bin, real processes) started at the same moment on one data dir: exactly one serves and the others
// exit 1 naming it, on a lock left by a killed server as on a fresh directory, and no acknowledged commit is lost.
// "The same moment": each server reads its TLS certificate from a FIFO just before it locks the data dir, and the
// test writes every certificate at once, once every server has its FIFO open.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cp, mkdtemp, open, readFile, readlink, readdir, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { constants } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { generate } from 'selfsigned'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { endClient } from '../../harness/pg.ts'
import { withDeadline } from '../../harness/raw-client.ts'
import { scratchRoot } from '../helpers/db.ts'

const run = promisify(execFile)
const BIN = fileURLToPath(new URL('../../bin/pglite-dev-db.js', import.meta.url))
/** Servers per round, and rounds: before the takeover was atomic, two served at once in 7 rounds of 10 here. */
const SERVERS = 6
const ROUNDS = 6
const DEADLINE_MS = 60_000

interface Server {
  child: ChildProcess
  /** The URL line, or the exit code and stderr of a server that did not serve. */
  outcome: Promise<{ url: string } | { code: number | null; stderr: string }>
  exited: Promise<unknown>
}

/** Owns the servers, FIFOs and dirs of one test; everything is killed and removed when it finishes. */
function useServers() {
  const servers: Server[] = []
  const dirs: string[] = []
  onTestFinished(async () => {
    for (const { child } of servers) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await withDeadline(Promise.all(servers.map((s) => s.exited)), 15_000, 'servers exit after the test')
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  })
  const scratch = async (what: string) => {
    const dir = await mkdtemp(path.join(await scratchRoot(), `pglite-lock-${what}-`))
    dirs.push(dir)
    return dir
  }
  const start = (dataDir: string, tls: string[]): Server => {
    const child = spawn(
      process.execPath,
      [BIN, '--data-dir', dataDir, '--port', '0', '--no-migrations', '--log-level', 'warn', ...tls],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = once(child, 'exit')
    const url = once(createInterface({ input: child.stdout! }), 'line').then(([line]) => ({ url: line as string }))
    const outcome = Promise.race([url, exited.then(([code]) => ({ code: code as number | null, stderr }))])
    const server = { child, outcome: withDeadline(outcome, DEADLINE_MS, 'a server serves or exits'), exited }
    servers.push(server)
    return server
  }
  return {
    scratch,
    start,
    /** `count` servers on `dataDir`, released together at their certificate read. */
    async startTogether(dataDir: string, count: number): Promise<Server[]> {
      const gates = await scratch('gates')
      const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256' })
      const key = path.join(gates, 'key.pem')
      await writeFile(key, pems.private)
      const fifos: FileHandle[] = []
      const started: Server[] = []
      try {
        for (let i = 0; i < count; i++) {
          const fifo = path.join(gates, `${i}.crt`)
          await run('mkfifo', [fifo])
          // Read-write, so this open does not wait for the reader, and the server's open does not wait for a writer.
          fifos.push(await open(fifo, constants.O_RDWR))
          started.push(start(dataDir, ['--tls-cert', fifo, '--tls-key', key]))
        }
        // Every server has opened its FIFO (and waits on it) before any gets its certificate.
        await expect
          .poll(
            async () =>
              (await Promise.all(started.map((s, i) => holds(s.child, path.join(gates, `${i}.crt`))))).every(Boolean),
            { timeout: DEADLINE_MS, interval: 20 },
          )
          .toBe(true)
        await Promise.all(fifos.map((fifo) => fifo.write(pems.cert)))
      } finally {
        await Promise.all(fifos.map((fifo) => fifo.close()))
      }
      return started
    },
  }
}

/** Whether `child` has `file` open; a child that exited fails the wait with its output. */
async function holds(child: ChildProcess, file: string): Promise<boolean> {
  if (child.exitCode !== null) throw new Error(`a server exited (${child.exitCode}) before reading its certificate`)
  const fds = await readdir(`/proc/${child.pid}/fd`).catch(() => [])
  const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${child.pid}/fd/${fd}`).catch(() => '')))
  return targets.includes(file)
}

async function query(url: string, sql: string): Promise<unknown[][]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  await withDeadline(client.connect(), 10_000, 'connect')
  try {
    return (await withDeadline(client.query({ text: sql, rowMode: 'array' }), 10_000, sql)).rows as unknown[][]
  } finally {
    await endClient(client)
  }
}

async function kill9(server: Server): Promise<void> {
  server.child.kill('SIGKILL')
  await server.exited
}

/** Each server's outcome: the one that serves and the messages of those that exited. */
async function outcomes(servers: Server[]) {
  const settled = await Promise.all(servers.map(async (server) => ({ server, outcome: await server.outcome })))
  const serving = settled.filter((s) => 'url' in s.outcome)
  const refused = settled.flatMap(({ outcome }) => ('code' in outcome ? [outcome] : []))
  return { serving: serving.map((s) => ({ server: s.server, url: (s.outcome as { url: string }).url })), refused }
}

describe('servers started together on one data dir', () => {
  it(
    `on a lock left by a killed server, ${ROUNDS} rounds of ${SERVERS}: exactly one serves each time, and every acknowledged commit is kept`,
    { timeout: ROUNDS * DEADLINE_MS },
    async () => {
      const servers = useServers()
      const dataDir = await servers.scratch('data')
      await cp(inject('pgliteTemplateDir'), dataDir, { recursive: true })
      // The lock of a server killed -9; each round's own server is killed the same way and leaves the next round's.
      const dead = spawn('true')
      await once(dead, 'exit')
      await writeFile(path.join(dataDir, 'pglite-dev-db.lock'), `${dead.pid}\n`)
      const first = servers.start(dataDir, ['--no-tls'])
      const firstOutcome = await first.outcome
      if (!('url' in firstOutcome)) throw new Error(`the first server did not start: ${firstOutcome.stderr}`)
      await query(firstOutcome.url, 'create table acked (round int, pid int)')
      await kill9(first)

      const servingPerRound: number[] = []
      const refusals: string[] = []
      const acked: unknown[][] = []
      for (let round = 0; round < ROUNDS; round++) {
        const { serving, refused } = await outcomes(await servers.startTogether(dataDir, SERVERS))
        servingPerRound.push(serving.length)
        const pids = serving.map((s) => s.server.child.pid)
        for (const { code, stderr } of refused) {
          // The refusal names the live server: the one that serves.
          const named = /in use by another pglite-dev-db \(pid (\d+)\)/.exec(stderr)?.[1]
          refusals.push(
            code === 1 && pids.includes(Number(named)) ? 'names the server' : `exit ${code}: ${stderr.trim()}`,
          )
        }
        for (const { server, url } of serving) {
          await query(url, `insert into acked values (${round}, ${server.child.pid})`)
          acked.push([round, server.child.pid])
        }
        if (round === 0 && serving.length === 1) {
          // A server started while the directory is held is refused too.
          const late = await servers.start(dataDir, ['--no-tls']).outcome
          refusals.push(
            'code' in late && late.stderr.includes(`(pid ${pids[0]})`)
              ? 'names the server'
              : `late: ${JSON.stringify(late)}`,
          )
        }
        await Promise.all(serving.map((s) => kill9(s.server)))
      }

      const last = servers.start(dataDir, ['--no-tls'])
      const outcome = await last.outcome
      if (!('url' in outcome)) throw new Error(`the last server did not start: ${outcome.stderr}`)
      const rows = await query(outcome.url, 'select round, pid from acked order by round, pid')
      expect({ servingPerRound, rows }).toEqual({ servingPerRound: Array<number>(ROUNDS).fill(1), rows: acked })
      expect(refusals).toEqual(Array<string>(ROUNDS * (SERVERS - 1) + 1).fill('names the server'))
      // What the takeovers left in the directory: the lock, nothing else of theirs.
      expect((await readdir(dataDir)).filter((name) => name.startsWith('pglite-dev-db.lock'))).toEqual([
        'pglite-dev-db.lock',
      ])
      expect((await readFile(path.join(dataDir, 'pglite-dev-db.lock'), 'utf8')).split('\n')[0]).toBe(
        String(last.child.pid),
      )
    },
  )

  it(`on a fresh directory, ${SERVERS} at once: exactly one serves`, { timeout: 2 * DEADLINE_MS }, async () => {
    const servers = useServers()
    const dataDir = path.join(await servers.scratch('fresh'), 'data')
    const { serving, refused } = await outcomes(await servers.startTogether(dataDir, SERVERS))
    expect(serving).toHaveLength(1)
    expect(refused.map((r) => [r.code, r.stderr.includes(`(pid ${serving[0]!.server.child.pid})`)])).toEqual(
      Array(SERVERS - 1).fill([1, true]),
    )
    expect(await query(serving[0]!.url, 'select 1')).toEqual([[1]])
  })
})
