// Memory that clients who do not read can make the server hold: 4 unread 200 MB results, and a flood of distinct
// NOTIFYs to a listener that does not read. The server's memory is sampled every 100 ms: idle before, the peak, and
// what is left 60 s after the clients left (the goal: within 64 MB of idle).
import { readdirSync, readlinkSync, statSync } from 'node:fs'
import net from 'node:net'
import { connectClient, seconds, sleep, timedQuery } from './clients.ts'
import { describeMemory, IDLE_ALLOWANCE_MB, memoryFigures, startSampler, type Sampler } from './memory.ts'
import type { Measured, RunContext, Scenario } from './scenario.ts'
import { endQuietly, type Target } from './targets.ts'
import { StalledError, toAddress, withDeadline, type RawClient } from '../raw-client.ts'
import * as wire from '../wire.ts'

const SAMPLE_EVERY_MS = 100
/** A fresh server settles this long before its idle figure is taken over the next IDLE_MS. */
const SETTLE_MS = 3_000
const IDLE_MS = 2_000
export const AFTER_MS = 60_000

const BIG_CLIENTS = 4
const BIG_ROWS = 200_000
const BIG_ROW_CHARS = 1_000
const BIG_SQL = `select g, repeat('x', ${BIG_ROW_CHARS}) from generate_series(1, ${BIG_ROWS}) g`
/** How long the big results stay unread before their clients leave. */
const HOLD_MS = 15_000

const CHANNEL = 'limits_flood'
const NOTIFY_BATCHES = 80
const NOTIFY_PER_BATCH = 1_000
/** Below Postgres's 8000-byte limit; distinct payloads, as Postgres folds identical ones within a transaction. */
const PAYLOAD_CHARS = 7_900

/**
 * Idle, then `workload` (it returns once its clients have left), then 60 s; the figures for RSS (and PSS where read).
 * The goal is judged on ours only.
 */
async function measureMemory<T extends Record<string, unknown>>(
  target: Target,
  context: RunContext,
  workload: (sampler: Sampler) => Promise<T>,
): Promise<Measured> {
  if (!target.readMemory()) return { text: 'memory not readable from this machine', met: null, figures: {} }
  const sampler = startSampler(target, SAMPLE_EVERY_MS)
  try {
    await sleep(SETTLE_MS + IDLE_MS)
    const idle: [number, number] = [SETTLE_MS, Math.round(sampler.now())]
    sampler.mark('clients')
    const extra = await workload(sampler)
    sampler.mark('left')
    context.log(`  clients left; ${AFTER_MS / 1000} s idle`)
    const left = Math.round(sampler.now())
    await sleep(AFTER_MS)
    const after = Math.round(sampler.now())
    sampler.stop()
    const samples = sampler.samples()
    const rss = memoryFigures(samples, 'rssMb', idle, left, after)
    const pss = samples.some((s) => s.pssMb !== undefined) ? memoryFigures(samples, 'pssMb', idle, left, after) : null
    const serving = await servedAfter(target)
    let text = describeMemory(rss, target.name === 'postgres' ? 'RSS (sum)' : 'RSS')
    if (pss)
      text += `; PSS idle ${pss.idleMb?.toFixed(0)}, peak ${pss.peakMb?.toFixed(0)}, 60 s after ${pss.afterMb?.toFixed(0)} MB`
    if (!serving) text += '; NOT serving after'
    return {
      text,
      met: target.name === 'ours' ? rss.isBack === true && serving : null,
      figures: {
        rss,
        ...(pss ? { pss } : {}),
        servedAfter: serving,
        marks: sampler.marks(),
        ...extra,
        samples: thin(samples, 1_000),
      },
    }
  } finally {
    sampler.stop()
  }
}

/** Every `everyMs`-th sample (the JSON keeps the shape of the curve, not 100 ms of it). */
function thin<T extends { ms: number }>(samples: T[], everyMs: number): T[] {
  let next = 0
  return samples.filter((s) => {
    if (s.ms < next) return false
    next = s.ms + everyMs
    return true
  })
}

