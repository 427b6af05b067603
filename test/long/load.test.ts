// Load: a thousand connections held open, ten thousand connect/query/disconnect cycles, and clients that vanish at
// random points of the protocol while others work. The server runs in a child process (server-process.ts), so its
// memory and descriptors are measured apart from the clients'. Seeded: FUZZ_SEED replays the disconnect points.
import { afterEach, describe, expect, it } from 'vitest'
import net from 'node:net'
import pg from 'pg'
import * as wire from '../../harness/wire.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { endClient } from '../../harness/pg.ts'
import { openFileLimit, spawnDevDb, type ServerMemory, type ServerProcess } from '../helpers/server-process.ts'
import { createRng, runSeed, withSeed, type Rng } from '../../harness/seed.ts'
import { runBystanders } from '../helpers/bystanders.ts'

const FILE = 'test/long/load.test.ts'
const HELD_CONNECTIONS = 1000
const ACTIVE_CONNECTIONS = 50
const CYCLES = 10_000
const CYCLE_PARALLELISM = 20
const ABRUPT_CLIENTS = 1500
const ABRUPT_PARALLELISM = 12
const DEADLINE_MS = 15_000
/** Descriptors besides the sockets: stdio, the listener, PGlite's files, vitest's pipes. */
const FD_MARGIN = 200
const MB = 2 ** 20

const servers: ServerProcess[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})
async function startServer(options: Parameters<typeof spawnDevDb>[0] = {}): Promise<ServerProcess> {
  const server = await spawnDevDb(options)
  servers.push(server)
  return server
}

/**
 * Fails, naming the fix, when a process may not open `sockets` more descriptors: a load test that quietly opened
 * fewer connections would prove nothing. Node raises its soft limit to the hard one at startup, so the hard limit
 * is what counts (Debian's default is 1024 soft, 1048576 hard; some containers have 1024 hard).
 */
function requireDescriptors(pid: number | 'self', sockets: number, who: string): void {
  const { soft, hard } = openFileLimit(pid)
  const needed = sockets + FD_MARGIN
  if (soft >= needed) return
  const fix =
    hard >= needed
      ? `\`ulimit -n ${needed}\` in the shell that runs the tests`
      : `a hard limit of at least ${needed} (as root: \`ulimit -Hn ${needed}\`; Docker: --ulimit nofile=${needed}:${needed})`
  throw new Error(
    `${who} may open ${soft} files (hard limit ${hard}); this test holds ${sockets} connections and needs ${needed}. Fix: ${fix}.`,
  )
}

/** Runs `count` tasks, at most `parallelism` at a time. */
async function inParallel(count: number, parallelism: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: parallelism }, async () => {
      while (next < count) await task(next++)
    }),
  )
}

