// Drivers nobody here wrote, in their own languages: psycopg 3 (Python; prepare_threshold=0 so every query is a
// server-side statement named _pg3_N, pipeline mode, COPY, a DDL that makes psycopg send DEALLOCATE ALL) and
// pgjdbc (Java; past prepareThreshold, so S_1, S_2... on every connection, batch inserts, metadata). Each runs
// several connections at once, checks every result, and prints a JSON tally that becomes this scenario's.
import { fileURLToPath } from 'node:url'
import { runProcess, type ProcessRun } from '../process.ts'
import {
  createTally,
  recordFailure,
  recordWrong,
  verdictOf,
  type Outcome,
  type RunOptions,
  type Scenario,
  type Tally,
} from './outcome.ts'

const CLIENTS_DIR = fileURLToPath(new URL('../clients/', import.meta.url))
const RUN_DEADLINE_MS = 90_000
/** Debian's python3 (python3-psycopg), not whatever python3 a version manager puts first on the PATH. */
const PYTHON = '/usr/bin/python3'
const JDBC_JAR = '/usr/share/java/postgresql.jar'

interface ClientTally {
  queries: number
  ok: number
  wrong: string[]
  errors: Record<string, number>
  samples: string[]
}

/** The client's own tally, merged in; a client that died without one counts as one failure. */
function absorb(tally: Tally, run: ProcessRun): void {
  const line = run.stdout.toString().trim().split('\n').pop() ?? ''
  let reported: ClientTally
  try {
    reported = JSON.parse(line) as ClientTally
  } catch {
    tally.queries++
    recordFailure(
      tally,
      Object.assign(new Error(`exit ${run.code}: ${run.stderr.trim().split('\n').slice(-3).join(' | ')}`), {
        code: 'CLIENT_DIED',
      }),
    )
    return
  }
  tally.queries += reported.queries
  tally.ok += reported.ok
  for (const detail of reported.wrong) recordWrong(tally, detail)
  for (const [key, count] of Object.entries(reported.errors)) {
    tally.errors[key] = (tally.errors[key] ?? 0) + count
    const sample = reported.samples.find((s) => s.includes(`: ${key} `))
    if (sample && tally.samples.length < 8) tally.samples.push(`${key} ${sample}`)
  }
  // Requests the client never got to (it stopped a connection at its first failure) are not in its count.
  if (run.code !== 0 && reported.ok === reported.queries)
    recordFailure(tally, Object.assign(new Error(`exit ${run.code}`), { code: 'CLIENT_EXIT' }))
}

async function scenarioRun(
  command: string,
  args: string[],
  options: { deadlineMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<Outcome> {
  const tally = createTally()
  try {
    absorb(
      tally,
      await runProcess(command, args, { deadlineMs: options.deadlineMs ?? RUN_DEADLINE_MS, env: options.env }),
    )
  } catch (error) {
    tally.queries++
    recordFailure(tally, error)
  }
  return verdictOf(tally)
}

/** `deadlineMs` bounds the client process's whole run. */
export const psycopgScenario: Scenario = {
  name: 'psycopg',
  run: (url, options: RunOptions = {}) =>
    scenarioRun(PYTHON, [`${CLIENTS_DIR}psycopg_check.py`, url, '4', '10'], options),
}

/** `deadlineMs` bounds the client process's whole run. */
export const pgjdbcScenario: Scenario = {
  name: 'pgjdbc',
  run: (url, options: RunOptions = {}) => {
    const { hostname, port, pathname } = new URL(url)
    return scenarioRun(
      'java',
      [
        '-cp',
        JDBC_JAR,
        `${CLIENTS_DIR}JdbcCheck.java`,
        `jdbc:postgresql://${hostname}:${port || 5432}${pathname || '/postgres'}`,
        '4',
        '10',
      ],
      options,
    )
  },
}

/**
 * What each connection must have of its own backend (issue 15), with asyncpg and psycopg 3: one scenario per kind of
 * backend state, each a row of the conformance table (harness/clients/backend_state.py says what each checks).
 */
function backendStateScenario(group: 'cursors' | 'temp' | 'advisory' | 'identity'): Scenario {
  return {
    name: `backend-${group}`,
    // `deadlineMs` bounds each step of the client (its STEP, 10 s by default), not the whole run.
    run: (url, options: RunOptions = {}) =>
      scenarioRun(
        PYTHON,
        [`${CLIENTS_DIR}backend_state.py`, url, group],
        options.deadlineMs === undefined ? {} : { env: { BACKEND_STATE_STEP_MS: String(options.deadlineMs) } },
      ),
  }
}

export const backendCursorsScenario = backendStateScenario('cursors')
export const backendTempScenario = backendStateScenario('temp')
export const backendAdvisoryScenario = backendStateScenario('advisory')
export const backendIdentityScenario = backendStateScenario('identity')