async function servedAfter(target: Target): Promise<boolean> {
  const client = await connectClient(target.url)
  try {
    return (await timedQuery(client, 'select 1', 10_000)).outcome === 'ok'
  } finally {
    await endQuietly(client)
  }
}

/**
 * MB of unread replies ours keeps on disk now: the sizes of its open files under `<cacheDir>/replies` (unlinked as
 * soon as made, so found through /proc). Null where /proc cannot be read.
 */
function keptOnDiskMb(pid: number): number | null {
  let fds: string[]
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return null
  }
  let bytes = 0
  for (const fd of fds) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).includes('pglite-dev-db-replies-'))
        bytes += statSync(`/proc/${pid}/fd/${fd}`).size
    } catch {
      // Closed meanwhile.
    }
  }
  return bytes / 2 ** 20
}

export const bigResultScenario: Scenario = {
  id: 'big-result',
  lines: [
    {
      id: 'big-result',
      what: `${BIG_CLIENTS} clients each ask for a ${(BIG_ROWS * BIG_ROW_CHARS) / 1e6} MB result, do not read it for ${HOLD_MS / 1000} s, then leave`,
      goal: `RSS 60 s after ≤ idle + ${IDLE_ALLOWANCE_MB} MB`,
    },
  ],
  async run(target, context) {
    const line = await measureMemory(target, context, async () => {
      const clients = await Promise.all(Array.from({ length: BIG_CLIENTS }, () => connectClient(target.url)))
      for (const client of clients) {
        client.socket.pause()
        await client.send(wire.query(BIG_SQL))
      }
      await sleep(HOLD_MS)
      // What each had taken off the wire (the paused socket still reads a little into its buffer): its query ran.
      const bytesRead = clients.map((c) => c.socket.bytesRead)
      const onDisk = target.name === 'ours' && target.pid !== null ? keptOnDiskMb(target.pid) : null
      for (const client of clients) client.destroy()
      // Their files go with them.
      let onDiskAfter = onDisk
      for (let waited = 0; onDiskAfter !== null && onDiskAfter > 0 && waited < 5_000; waited += 100) {
        await sleep(100)
        onDiskAfter = keptOnDiskMb(target.pid!)
      }
      return { bytesRead, onDiskMb: onDisk, onDiskAfterMb: onDiskAfter }
    })
    const { onDiskMb, onDiskAfterMb } = line.figures as { onDiskMb?: number | null; onDiskAfterMb?: number | null }
    if (typeof onDiskMb === 'number')
      line.text += `; ${onDiskMb.toFixed(0)} MB of their results on disk until they left, ${onDiskAfterMb?.toFixed(0)} MB after`
    return { 'big-result': line }
  },
}

interface ListenerCounts {
  notifications: number
  notificationBytes: number
  errors: string[]
  isClosed: boolean
}

/**
 * A listener that keeps nothing it receives, only counts it (80k notifications are 632 MB): startup, LISTEN, and
 * then the socket paused until `readAll`.
 */
