// Stopping a running statement: statement_timeout (a sleep, and a PL/pgSQL loop that never yields) and CancelRequest,
// each timed from the client's side, then the client and a bystander checked to be served again.
import { connectClient, seconds, sendCancel, sleep, timedQuery, type Reply } from './clients.ts'
import { describeReplies } from './blocking.ts'
import type { Measured, Scenario } from './scenario.ts'
import { endQuietly } from './targets.ts'

/** The goal: within 10% of the timeout. */
const TIMEOUT_SLACK = 0.1
/** Postgres answers a CancelRequest at once; this script's bar for "at once". */
const CANCEL_GOAL_MS = 200
const CANCEL_AFTER_MS = 1_000
const LOOP_SQL = 'DO $$BEGIN LOOP END LOOP; END$$'
const CANCELED = 'ERROR 57014'

/** Whether a new client is served (`select 1`), bounded. */
async function bystander(url: string): Promise<Reply> {
  const client = await connectClient(url)
  try {
    return await timedQuery(client, 'select 1', 10_000)
  } finally {
    await endQuietly(client)
  }
}

const brief = (r: Reply) => ({ outcome: r.outcome, errors: r.errors, ms: Math.round(r.ms) })

/** One Query with SET statement_timeout first, as a client types it; then the same client and a new one. */
async function timeoutLine(url: string, timeoutMs: number, statement: string): Promise<Measured> {
  const client = await connectClient(url)
  try {
    const reply = await timedQuery(client, `SET statement_timeout = ${timeoutMs}; ${statement}`, timeoutMs + 15_000)
    const again = await timedQuery(client, 'select 1', 10_000)
    const other = await bystander(url)
    const isOnTime = reply.errors.join() === CANCELED && Math.abs(reply.ms - timeoutMs) <= timeoutMs * TIMEOUT_SLACK
    const served = again.outcome === 'ok' && other.outcome === 'ok'
    let text = describeReplies([reply])
    if (!served) text += `; then the client: ${describeReplies([again])}, a new client: ${describeReplies([other])}`
    return {
      text,
      met: isOnTime && served,
      figures: { reply: brief(reply), sameClientAfter: brief(again), newClientAfter: brief(other) },
    }
  } finally {
    await endQuietly(client)
  }
}

/** A CancelRequest 1 s into the statement, timed from its write to the end of the statement's reply. */
async function cancelLine(url: string, statement: string): Promise<Measured> {
  const client = await connectClient(url)
  try {
    const running = timedQuery(client, statement, 20_000)
    await sleep(CANCEL_AFTER_MS)
    const askedAt = await sendCancel(url, client.backendKey!)
    const reply = await running
    const cancelToReplyMs = Math.round(reply.endedAt - askedAt)
    const again = await timedQuery(client, 'select 1', 10_000)
    const other = await bystander(url)
    const served = again.outcome === 'ok' && other.outcome === 'ok'
    const isCanceled = reply.errors.join() === CANCELED
    let text = isCanceled
      ? `${CANCELED} ${cancelToReplyMs} ms after the CancelRequest`
      : `${describeReplies([reply])} (CancelRequest at ${seconds(CANCEL_AFTER_MS)})`
    if (!served) text += `; then the client: ${describeReplies([again])}, a new client: ${describeReplies([other])}`
    return {
      text,
      met: isCanceled && cancelToReplyMs <= CANCEL_GOAL_MS && served,
      figures: { cancelToReplyMs, reply: brief(reply), sameClientAfter: brief(again), newClientAfter: brief(other) },
    }
  } finally {
    await endQuietly(client)
  }
}

export const statementTimeoutScenario: Scenario = {
  id: 'statement-timeout',
  lines: [
    {
      id: 'statement-timeout',
      what: '`SET statement_timeout = 2000; select pg_sleep(8)`',
      goal: `57014 at ${seconds(1_800)}–${seconds(2_200)}`,
    },
  ],
  run: async (target) => ({ 'statement-timeout': await timeoutLine(target.url, 2_000, 'select pg_sleep(8)') }),
}

export const loopTimeoutScenario: Scenario = {
  id: 'loop-timeout',
  lines: [
    {
      id: 'loop-timeout',
      what: `\`SET statement_timeout = 3000; ${LOOP_SQL}\``,
      goal: `57014 at ${seconds(2_700)}–${seconds(3_300)}, others served after`,
    },
  ],
  run: async (target) => ({ 'loop-timeout': await timeoutLine(target.url, 3_000, LOOP_SQL) }),
}

export const cancelScenario: Scenario = {
  id: 'cancel',
  lines: [
    {
      id: 'cancel-sleep',
      what: 'CancelRequest 1 s into `select pg_sleep(15)`',
      goal: `57014 ≤ ${CANCEL_GOAL_MS} ms after it (Postgres: at once)`,
    },
    {
      id: 'cancel-loop',
      what: `CancelRequest 1 s into \`${LOOP_SQL}\``,
      goal: `57014 ≤ ${CANCEL_GOAL_MS} ms after it, others served after`,
    },
  ],
  async run(target) {
    // In this order: a loop that cannot be stopped holds the session for good, and the sleep would then only wait.
    const sleepLine = await cancelLine(target.url, 'select pg_sleep(15)')
    const loopLine = await cancelLine(target.url, LOOP_SQL)
    return { 'cancel-sleep': sleepLine, 'cancel-loop': loopLine }
  },
}