/** Waits (bounded) until the server holds no connection, no waiter and no session. */
async function expectServerAtRest(server: ServerProcess): Promise<void> {
  await expect
    .poll(() => server.stats(), { timeout: DEADLINE_MS, interval: 100 })
    .toMatchObject({ activeConnections: 0, queuedQueries: 0, waitingClients: 0, sessionHeld: false })
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`

/**
 * The server's memory once it has settled: read (after a full GC) until the heap stops shrinking. A closed
 * connection stays reachable for a short grace period (its FATAL may still be flushing), so right after a burst
 * the heap still holds the last few thousand.
 */
async function settledMemory(server: ServerProcess): Promise<ServerMemory> {
  let previous = Infinity
  let last: ServerMemory | undefined
  await expect
    .poll(
      async () => {
        last = await server.memory()
        const isSettled = previous - last.heapUsed < 256 * 1024
        previous = last.heapUsed
        return isSettled
      },
      { timeout: 30_000, interval: 500 },
    )
    .toBe(true)
  return last!
}

describe('held connections', () => {
  it(`${HELD_CONNECTIONS} connections held open while ${ACTIVE_CONNECTIONS} of them run checked queries`, async () => {
    requireDescriptors('self', HELD_CONNECTIONS, 'The test process')
    const server = await startServer({ maxConnections: HELD_CONNECTIONS + 100 })
    requireDescriptors(server.pid, HELD_CONNECTIONS, 'The server process')
    // Warm up (JIT, PGlite caches) so the baseline is not the cold server.
    await inParallel(50, 10, async () => {
      const client = await connectRaw(server.url, { deadlineMs: DEADLINE_MS })
      await client.extended('select 1')
      await client.end()
    })
    await expectServerAtRest(server)
    const fdsBefore = server.fdCount()
    const before = await settledMemory(server)

    const clients: RawClient[] = []
    try {
      await inParallel(HELD_CONNECTIONS, 50, async () => {
        clients.push(await connectRaw(server.url, { deadlineMs: DEADLINE_MS }))
      })
      expect(await server.stats()).toMatchObject({
        activeConnections: HELD_CONNECTIONS,
        waitingClients: 0,
        sessionHeld: false,
      })
      const held = await settledMemory(server)
      // Within two: the server's work after start (its image kept in the cache, a spare loaded) opens and closes files.
      const fds = server.fdCount() - fdsBefore
      expect(fds, 'one descriptor per connection').toBeGreaterThanOrEqual(HELD_CONNECTIONS - 2)
      expect(fds, 'one descriptor per connection').toBeLessThanOrEqual(HELD_CONNECTIONS + 2)
      const perConnection = {
        rss: (held.rss - before.rss) / HELD_CONNECTIONS,
        heap: (held.heapUsed - before.heapUsed) / HELD_CONNECTIONS,
        external: (held.external - before.external) / HELD_CONNECTIONS,
      }
      console.log(
        `memory per idle connection (server process, after GC: ${held.isCollected}): RSS ${(perConnection.rss / 1024).toFixed(1)} KB, ` +
          `JS heap ${(perConnection.heap / 1024).toFixed(1)} KB, external ${(perConnection.external / 1024).toFixed(1)} KB; ` +
          `RSS ${mb(before.rss)} -> ${mb(held.rss)} for ${HELD_CONNECTIONS} connections`,
      )
      expect(held.isCollected).toBe(true)
      expect(perConnection.rss).toBeLessThan(MB)

      // The active ones all at once: simple and extended queries, each result checked.
      const active = clients.slice(0, ACTIVE_CONNECTIONS)
      await Promise.all(
        active.map(async (client, i) => {
          for (let q = 0; q < 20; q++) {
            const summary =
              q % 2 === 0
                ? await client.query(`select ${i * 100 + q} as v`)
                : await client.extended('select $1::int * 2 as v', [String(i * 100 + q)])
            expect(summary.errors).toEqual([])
            expect(summary.rows).toEqual([[String(q % 2 === 0 ? i * 100 + q : (i * 100 + q) * 2)]])
          }
        }),
      )
      // Every held connection is still there and still answers.
      await Promise.all(
        clients.map(async (client, i) => expect((await client.query(`select ${i} as i`)).rows).toEqual([[String(i)]])),
      )
      await Promise.all(clients.map((client) => client.end({ deadlineMs: DEADLINE_MS })))
    } finally {
      for (const client of clients) client.destroy()
    }
    await expectServerAtRest(server)
    // No more than before: the baseline may have caught a file the server's work after start had open.
    await expect.poll(() => server.fdCount(), { timeout: DEADLINE_MS }).toBeLessThanOrEqual(fdsBefore)
  })
})

describe('connection churn', () => {
  it(`${CYCLES} connect / query / disconnect cycles, ${CYCLE_PARALLELISM} at a time: no error, descriptors and memory back to where they were`, async () => {
    const server = await startServer()
    let errors: string[] = []
    /** One cycle: every fifth a node-postgres client, the rest raw clients (simple or extended query). */
    const cycle = async (i: number) => {
      try {
        if (i % 5 === 0) {
          const client = new pg.Client({ connectionString: server.url })
          try {
            await withDeadline(client.connect(), DEADLINE_MS, 'pg connect')
            const { rows } = await withDeadline(client.query('select $1::int + 1 as v', [i]), DEADLINE_MS, 'pg query')
            if (rows[0]?.v !== i + 1) throw new Error(`pg cycle ${i}: got ${JSON.stringify(rows)}`)
          } finally {
            await endClient(client)
          }
          return
        }
        const client = await connectRaw(server.url, { deadlineMs: DEADLINE_MS })
        try {
          const summary =
            i % 2 === 0
              ? await client.query(`select ${i} + 1 as v`)
              : await client.extended('select $1::int + 1 as v', [String(i)])
          if (summary.errors.length > 0 || summary.rows[0]?.[0] !== String(i + 1))
            throw new Error(`raw cycle ${i}: got ${JSON.stringify(summary)}`)
          if (!(await client.end())) throw new Error(`raw cycle ${i}: the server did not close after Terminate`)
        } finally {
          client.destroy()
        }
      } catch (error) {
        errors.push(`cycle ${i}: ${(error as Error).message}`)
      }
    }
    // Warm-up, then the baseline.
    await inParallel(500, CYCLE_PARALLELISM, cycle)
    expect(errors).toEqual([])
    await expectServerAtRest(server)
    const fdsBefore = server.fdCount()
    const before = await settledMemory(server)

    const started = performance.now()
    errors = []
    await inParallel(CYCLES, CYCLE_PARALLELISM, cycle)
    const seconds = (performance.now() - started) / 1000
    expect(errors.slice(0, 10), `${errors.length} of ${CYCLES} cycles failed`).toEqual([])

    await expectServerAtRest(server)
    // No more than before: the baseline may have caught a file the server's work after start had open.
    await expect.poll(() => server.fdCount(), { timeout: DEADLINE_MS }).toBeLessThanOrEqual(fdsBefore)
    const after = await settledMemory(server)
    console.log(
      `${CYCLES} cycles in ${seconds.toFixed(1)} s (${Math.round(CYCLES / seconds)}/s); server fds ${fdsBefore} -> ${server.fdCount()}; ` +
        `RSS ${mb(before.rss)} -> ${mb(after.rss)}; JS heap ${mb(before.heapUsed)} -> ${mb(after.heapUsed)} (after GC: ${after.isCollected})`,
    )
    expect(after.isCollected).toBe(true)
    // A leak of even 1 KB per connection would be 10 MB of heap here; RSS also carries allocator slack.
    expect(after.heapUsed - before.heapUsed).toBeLessThan(4 * MB)
    expect(after.rss - before.rss).toBeLessThan(48 * MB)
  })
})

/** Rows tagged so never appear: written by transactions that never committed. */
const UNCOMMITTED = 'uncommitted'
/** Rows that may or may not have committed (an autocommit statement whose client vanished mid-flight). */
const MAYBE = 'maybe'

interface AbruptCase {
  kind: string
  description: string
  run(url: string): Promise<void>
}

/** Waits for the one TCP connect, then the caller writes and vanishes. */
async function openSocket(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url)
  const socket = net.connect(Number(port), hostname)
  socket.on('error', () => {})
  await withDeadline(new Promise<void>((resolve) => socket.once('connect', () => resolve())), DEADLINE_MS, 'connect')
  return socket
}

/** Every wait is on a protocol event the server owes before the client vanishes; the vanish itself is a destroy(). */
function abruptCase(rng: Rng, n: number): AbruptCase {
  const kind = rng.pick([
    'connect-then-gone',
    'mid-startup',
    'after-startup',
    'mid-pipeline',
    'mid-failed-pipeline',
    'mid-transaction',
    'mid-copy',
    'mid-autocommit',
  ] as const)
  const isRace = rng.chance(0.3)
  const insert = (tag: string) => `insert into abrupt_rows (tag, n) values ('${tag}', ${n})`
  const vanish = async (client: RawClient) => {
    client.destroy()
    await withDeadline(client.closed, DEADLINE_MS, 'socket close')
  }
  const connect = (url: string) => connectRaw(url, { deadlineMs: DEADLINE_MS })
  switch (kind) {
    case 'connect-then-gone':
      return { kind, description: 'TCP connect, then gone', run: async (url) => void (await openSocket(url)).destroy() }
    case 'mid-startup': {
      const startup = wire.startup({ user: 'postgres', database: 'postgres' })
      const cut = rng.int(1, startup.length - 1)
      const ssl = rng.chance(0.3)
      return {
        kind,
        description: `${ssl ? 'SSLRequest, ' : ''}${cut} of ${startup.length} bytes of the StartupMessage, then gone`,
        async run(url) {
          const socket = await openSocket(url)
          if (ssl) {
            const answered = new Promise<void>((resolve) => socket.once('data', () => resolve()))
            socket.write(wire.sslRequest())
            await withDeadline(answered, DEADLINE_MS, 'the answer to SSLRequest')
          }
          await withDeadline(
            new Promise<void>((resolve) => socket.write(startup.subarray(0, cut), () => resolve())),
            DEADLINE_MS,
            'write',
          )
          socket.destroy()
        },
      }
    }
    case 'after-startup':
      return {
        kind,
        description: 'ReadyForQuery after startup, then gone',
        run: async (url) => vanish(await connect(url)),
      }
    case 'mid-pipeline': {
      const step = rng.pick(['Parse', 'Bind', 'Execute'] as const)
      return {
        kind,
        description: `Parse/Bind/Execute of an insert up to ${step}, no Sync, ${isRace ? 'gone at once' : 'gone after its answer'}`,
        async run(url) {
          const client = await connect(url)
          const frames = [
            wire.parse('', `insert into abrupt_rows (tag, n) values ('${UNCOMMITTED}', $1::int)`),
            wire.bind('', '', [String(n)]),
            wire.execute(''),
          ]
          const upTo = ['Parse', 'Bind', 'Execute'].indexOf(step) + 1
          await client.send(...frames.slice(0, upTo), wire.flush())
          if (!isRace)
            await client.next(step === 'Parse' ? 'ParseComplete' : step === 'Bind' ? 'BindComplete' : 'CommandComplete')
          await vanish(client)
        },
      }
    }
    case 'mid-failed-pipeline':
      return {
        kind,
        description: 'an insert executed, then a failing statement, no Sync, gone after the ErrorResponse',
        async run(url) {
          const client = await connect(url)
          await client.send(
            wire.parse('', insert(UNCOMMITTED)),
            wire.bind('', ''),
            wire.execute(''),
            wire.parse('', 'select 1/0'),
            wire.bind('', ''),
            wire.execute(''),
            wire.flush(),
          )
          expect(wire.decodeError((await client.next('ErrorResponse')).body).code).toBe('22012')
          await vanish(client)
        },
      }
    case 'mid-transaction': {
      const fails = !isRace && rng.chance(0.3)
      return {
        kind,
        description: `BEGIN, an insert${fails ? ', a failing statement' : ''}, ${isRace ? 'gone at once' : 'gone after ReadyForQuery'}`,
        async run(url) {
          const client = await connect(url)
          expect((await client.query('begin')).status).toBe('T')
          if (isRace) {
            await client.send(wire.query(insert(UNCOMMITTED)))
          } else {
            expect((await client.query(insert(UNCOMMITTED))).status).toBe('T')
            if (fails) expect((await client.query('select 1/0')).status).toBe('E')
          }
          await vanish(client)
        },
      }
    }
    case 'mid-copy': {
      const inTransaction = rng.chance(0.4)
      const rows = rng.int(0, 50)
      return {
        kind,
        description: `${inTransaction ? 'BEGIN, ' : ''}COPY FROM STDIN, ${rows} rows of CopyData, no CopyDone, gone`,
        async run(url) {
          const client = await connect(url)
          if (inTransaction) expect((await client.query('begin')).status).toBe('T')
          await client.send(wire.query('copy abrupt_rows (tag, n) from stdin'))
          await client.next('CopyInResponse')
          const data = Array.from({ length: rows }, (_, i) => wire.copyData(`${UNCOMMITTED}\t${n * 1000 + i}\n`))
          if (data.length > 0) await client.send(...data)
          await vanish(client)
        },
      }
    }
    case 'mid-autocommit':
      return {
        kind,
        description: 'an autocommit insert, gone before its answer',
        async run(url) {
          const client = await connect(url)
          await client.send(wire.query(insert(MAYBE)))
          await vanish(client)
        },
      }
  }
}

describe('abrupt disconnects', () => {
  it(`${ABRUPT_CLIENTS} clients vanish mid-startup, mid-pipeline, mid-transaction and mid-COPY while bystanders run checked queries`, async () => {
    const seed = runSeed()
    await withSeed(seed, FILE, async () => {
      const server = await startServer()
      const setup = await connectRaw(server.url, { deadlineMs: DEADLINE_MS })
      expect((await setup.query('create table abrupt_rows (tag text, n int)')).errors).toEqual([])
      await setup.end()

      const rng = createRng(seed)
      let isDone = false
      const bystanders = runBystanders(server.url, rng.fork(1_000_000), () => isDone, {
        table: 'abrupt_bystander',
        perDriver: 4,
        deadlineMs: DEADLINE_MS,
      })
      const failures: string[] = []
      const kinds = new Map<string, number>()
      const started = performance.now()
      try {
        await inParallel(ABRUPT_CLIENTS, ABRUPT_PARALLELISM, async (i) => {
          const c = abruptCase(rng.fork(i), i)
          kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1)
          try {
            await c.run(server.url)
          } catch (error) {
            failures.push(`client ${i} (${c.kind}: ${c.description}): ${(error as Error).message}`)
          }
        })
      } finally {
        isDone = true
      }
      const seen = await bystanders
      console.log(
        `abrupt: ${ABRUPT_CLIENTS} clients in ${Math.round(performance.now() - started)} ms, ${seen.ops} bystander ops; ${JSON.stringify(Object.fromEntries(kinds))}`,
      )

      expect
        .soft(
          failures.slice(0, 10),
          `FUZZ_SEED=${seed}: ${failures.length} clients did not get the answers they waited for`,
        )
        .toEqual([])
      expect.soft(seen.errors.slice(0, 10), `FUZZ_SEED=${seed}: ${seen.errors.length} bystander failures`).toEqual([])
      expect.soft(seen.ops).toBeGreaterThan(100)
      await expectServerAtRest(server)
      const check = await connectRaw(server.url, { deadlineMs: DEADLINE_MS })
      const leftovers = await check.query(`select count(*) from abrupt_rows where tag = '${UNCOMMITTED}'`)
      expect(leftovers.rows, 'rows of transactions that never committed').toEqual([['0']])
      expect((await check.query('select count(*) from abrupt_bystander')).rows).toEqual([[String(seen.committed)]])
      expect((await check.extended('select $1::int + 1 as v', ['41'])).rows).toEqual([['42']])
      await check.end()
    })
  })
})
