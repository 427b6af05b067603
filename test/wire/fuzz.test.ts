// Fuzzing a live server, seeded (FUZZ_SEED replays a run): misbehaving clients while well-behaved drivers run
// checked queries beside them. The frame reader alone is fuzzed in test/unit/frames-fuzz.test.ts.
import { describe, expect, it } from 'vitest'
import { PROTOCOL_3_0, SSL_REQUEST, startupPacket } from '../helpers/frame-fuzz.ts'
import { createRng, runSeed, withSeed } from '../../harness/seed.ts'
import { badWorker, summarize, type LiveRun } from '../helpers/bad-clients.ts'
import { startupAnswer } from '../helpers/bad-startups.ts'
import { shown } from '../helpers/shown.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, toAddress, withDeadline } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'
import { runBystanders } from '../helpers/bystanders.ts'

const FILE = 'test/wire/fuzz.test.ts'
/** Bad clients' cases in one run of the live fuzz, shared by the workers (FUZZ_LIVE_CASES for a longer run). */
const LIVE_CASES = Number(process.env.FUZZ_LIVE_CASES ?? 6000)
const BAD_WORKERS = 6
/** Bystanders per driver. */
const BYSTANDERS = 3
/** Every wait on the live server; generous because the two cores are shared. */
const DEADLINE_MS = 10_000
/** The expected answers are PostgreSQL 15's with ssl off (the oracle's): SSLRequest answered N, as with --no-tls. */
const PLAIN = { tls: false }

describe('live server fuzz', () => {
  const dbs = useDevDbs()

  it(`${LIVE_CASES} bad clients (garbage, bad startups, out-of-order and malformed messages, crashes) while drivers run checked queries`, async () => {
    const seed = runSeed()
    await withSeed(seed, FILE, async () => {
      const dev = await dbs.start(PLAIN)
      const rng = createRng(seed)
      const run: LiveRun = { cases: new Map(), failures: [] }
      let isDone = false
      const bystanders = runBystanders(dev.url, rng.fork(1000), () => isDone, {
        table: 'fuzz_bystander',
        perDriver: BYSTANDERS,
        deadlineMs: DEADLINE_MS,
      })
      const started = performance.now()
      try {
        await Promise.all(
          Array.from({ length: BAD_WORKERS }, (_, i) =>
            badWorker(i, rng.fork(i), dev.url, DEADLINE_MS, Math.ceil(LIVE_CASES / BAD_WORKERS), run),
          ),
        )
      } finally {
        isDone = true
      }
      const seen = await bystanders
      const total = [...run.cases].reduce((sum, [kind, n]) => (kind === 'connect' ? sum : sum + n), 0)
      console.log(
        `live fuzz: ${total} bad-client cases in ${Math.round(performance.now() - started)} ms, ${seen.ops} bystander ops; cases by kind: ${JSON.stringify(Object.fromEntries(run.cases))}`,
      )

      // Soft, so one run reports every kind of failure and still checks what the server was left holding.
      expect.soft(seen.errors, `bystander failures (FUZZ_SEED=${seed})`).toEqual([])
      expect.soft(seen.ops).toBeGreaterThan(100)
      expect.soft(run.failures.length, `FUZZ_SEED=${seed}: ${summarize(run)}`).toBe(0)
      const committed = await connectRaw(dev.url)
      expect((await committed.query('select count(*) from fuzz_bystander')).rows).toEqual([[String(seen.committed)]])
      await committed.end()
      // The server holds nothing of any of them, and is still healthy.
      await expect
        .poll(() => dev.server.getStats(), { timeout: DEADLINE_MS })
        .toMatchObject({ activeConnections: 0, queuedQueries: 0, waitingClients: 0, sessionHeld: false })
      const failed = await Promise.race([dev.failed, Promise.resolve(null)])
      expect(failed).toBeNull()
    })
  })
})

// Inputs the fuzz found answered wrongly, fixed here so each failure names one defect. Expected answers are what
// PostgreSQL 15 sends for the same bytes.
describe('fuzz findings, as fixed inputs', () => {
  const dbs = useDevDbs()

  it('a Bind or Describe of the unnamed statement never reaches a statement this client did not parse: 26000', async () => {
    const dev = await dbs.start(PLAIN)
    const a = await dbs.connect(dev.url)
    const b = await dbs.connect(dev.url)
    const bindUnnamed = [wire.bind('', ''), wire.describe('P', ''), wire.execute(''), wire.sync()]
    const missing = ['E:ERROR 26000 unnamed prepared statement does not exist', 'Z:I']
    // Before anyone parsed anything: PGlite's own statements must not show either.
    await b.send(...bindUnnamed)
    expect(shown(await b.until('Z'))).toEqual(missing)
    expect((await a.extended("select 'secret of A' as a")).rows).toEqual([['secret of A']])
    await b.send(...bindUnnamed)
    expect(shown(await b.until('Z'))).toEqual(missing)
    await b.send(wire.describe('S', ''), wire.sync())
    expect(shown(await b.until('Z'))).toEqual(missing)
  })

  it('messages before a protocol violation in the same read are run and answered before the FATAL', async () => {
    const dev = await dbs.start(PLAIN)
    const client = await dbs.connect(dev.url)
    await client.send(Buffer.concat([wire.query('select 1 as one'), Buffer.from([0xff, 0, 0, 0, 4])]))
    expect(shown(await client.until('E'))).toEqual([
      'T',
      'D:["1"]',
      'C:SELECT 1',
      'Z:I',
      'E:FATAL 08P01 invalid frontend message type 255',
    ])
    await withDeadline(client.closed, DEADLINE_MS, 'the server closing the connection')
  })

  it.each([
    ['no final terminator', 'user\0postgres\0'],
    ['no parameters and no terminator', ''],
    ['bytes after the terminator', 'user\0postgres\0\0xyz'],
  ])('a StartupMessage with %s is refused: FATAL 08P01', async (_name, body) => {
    const dev = await dbs.start(PLAIN)
    const got = await startupAnswer(toAddress(dev.url), [], startupPacket(PROTOCOL_3_0, Buffer.from(body, 'latin1')), {
      deadlineMs: DEADLINE_MS,
      what: 'bad layout',
      isRefusal: true,
    })
    expect(got).toEqual(['E:FATAL 08P01 invalid startup packet layout: expected terminator as last byte'])
  })

  it('a second SSLRequest is refused: FATAL 0A000', async () => {
    const dev = await dbs.start(PLAIN)
    const ssl = startupPacket(SSL_REQUEST)
    const got = await startupAnswer(toAddress(dev.url), [ssl], ssl, {
      deadlineMs: DEADLINE_MS,
      what: 'second SSLRequest',
      isRefusal: true,
    })
    expect(got).toEqual(['E:FATAL 0A000 unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0'])
  })
})