async function startCountingListener(
  url: string,
): Promise<{ counts: ListenerCounts; readAll(quietMs: number, boundMs: number): Promise<void>; destroy(): void }> {
  const { host, port } = toAddress(url)
  const socket = net.connect(port, host)
  const parser = wire.createBackendParser()
  const counts: ListenerCounts = { notifications: 0, notificationBytes: 0, errors: [], isClosed: false }
  let readyCount = 0
  let lastArrival = performance.now()
  let wake: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => {
    lastArrival = performance.now()
    for (const m of parser.push(chunk)) {
      if (m.code === 'A') {
        counts.notifications++
        counts.notificationBytes += m.body.length
      } else if (m.code === 'E') {
        const info = wire.decodeError(m.body)
        counts.errors.push(`${info.severity} ${info.code}`)
      } else if (m.code === 'Z') readyCount++
    }
    wake?.()
  })
  // A reset shows up as the close that follows.
  socket.on('error', (error) => counts.errors.push(`socket ${(error as NodeJS.ErrnoException).code ?? error.message}`))
  socket.on('close', () => {
    counts.isClosed = true
    wake?.()
  })
  const waitFor = async (done: () => boolean, ms: number, what: string) => {
    const until = performance.now() + ms
    while (!done()) {
      if (counts.isClosed) throw new Error(`listener closed while waiting for ${what}: ${counts.errors.join(', ')}`)
      if (performance.now() > until) throw new StalledError(`listener: no ${what} within ${ms} ms`)
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), sleep(100)])
    }
  }
  await withDeadline(new Promise((resolve) => socket.once('connect', resolve)), 10_000, 'listener connect')
  const database = new URL(url).pathname.slice(1) || 'postgres'
  socket.write(wire.startup({ user: 'postgres', database, application_name: 'limits' }))
  await waitFor(() => readyCount >= 1, 10_000, 'ReadyForQuery after startup')
  socket.write(wire.query(`LISTEN ${CHANNEL}`))
  await waitFor(() => readyCount >= 2, 10_000, 'ReadyForQuery after LISTEN')
  socket.pause()
  return {
    counts,
    async readAll(quietMs, boundMs) {
      socket.resume()
      lastArrival = performance.now()
      const until = lastArrival + boundMs
      while (!counts.isClosed && performance.now() - lastArrival < quietMs && performance.now() < until)
        await sleep(100)
    },
    destroy: () => socket.destroy(),
  }
}

export const notifyScenario: Scenario = {
  id: 'notify',
  lines: [
    {
      id: 'notify-flood',
      what: `${(NOTIFY_BATCHES * NOTIFY_PER_BATCH) / 1000}k distinct NOTIFYs of ${(PAYLOAD_CHARS / 1000).toFixed(1)} KB (${NOTIFY_BATCHES} transactions) to a listener that does not read`,
      goal: `RSS 60 s after the listener left ≤ idle + ${IDLE_ALLOWANCE_MB} MB`,
    },
  ],
  async run(target, context) {
    let got = ''
    const line = await measureMemory(target, context, async (sampler) => {
      const listener = await startCountingListener(target.url)
      const sender: RawClient = await connectClient(target.url)
      const floodStarted = performance.now()
      const senderErrors: string[] = []
      let sent = 0
      try {
        for (let batch = 0; batch < NOTIFY_BATCHES; batch++) {
          const from = batch * NOTIFY_PER_BATCH + 1
          const reply = await timedQuery(
            sender,
            `select count(pg_notify('${CHANNEL}', lpad(g::text, ${PAYLOAD_CHARS}, 'x'))) from generate_series(${from}, ${from + NOTIFY_PER_BATCH - 1}) g`,
            60_000,
          )
          if (reply.outcome !== 'ok') {
            senderErrors.push(`batch ${batch}: ${reply.outcome} ${reply.errors.join(', ')}`)
            break
          }
          sent += NOTIFY_PER_BATCH
        }
      } finally {
        await endQuietly(sender)
      }
      const floodMs = Math.round(performance.now() - floodStarted)
      sampler.mark('flood done')
      context.log(`  ${sent} notifications sent in ${seconds(floodMs)}; the listener reads now`)
      // What the listener was sent: it reads now until the server closes it or 3 s pass without a byte.
      await listener.readAll(3_000, 120_000)
      listener.destroy()
      const { counts } = listener
      got = `listener got ${counts.notifications} notifications (${(counts.notificationBytes / 2 ** 20).toFixed(0)} MB)${counts.errors.length ? `, ${counts.errors.join(', ')}` : ''}${counts.isClosed ? ', closed by the server' : ''}`
      return { sent, floodMs, senderErrors, listener: { ...counts } }
    })
    if (got) line.text = `${line.text}; ${got}`
    return { 'notify-flood': line }
  },
}
