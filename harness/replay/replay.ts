// Replays a protocol trace against a server: one socket per traced connection, each connection's client messages
// in the recorded global order, each sent once its connection (and every other) has the replies the trace shows it
// had by then (or, once its replies went another way, as many ReadyForQuery). Then each one's replies are compared.
import net from 'node:net'
import { ReplayClient, type ClientTarget } from './client.ts'
import { readPlan, type Need, type Plan, type PlannedConnection, type Reply, type Step } from './plan.ts'

export interface ReplayOptions {
  file: string
  url: string
  /** Bound for each wait on the server (default 5000 ms). */
  deadlineMs?: number
  /** Compare message types and SQLSTATEs only (not statuses, tags, columns, values). */
  typesOnly?: boolean
  print: (line: string) => void
}

/** Exit status: 0 every connection got what the trace shows, 1 a difference or a stall, 2 a trace that cannot be replayed. */
export async function replayTrace(options: ReplayOptions): Promise<number> {
  const { print } = options
  const deadlineMs = options.deadlineMs ?? 5000
  let plan: Plan
  try {
    plan = await readPlan(options.file, options.typesOnly ?? false)
  } catch (error) {
    print(`replay: cannot read ${options.file}: ${(error as Error).message}`)
    return 2
  }
  if (plan.problems.length > 0) {
    for (const problem of plan.problems) print(`replay: ${problem}`)
    return 2
  }
  const url = new URL(options.url)
  const target = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 5432),
    password: decodeURIComponent(url.password),
  }
  const sends = plan.steps.filter((s) => s.kind === 'send').length
  print(
    `replaying ${options.file} against ${target.host}:${target.port}: ${plan.connections.size} connections, ${sends} sends`,
  )

  const run: Run = {
    plan,
    clients: new Map(),
    required: new Map(),
    cancels: [],
    notes: [],
    target,
    typesOnly: options.typesOnly ?? false,
    deadlineMs,
  }
  const { clients } = run
  let stall: string | null = null
  try {
    for (const [index, step] of plan.steps.entries()) {
      stall = await runStep(step, run)
      if (stall) break
      await settle(step, plan.steps[index + 1], clients)
    }
    // Everything sent: wait for the rest of each connection's replies (or its close).
    for (const [conn, client] of clients) {
      if (stall) break
      const planned = plan.connections.get(conn)!
      const all = { replies: planned.replies.length, ready: planned.ready }
      if (!(await client.until(() => isSatisfied(client, all), deadlineMs)))
        stall = stallMessage(client, planned, 'after the last message', all, deadlineMs)
    }
    const differing = report(plan, clients, print)
    for (const note of run.notes) print(note)
    if (stall) print(`STALLED: ${stall}`)
    print(
      stall || differing > 0
        ? `replay: ${differing} of ${clients.size} connections differ from the trace${stall ? ', and the replay stalled' : ''}`
        : 'replay: every connection got what the trace shows',
    )
    return stall || differing > 0 ? 1 : 0
  } finally {
    for (const client of clients.values()) client.destroy()
    for (const socket of run.cancels) socket.destroy()
  }
}

/**
 * How long a send may take to be read before the next connection's send goes out. Two sockets' bytes reach the server
 * in no fixed order: without this, a send the trace shows read first may be read second (the server then hands the
 * session to the other client first, and the replay can wait on itself). Up to this long, the replay waits for the
 * sent connection's first reply to it, the sign it was read; a send whose reply waits on another client's later send
 * proceeds after it.
 */
const SETTLE_MS = 250

/** After `step`, before `next` on another connection: let the server read `step` first (see SETTLE_MS). */
async function settle(step: Step, next: Step | undefined, clients: Map<number, ReplayClient>): Promise<void> {
  if (step.kind !== 'send' || !next || next.kind !== 'send' || next.conn === step.conn) return
  const client = clients.get(step.conn)
  if (!client || client.startup !== 'ready') return
  const before = client.replies.length
  await client.until(() => client.replies.length > before || client.isClosed, SETTLE_MS)
}

interface Run {
  plan: Plan
  clients: Map<number, ReplayClient>
  /** Replies connections must have before the next send, as far as not yet seen. */
  required: Map<number, Need>
  cancels: net.Socket[]
  notes: string[]
  target: ClientTarget
  typesOnly: boolean
  deadlineMs: number
}

