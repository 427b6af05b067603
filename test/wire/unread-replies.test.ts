// A client that stops reading a big result does not hold the database: outside a transaction block its statement
// ends, the rest of its reply waiting on disk (bounded by maxSpillBytes), and the others run; it later reads every
// byte in order. Past the cap it gets FATAL 53400 after its last whole message, and 53100 if the disk is full. Inside a
// block it holds the session anyway, and its statement waits for it as before (backpressure.test.ts).
import { describe, expect, it } from 'vitest'
import { statfs, symlink } from 'node:fs/promises'
import path from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { scratchDir, useDevDbs } from '../helpers/dev-db.ts'
import type { DevDb } from '../../src/databases/dev-db.ts'
import { canMountTmpfs, mountTmpfs } from '../helpers/tmpfs.ts'
import { withDeadline, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start, connect } = useDevDbs()
/** Rows of about 1 KB each: far more than the kernel's socket buffers take, so most of each reply waits in the server. */
const ROWS = 16_000
const bigQuery = (rows: number): string =>
  `select g, repeat(chr(65 + g % 26), 1000) as payload from generate_series(1, ${rows}) g`
/** A probe that waits behind a stalled client would wait for the idle-in-transaction timer: 60 s by default. */
const PROBE_DEADLINE_MS = 15_000

/** Live ArrayBuffer bytes of this thread (the server's), after a full collection: garbage would blur the figure. */
setFlagsFromString('--expose-gc')
const collect = runInNewContext('gc') as () => void
function liveBuffers(): number {
  collect()
  return process.memoryUsage().arrayBuffers
}

/** Every row of bigQuery(rows), in order, whole. */
function expectAllRows(summary: wire.Summary, rows: number): void {
  expect(summary.errors).toEqual([])
  expect(summary.rows.length).toBe(rows)
  let wrong = 0
  summary.rows.forEach(([g, payload], i) => {
    if (g !== String(i + 1) || payload !== String.fromCharCode(65 + ((i + 1) % 26)).repeat(1000)) wrong++
  })
  expect(wrong).toBe(0)
}

async function stalledClient(url: string, sql: string): Promise<RawClient> {
  const client = await connect(url)
  client.socket.pause()
  await client.send(wire.query(sql))
  return client
}

/** A client that named a statement: from then on the server reads its notices and errors, to restore its names. */
async function namingClient(url: string): Promise<RawClient> {
  const client = await connect(url)
  await client.send(wire.parse('s1', 'select 1'), wire.sync())
  expect(wire.summarize(await client.until('ReadyForQuery')).errors).toEqual([])
  return client
}

/** The statement of `rows` rows ended, with what its client has not read waiting on disk. */
async function spilled(dev: DevDb, rows: number): Promise<void> {
  await expect
    .poll(() => dev.server.getStats().spilledBytes, { timeout: PROBE_DEADLINE_MS })
    .toBeGreaterThan(rows * 2 ** 10 - 16 * 2 ** 20)
  await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: PROBE_DEADLINE_MS }).toBe(false)
}

/**
 * Once the file has taken what was handed to it (its writes lag on a busy disk), little stays in the server's memory,
 * and a probe is answered.
 */
async function buffersBackAndProbe(dev: DevDb, buffersBefore: number): Promise<void> {
  await expect.poll(() => liveBuffers() - buffersBefore, { timeout: PROBE_DEADLINE_MS }).toBeLessThan(16 * 2 ** 20)
  const probe = await connect(dev.url)
  expect((await probe.query('select 1', { deadlineMs: PROBE_DEADLINE_MS })).rows).toEqual([['1']])
}

/** The client reads again: everything up to its ReadyForQuery, with the one notice. */
async function readWithNotice(client: RawClient): Promise<wire.BackendMessage[]> {
  client.socket.resume()
  const messages = await client.until('ReadyForQuery', { deadlineMs: 30_000 })
  expect(messages.filter((message) => message.name === 'NoticeResponse').length).toBe(1)
  return messages
}

