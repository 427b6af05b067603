// One client's long statement must not block anyone else's start: new connections while a 15 s pg_sleep runs, and 30
// clients queued behind it with a queue timeout, which must refuse them with 55P03 on time (PostgreSQL serves them).
import { connectClient, seconds, sleep, timedConnect, timedQuery, type Reply } from './clients.ts'
import type { Measured, Scenario } from './scenario.ts'
import { endQuietly, type Target } from './targets.ts'

const SLEEP_SQL = 'select pg_sleep(15)'
const SLEEP_MS = 15_000
const CONNECT_GOAL_MS = 200
const QUEUE_TIMEOUT_MS = 3_000
/** The goal: within 10% of the queue timeout. */
const QUEUE_SLACK_MS = QUEUE_TIMEOUT_MS / 10
const WAITERS = 30
const REPLY_DEADLINE_MS = SLEEP_MS + 15_000

/** New connections at these points of the sleep (ms after it was sent), each ended before the next. */
async function connectDuring(url: string, startedAt: number, atMs: number[]): Promise<Measured> {
  const times: number[] = []
  const failures: string[] = []
  for (const at of atMs) {
    await sleep(at - (performance.now() - startedAt))
    const connect = await timedConnect(url, 20_000)
    times.push(Math.round(connect.ms))
    if (connect.client) await endQuietly(connect.client)
    else failures.push(connect.failure!)
  }
  const maxMs = Math.max(...times)
  const text = failures.length
    ? `${failures.length} of ${times.length} failed (${failures[0]}); ${times.join(', ')} ms`
    : `max ${maxMs} ms (${times.length} connections: ${times.join(', ')} ms)`
  return {
    text,
    met: failures.length === 0 && maxMs <= CONNECT_GOAL_MS,
    figures: { connectMs: times, maxMs, failures, atMs },
  }
}

/** `30× ERROR 55P03 at 3.00–3.04 s`, one part per kind of outcome. */
export function describeReplies(replies: Reply[]): string {
  const groups = new Map<string, number[]>()
  for (const r of replies) {
    const heard = r.errors.join(' + ')
    const key = r.outcome === 'error' ? heard : r.outcome === 'closed' && heard ? `${heard}, closed` : r.outcome
    groups.set(key, [...(groups.get(key) ?? []), r.ms])
  }
  const at = (ms: number) => (ms < 1_000 ? `${Math.round(ms)} ms` : seconds(ms))
  return [...groups]
    .map(([key, ms]) => {
      if (ms.length === 1) return `${key} at ${at(ms[0]!)}`
      const lo = Math.min(...ms)
      const hi = Math.max(...ms)
      return `${ms.length}× ${key} at ${at(lo)}–${at(hi)}`
    })
    .join('; ')
}

export const sleepScenario: Scenario = {
  id: 'sleep',
  lines: [
    {
      id: 'connect-during-sleep',
      what: `a new connection while another client runs \`${SLEEP_SQL}\``,
      goal: `ReadyForQuery ≤ ${CONNECT_GOAL_MS} ms`,
    },
  ],
  async run(target: Target) {
    const sleeper = await connectClient(target.url)
    try {
      const startedAt = performance.now()
      const sleeping = timedQuery(sleeper, SLEEP_SQL, REPLY_DEADLINE_MS)
      const line = await connectDuring(target.url, startedAt, [1_000, 4_000, 7_000, 10_000, 13_000])
      const slept = await sleeping
      line.figures.sleeper = { outcome: slept.outcome, errors: slept.errors, ms: Math.round(slept.ms) }
      if (slept.outcome !== 'ok') line.text += `; the sleeper: ${describeReplies([slept])}`
      return { 'connect-during-sleep': line }
    } finally {
      await endQuietly(sleeper)
    }
  },
}

export const queueScenario: Scenario = {
  id: 'queue',
  ours: { queueTimeoutMs: QUEUE_TIMEOUT_MS },
  lines: [
    {
      id: 'queue-timeout',
      what: `${WAITERS} clients send \`select 1\` while another runs \`${SLEEP_SQL}\`, \`--queue-timeout-ms ${QUEUE_TIMEOUT_MS}\``,
      goal: `55P03 at ${seconds(QUEUE_TIMEOUT_MS - QUEUE_SLACK_MS)}–${seconds(QUEUE_TIMEOUT_MS + QUEUE_SLACK_MS)}`,
    },
    {
      id: 'connect-while-queued',
      what: `a new connection while those ${WAITERS} wait`,
      goal: `ReadyForQuery ≤ ${CONNECT_GOAL_MS} ms`,
    },
  ],
  async run(target: Target) {
    const sleeper = await connectClient(target.url)
    const waiters = await Promise.all(Array.from({ length: WAITERS }, () => connectClient(target.url)))
    try {
      const sleeping = timedQuery(sleeper, SLEEP_SQL, REPLY_DEADLINE_MS)
      // The sleep is under way before the waiters ask (a pause, not an ordering: the sleep lasts 15 s).
      await sleep(300)
      const sentAt = performance.now()
      const waiting = Promise.all(waiters.map((w) => timedQuery(w, 'select 1', REPLY_DEADLINE_MS)))
      const connect = await connectDuring(target.url, sentAt, [1_000, 1_500, 2_000, 2_500])
      const replies = await waiting
      const slept = await sleeping
      const refused = replies.filter((r) => r.errors.length === 1 && r.errors[0] === 'ERROR 55P03')
      const onTime = refused.filter((r) => Math.abs(r.ms - QUEUE_TIMEOUT_MS) <= QUEUE_SLACK_MS)
      const queue: Measured = {
        text: describeReplies(replies),
        met: target.name === 'ours' ? onTime.length === WAITERS : null,
        figures: {
          replies: replies.map((r) => ({ outcome: r.outcome, errors: r.errors, ms: Math.round(r.ms) })),
          refused: refused.length,
          onTime: onTime.length,
          sleeper: { outcome: slept.outcome, errors: slept.errors, ms: Math.round(slept.ms) },
        },
      }
      if (slept.outcome !== 'ok') queue.text += `; the sleeper: ${describeReplies([slept])}`
      return { 'queue-timeout': queue, 'connect-while-queued': connect }
    } finally {
      await Promise.all([sleeper, ...waiters].map(endQuietly))
    }
  },
}