/** Runs one step; returns why the replay cannot go on, or null. */
async function runStep(step: Step, run: Run): Promise<string | null> {
  const { clients, target, deadlineMs } = run
  const planned = run.plan.connections.get(step.conn)!
  if (step.kind === 'connect') {
    // Not awaited: another connection's later step may be what lets this startup finish (a server that queues it).
    clients.set(step.conn, new ReplayClient(step.conn, planned.params, planned.replies, target, run.typesOnly))
    return null
  }
  if (step.kind === 'cancel') {
    const victim = clients.get(step.target)
    if (!victim || victim.pid === 0) {
      run.notes.push(
        `note: conn ${step.conn}'s CancelRequest for ${step.target} was not sent: no replayed connection has that id`,
      )
      return null
    }
    const request = Buffer.alloc(16)
    request.writeInt32BE(16, 0)
    request.writeInt32BE(80877102, 4) // CancelRequest code
    request.writeInt32BE(victim.pid, 8)
    request.writeInt32BE(victim.secretKey, 12)
    const socket = net.connect(target.port, target.host, () => socket.end(request))
    socket.on('error', (error: NodeJS.ErrnoException) =>
      run.notes.push(`note: conn ${step.conn}'s CancelRequest failed: ${error.code ?? error.message}`),
    )
    run.cancels.push(socket)
    return null
  }
  const client = clients.get(step.conn)
  if (!client) return `conn ${step.conn} sends ${step.types.join(', ')} before any StartupMessage in the trace`
  if (!(await client.until(() => client.startup !== null, deadlineMs)))
    return `conn ${step.conn}: no startup reply within ${deadlineMs} ms`
  if (client.startup !== 'ready') return null
  for (const [conn, need] of step.after) run.required.set(conn, need)
  const deadline = Date.now() + Math.min(deadlineMs, RELAX_MS)
  for (const [conn, need] of run.required) {
    const other = clients.get(conn)
    const otherPlanned = run.plan.connections.get(conn)!
    // A reply the trace no longer counts (the FATAL of the recording server's shutdown) is not waited for.
    const clamped = {
      replies: Math.min(need.replies, otherPlanned.replies.length),
      ready: Math.min(need.ready, otherPlanned.ready),
    }
    if (other && !other.isClosed && !(await other.until(() => isSatisfied(other, clamped), deadline - Date.now()))) {
      // Its replies wait on a send later in the trace (another connection holds the session they need): the recorded
      // order cannot happen again here. Send anyway and say so; replies that never come are a stall at the end.
      run.notes.push(
        `note: conn ${step.conn} sent ${step.types.join(', ')} before conn ${conn} had the ${clamped.replies} replies the trace shows it had then (it had ${other.replies.length}): the recorded order could not be kept`,
      )
    }
    run.required.delete(conn)
  }
  client.send(step.frames)
  return null
}

/**
 * How long a send waits for the replies the trace shows connections had by then. Past that, those replies are taken
 * to wait on a later send (the server runs one session: the recorded order depended on timing), and the send goes out
 * anyway; the end of the replay still waits deadlineMs for every reply.
 */
const RELAX_MS = 1000

/**
 * The connection has what the trace shows at this point, or (its replies having gone another way) as many
 * ReadyForQuery; once true it stays true, as replies only accumulate.
 */
function isSatisfied(client: ReplayClient, need: Need): boolean {
  if (client.startup === null) return need.replies === 0
  if (client.isClosed || client.startup !== 'ready') return true
  const diverged = client.firstMismatch >= 0 && client.firstMismatch < need.replies
  return diverged ? client.readyCount >= need.ready : client.replies.length >= need.replies
}

function stallMessage(
  client: ReplayClient,
  planned: PlannedConnection,
  when: string,
  need: Need,
  deadlineMs: number,
): string {
  const waitedFor = planned.replies.slice(client.replies.length, need.replies).map(show)
  return `conn ${client.conn} waited ${deadlineMs} ms ${when} for ${waitedFor.join(' ') || `ReadyForQuery #${need.ready}`}; it had ${client.replies.length} replies (${client.readyCount} ReadyForQuery)`
}

const show = (r: Reply): string => (r.detail ? `${r.type}(${r.detail})` : r.type)

/** Prints one verdict per connection; returns how many differ. */
function report(plan: Plan, clients: Map<number, ReplayClient>, print: (line: string) => void): number {
  let differing = 0
  for (const [conn, planned] of plan.connections) {
    const client = clients.get(conn)
    if (!client) continue
    const who = [planned.params.application_name, planned.params.user && `user ${planned.params.user}`]
      .filter(Boolean)
      .join(', ')
    const label = `conn ${conn}${who ? ` (${who})` : ''}`
    if (client.startup !== planned.startup) {
      differing++
      print(`${label}: DIFFERS at startup: traced ${planned.startup}, got ${client.startup ?? 'nothing'}`)
      continue
    }
    const expected = planned.replies.map(show)
    const got = client.replies.map(show)
    let at = 0
    while (at < expected.length && at < got.length && expected[at] === got[at]) at++
    if (at === expected.length && at === got.length) {
      print(`${label}: same ${expected.length} replies as traced`)
      continue
    }
    differing++
    const from = Math.max(0, at - 2)
    print(`${label}: DIFFERS at reply ${at + 1} (traced ${expected.length} replies, got ${got.length})`)
    print(`    traced: ${from > 0 ? '… ' : ''}${expected.slice(from, at + 4).join(' ') || '(nothing)'}`)
    print(`    got:    ${from > 0 ? '… ' : ''}${got.slice(from, at + 4).join(' ') || '(nothing)'}`)
  }
  return differing
}
