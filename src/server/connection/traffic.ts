// How many clients are sending, across the whole process: the server's thread waits for a database thread's reply by
// spinning (briefly) while few clients are, and by sleeping otherwise (engine/calls.ts). With few clients
// nobody else's query is there to be read while a call runs, and waking the sleeping server's thread costs about as
// much as a small query; with many, the server's thread has their queries to read meanwhile (so that they can share
// the next call) and the clients need the cores. Also how many databases run calls: a database thread spins on a
// lent socket beside waiters only while no other one works (lent-socket.ts).

/** Clients are counted in windows of this length: a client counts as sending while it sent in this one or the last. */
const WINDOW_MS = 100

/** A client whose bytes are counted: the window in which it last sent (its own, so counting needs no lookup). */
export interface TrafficSource {
  trafficWindow: number
}

/** Distinct sources seen in the current window, and in the one before it. */
interface WindowCount {
  window: number
  inWindow: number
  inPrevious: number
}

interface TrafficState extends WindowCount {
  /** Databases that ran calls (counted as the window counts clients that sent). */
  working?: WindowCount
  /** Calls waiting lazily for their end (engine/calls.ts): any client's bytes make them look. */
  lookers: Set<() => void>
  /** Every database thread's calls (see watchAnswers). */
  answers: Set<AnsweredCalls>
  /** Calls of units that grow, running now: any client's bytes make them read what their units wrote so far. */
  readers: Set<() => void>
}

/** A database thread's calls, as the server's thread runs them (engine/calls.ts). */
export interface AnsweredCalls {
  /**
   * If the running call wrote its client's last ReadyForQuery and the server's thread has not seen it end yet: that
   * end, hurried. Else null.
   */
  answeredEnd(): Promise<void> | null
}

// One count per process, even where the server and the engine come from different copies of this module (an app that
// loads both the ESM and the CJS build, or the patched pglite-socket serving a DbThread of ours).
const SHARED = Symbol.for('pglite-dev-db.traffic')
const state = ((globalThis as Record<symbol, unknown>)[SHARED] ??= {
  window: -1,
  inWindow: 0,
  inPrevious: 0,
  lookers: new Set(),
  answers: new Set(),
  readers: new Set(),
}) as TrafficState

/** Call `look` once, the next time any client sends bytes (before they are read); returns its cancellation. */
export function lookOnTraffic(look: () => void): () => void {
  state.lookers.add(look)
  return () => state.lookers.delete(look)
}

/** Call every `look` now, as if a client had sent bytes: a client waits for the session (a lent socket comes back). */
export function lookNow(): void {
  const { lookers } = state
  if (lookers.size === 0) return
  for (const look of lookers) look()
  lookers.clear()
}

/**
 * Call `read` each time any client sends bytes (before they are read), until the returned function is called: a call
 * of units reads which units ended, so that a client answered there can add its next unit to the call.
 */
export function readOnTraffic(read: () => void): () => void {
  // The state may have been made by an older copy of this module, without it.
  const readers = (state.readers ??= new Set())
  readers.add(read)
  return () => readers.delete(read)
}

/** A client answered while its call is still ending is seen as such for at most this long (see answersSeen). */
const ANSWERED_WAIT_MS = 200

/** `calls` are watched by answersSeen until the returned function is called. */
export function watchAnswers(calls: AnsweredCalls): () => void {
  // The state may have been made by an older copy of this module, without it.
  state.answers ??= new Set()
  state.answers.add(calls)
  return () => state.answers.delete(calls)
}

/**
 * Until the calls whose clients have had their answer have been seen to end (and what their clients do next without
 * I/O has run): a reply written straight to its client reaches it before the server's thread sees its call end, and a
 * reader of every client's state (pg_stat_activity) would see that client still running. A pipeline's statement
 * after the answer, or a combined call's next units, may keep a call going: not waited for past ANSWERED_WAIT_MS.
 */
export async function answersSeen(): Promise<void> {
  let ends: Array<Promise<void>> | null = null
  for (const calls of state.answers ?? []) {
    const end = calls.answeredEnd()
    if (end !== null) (ends ??= []).push(end)
  }
  if (ends === null) return
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    Promise.allSettled(ends),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ANSWERED_WAIT_MS))),
  ])
  clearTimeout(timer)
  await new Promise<void>((resolve) => setImmediate(resolve))
}

/** `client` sent bytes. Per chunk: a clock read and a comparison. */
export function noteClientBytes(client: TrafficSource): void {
  const { readers } = state
  // (The state may have been made by an older copy of this module, without readers.)
  if (readers !== undefined && readers.size > 0) for (const read of readers) read()
  lookNow()
  countSending(client)
}

/**
 * `client` counts as sending in the current window (its bytes were read, by the server or by its database's thread
 * from a lent socket: engine/lent-reads.ts).
 */
export function countSending(client: TrafficSource): void {
  countIn(state, client)
}

/** How many clients sent bytes in the last one to two windows. */
export function sendingClients(): number {
  return countOf(state)
}

/** The database of `session` (session/session.ts SharedSession) runs a call. */
export function countWorking(session: TrafficSource): void {
  countIn((state.working ??= { window: -1, inWindow: 0, inPrevious: 0 }), session)
}

/** How many databases ran calls in the last one to two windows. */
export function workingDatabases(): number {
  return state.working ? countOf(state.working) : 0
}

function countIn(count: WindowCount, source: TrafficSource): void {
  const now = Math.floor(performance.now() / WINDOW_MS)
  if (now !== count.window) {
    count.inPrevious = now === count.window + 1 ? count.inWindow : 0
    count.inWindow = 0
    count.window = now
  }
  if (source.trafficWindow !== now) {
    source.trafficWindow = now
    count.inWindow++
  }
}

function countOf(count: WindowCount): number {
  const now = Math.floor(performance.now() / WINDOW_MS)
  if (now === count.window) return Math.max(count.inWindow, count.inPrevious)
  return now === count.window + 1 ? count.inWindow : 0
}