describe('a client that stops reading a big result', () => {
  it('outside a transaction block: others are answered while it does not read, and it later gets every byte in order', async () => {
    const dev = await start()
    // The spare database loads in the background after start: its buffers are not the stalled clients'.
    await dev.databases.spareLoaded()
    const buffersBefore = liveBuffers()
    const stalled: RawClient[] = []
    for (let i = 0; i < 4; i++) stalled.push(await stalledClient(dev.url, bigQuery(ROWS)))
    // Each stalled client's reply has begun to arrive (its paused socket buffers a little): each statement ran.
    await expect
      .poll(() => stalled.map((client) => client.socket.readableLength > 0), { timeout: PROBE_DEADLINE_MS })
      .toEqual([true, true, true, true])

    const probe = await connect(dev.url)
    const answer = await probe.query('select 1 as probe', { deadlineMs: PROBE_DEADLINE_MS })
    expect(answer.rows).toEqual([['1']])
    // What the stalled clients have not read waits on disk, not in the database and not in the server's buffers (the
    // server's thread is this one: its sockets' queues and reply pieces are ArrayBuffers here; a database's memory is
    // its own thread's).
    // (The probe's own release of the session follows its answer.)
    await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 5_000 }).toBe(false)
    const stats = dev.server.getStats()
    expect(stats.spilledBytes).toBeGreaterThan(4 * 6 * 2 ** 20)
    // Each of the four replies is about 16 MB. Per client the server may hold up to about 2 MB (what its socket queued
    // before the spill began, a piece of reply from the ring, the file stream's buffer), more while a loaded disk is
    // slow to take it: 24 MB, well under the 64 MB the replies would take in memory.
    const buffered = liveBuffers() - buffersBefore
    expect(buffered).toBeLessThan(24 * 2 ** 20)

    for (const client of stalled) client.socket.resume()
    for (const client of stalled)
      expectAllRows(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 })), ROWS)
    await expect.poll(() => dev.server.getStats().spilledBytes, { timeout: 10_000 }).toBe(0)
    // Each goes on as usual afterwards.
    for (const client of stalled) expect((await client.query('select 2')).rows).toEqual([['2']])
  })

  it('a client that reads slowly, without ever stopping: the others are answered long before it has read its reply', async () => {
    const dev = await start()
    const rows = 4 * ROWS
    const client = await connect(dev.url)
    let received = 0
    client.socket.on('data', (chunk: Buffer) => void (received += chunk.length))
    client.socket.pause()
    // A chunk of Node's at a time, one each 10 ms: a few MB a second, never still for long.
    const reading = setInterval(() => {
      client.socket.once('data', () => client.socket.pause())
      client.socket.resume()
    }, 10)
    try {
      await client.send(wire.query(bigQuery(rows)))
      await expect.poll(() => received, { timeout: PROBE_DEADLINE_MS }).toBeGreaterThan(0)
      const probe = await connect(dev.url)
      expect((await probe.query('select 1', { deadlineMs: 30_000 })).rows).toEqual([['1']])
      // Past its first 50 ms of waiting in all, the rest of its reply went to the server's thread, which keeps it on
      // disk: the probe did not wait for most of it to be read.
      expect(received).toBeLessThan((rows * 2 ** 10) / 4)
    } finally {
      clearInterval(reading)
    }
    client.socket.resume()
    expectAllRows(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 })), rows)
  })

  it("the same for a reply that comes through the server's thread (a traced server writes none straight to the socket)", async () => {
    const dev = await start({ trace: path.join(await scratchDir('spill-trace'), 'trace.jsonl') })
    const client = await stalledClient(dev.url, bigQuery(ROWS))
    await expect.poll(() => dev.server.getStats().spilledBytes, { timeout: PROBE_DEADLINE_MS }).toBeGreaterThan(0)
    const probe = await connect(dev.url)
    expect((await probe.query('select 1', { deadlineMs: PROBE_DEADLINE_MS })).rows).toEqual([['1']])
    client.socket.resume()
    expectAllRows(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 })), ROWS)
  })

  it('a reply the server rewrites from a notice on (a client that named a statement): the rest waits on disk, not in memory', async () => {
    const dev = await start()
    // The database thread stops writing the reply straight to the socket at the first notice; the rest comes here.
    const client = await namingClient(dev.url)
    const rows = 4 * ROWS
    const buffersBefore = liveBuffers()
    client.socket.pause()
    await client.send(wire.query(`do $$ begin raise notice 'rows follow'; end $$; ${bigQuery(rows)}`))

    // The statement ends, and what the client has not read waits on disk, not in the server's memory.
    await spilled(dev, rows)
    await buffersBackAndProbe(dev, buffersBefore)
    expectAllRows(wire.summarize(await readWithNotice(client)), rows)
  })

  it('the same when the notice comes after the socket filled: the rest after the notice waits on disk too', async () => {
    const dev = await start()
    const client = await namingClient(dev.url)
    const rows = 8 * ROWS
    const buffersBefore = liveBuffers()
    client.socket.pause()
    // What the server's thread holds, sampled while the statement runs (no collection: garbage counts too).
    let peak = 0
    const sampling = setInterval(
      () => void (peak = Math.max(peak, process.memoryUsage().arrayBuffers - buffersBefore)),
      2,
    )
    try {
      // The first result fills the socket, so the thread sends the rest through the server before the notice.
      await client.send(
        wire.query(`${bigQuery(ROWS)}; do $$ begin raise notice 'rows follow'; end $$; ${bigQuery(rows)}`),
      )
      await spilled(dev, rows)
    } finally {
      clearInterval(sampling)
    }
    // The rest after the notice (128 MB) went to disk as it came, not into memory until the statement's end.
    expect(peak).toBeLessThan(64 * 2 ** 20)
    await buffersBackAndProbe(dev, buffersBefore)
    const messages = await readWithNotice(client)
    const results = wire.summarize(messages).rows
    expectAllRows({ ...wire.summarize(messages), rows: results.slice(0, ROWS) }, ROWS)
    expectAllRows({ ...wire.summarize(messages), rows: results.slice(ROWS) }, rows)
  })

  it('its next query waits until it has read everything kept for it, and then runs', async () => {
    const dev = await start()
    const client = await stalledClient(dev.url, bigQuery(ROWS))
    await expect.poll(() => dev.server.getStats().spilledBytes, { timeout: PROBE_DEADLINE_MS }).toBeGreaterThan(0)
    await client.send(wire.query('select 42 as next'))
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    const probe = await connect(dev.url)
    expect((await probe.query('select 1', { deadlineMs: PROBE_DEADLINE_MS })).rows).toEqual([['1']])
    await expect
      .poll(() => dev.server.getStats(), { timeout: 5_000 })
      .toMatchObject({ notReadingClients: 1, sessionHeld: false })

    client.socket.resume()
    expectAllRows(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 })), ROWS)
    expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 10_000 })).rows).toEqual([['42']])
  })

  it('past maxSpillBytes: FATAL 53400 after its last whole row, and the database is free at once', async () => {
    const dev = await start({ maxSpillBytes: 4 * 2 ** 20 })
    // Far more than the cap: without it the statement would run for a long while.
    const client = await stalledClient(dev.url, bigQuery(2_000_000))
    const probe = await connect(dev.url)
    await expect.poll(() => dev.server.getStats().activeConnections, { timeout: PROBE_DEADLINE_MS }).toBe(1)
    expect((await probe.query('select 1', { deadlineMs: PROBE_DEADLINE_MS })).rows).toEqual([['1']])
    await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 5_000 }).toBe(false)

    client.socket.resume()
    const messages = await client.until('ErrorResponse', { deadlineMs: 20_000 })
    const summary = wire.summarize(messages)
    expect(summary.errors.map((error) => [error.severity, error.code])).toEqual([['FATAL', '53400']])
    expect(summary.rows.length).toBeGreaterThan(1000)
    expect(summary.rows.every(([g], i) => g === String(i + 1))).toBe(true)
    await withDeadline(client.closed, 10_000, 'the client cut off sees its connection close')
    await expect.poll(() => dev.server.getStats().spilledBytes, { timeout: 10_000 }).toBe(0)
  })

  // Mounting the small disk needs root, as CI runs; elsewhere this test is skipped, and says so.
  if (!canMountTmpfs)
    console.warn(
      `unread-replies: skipping the full-disk test: it mounts a tmpfs, which needs root (uid ${process.getuid?.()}); CI runs as root`,
    )
  it.skipIf(!canMountTmpfs)(
    'a full disk under the spill: FATAL 53100 after its last whole row written, and the database is free at once',
    async () => {
      const cacheDir = await scratchDir('spill-enospc')
      const disk = await mountTmpfs(2)
      await symlink(disk, path.join(cacheDir, 'replies'))
      const free = async (): Promise<number> => (await statfs(disk)).bfree
      const freeAtStart = await free()
      const dev = await start({ cacheDir })
      // Far more than the disk takes: without the cut the statement would run for a long while.
      const client = await stalledClient(dev.url, bigQuery(2_000_000))
      const probe = await connect(dev.url)
      await expect.poll(() => dev.server.getStats().activeConnections, { timeout: PROBE_DEADLINE_MS }).toBe(1)
      expect((await probe.query('select 1', { deadlineMs: PROBE_DEADLINE_MS })).rows).toEqual([['1']])
      await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 5_000 }).toBe(false)

      client.socket.resume()
      const summary = wire.summarize(await client.until('ErrorResponse', { deadlineMs: 20_000 }))
      expect(summary.errors.map((error) => [error.severity, error.code])).toEqual([['FATAL', '53100']])
      expect(summary.errors[0]!.message).toMatch(/no space left on device/i)
      // Everything before the cut arrives whole: the socket's buffers, then what the disk took.
      expect(summary.rows.length).toBeGreaterThan(1000)
      expect(summary.rows.every(([g, payload], i) => g === String(i + 1) && payload!.length === 1000)).toBe(true)
      await withDeadline(client.closed, 10_000, 'the client cut off sees its connection close')
      await expect.poll(() => dev.server.getStats().spilledBytes, { timeout: 10_000 }).toBe(0)
      // The unlinked file was closed: its space is free again.
      await expect.poll(free, { timeout: 10_000 }).toBe(freeAtStart)
      const next = await connect(dev.url)
      expectAllRows(await next.query(bigQuery(500), { deadlineMs: 10_000 }), 500)
    },
  )

  it('inside a transaction block: its statement waits for it, holding the session, as before', async () => {
    const dev = await start()
    const client = await connect(dev.url)
    expect((await client.query('begin')).status).toBe('T')
    client.socket.pause()
    await client.send(wire.query(bigQuery(ROWS)))
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    const probe = await connect(dev.url)
    const probing = probe.query('select 1', { deadlineMs: 30_000 })
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ sessionHeld: true, waitingClients: 1, spilledBytes: 0 })

    client.socket.resume()
    const reply = wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 }))
    expectAllRows(reply, ROWS)
    expect(reply.status).toBe('T')
    expect((await client.query('commit')).status).toBe('I')
    expect((await probing).rows).toEqual([['1']])
  })

  it('a block opened in the same read (BEGIN, then the query, sent together): the statement waits for it too', async () => {
    const dev = await start()
    const client = await connect(dev.url)
    client.socket.pause()
    await client.send(wire.query('begin'), wire.query(bigQuery(ROWS)))
    await expect.poll(() => dev.server.getStats().notReadingClients, { timeout: 10_000 }).toBe(1)
    const probe = await connect(dev.url)
    const probing = probe.query('select 1', { deadlineMs: 30_000 })
    await expect
      .poll(() => dev.server.getStats(), { timeout: 10_000 })
      .toMatchObject({ sessionHeld: true, waitingClients: 1, spilledBytes: 0 })

    client.socket.resume()
    expect(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 10_000 }))).toMatchObject({
      commands: ['BEGIN'],
      status: 'T',
    })
    expectAllRows(wire.summarize(await client.until('ReadyForQuery', { deadlineMs: 30_000 })), ROWS)
    expect((await client.query('commit')).status).toBe('I')
    expect((await probing).rows).toEqual([['1']])
  })
})
