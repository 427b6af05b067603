// Functions and views whose answer depends on which backend asks: on PGlite's one session every client would be the
// same backend. pg_backend_pid() becomes the client's own process id; the advisory lock functions, pg_cancel_backend
// and pg_terminate_backend become the server's own versions in pg_temp (server-functions-session.ts), which read
// what the server tells the session about its clients; pg_stat_activity needs no rewrite (a temporary view of that
// name comes first in the search path) but that same knowledge. Before a client's statements that call them run, the
// session is told the context (which client runs, the server's clients, this database's locks); what the session's
// functions then tell the server is acted on here, and taken out of the client's replies.

import { statements, type Token } from '../sql/tokens.ts'
import { SqlState } from '../../errors.ts'
import { BackendCode } from '../protocol/codes.ts'
import { encodeErrorResponse, errorFields, hasMessage } from '../protocol/backend-messages.ts'
import { SYNC, encodeClose, encodeExecution } from '../protocol/frontend-messages.ts'
import type { LockMode } from '../session/advisory-locks.ts'
import {
  LOCK_WAIT_MESSAGE,
  TELL_MESSAGE,
  contextSql,
  installStatements,
  readTold,
  type ClientActivity,
  type SessionContext,
} from './server-functions-session.ts'
import type { SharedSession } from '../session/session.ts'

/** Calls the server answers through its own functions of the same name in pg_temp. */
const TEMP_FUNCTIONS = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
  'pg_cancel_backend',
  'pg_terminate_backend',
])
/** Those of them that wait for another client's lock. */
const WAITING_FUNCTIONS = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
])

/** Statements whose rows name their columns, and that allow a subquery wherever an expression goes. */
const ROW_STATEMENTS = new Set(['select', 'with', 'values', 'insert', 'update', 'delete', 'merge'])

/** A pid written out, or a parameter, perhaps cast to an integer type: `(12345)`, `($1)`, `($1::int)`. */
const PID_ARGUMENT =
  /^\s*(?:(\d{1,10})|\$(\d{1,5})(?:\s*::\s*(?:pg_catalog\s*\.\s*)?(?:int|int4|integer|int8|bigint))?)\s*[),]/i

export interface ServerFunctionUse {
  /** The SQL text with each call rewritten. */
  sql: string
  /** The session must know the server's clients and locks before it runs (see features/server-functions-session.ts). */
  needsContext: boolean
  /** It reads pg_stat_activity: the session must know what each client does, too. */
  readsActivity: boolean
  /** A call may wait for a lock another client holds. */
  mayWait: boolean
  /**
   * pg_cancel_backend / pg_terminate_backend of a pid written in the text, or given as a parameter (its number): done
   * before the statement waits its turn.
   */
  signals: SignalArgument[]
}

/** The pid a pg_cancel_backend or pg_terminate_backend call is given: written out, or parameter `param` (1-based). */
export type SignalArgument = { op: 'cancel' | 'terminate'; pid: number } | { op: 'cancel' | 'terminate'; param: number }

const isWord = (token: Token | undefined, text: string): boolean => token?.kind === 'word' && token.text === text
const isPunct = (token: Token | undefined, text: string): boolean => token?.kind === 'other' && token.text === text

/** The calls of such functions in `sql` rewritten for the client with process id `processId`; null if it has none. */
export function rewriteServerFunctions(sql: string, processId: number): ServerFunctionUse | null {
  let out = ''
  let from = 0
  let needsContext = false
  let readsActivity = false
  let mayWait = false
  let found = false
  const signals: ServerFunctionUse['signals'] = []
  for (const tokens of statements(sql)) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!
      if (token.kind !== 'word' || !token.text.startsWith('pg_')) continue
      // pg_catalog.name: the qualified name is rewritten whole.
      const qualified = i >= 2 && isPunct(tokens[i - 1], '.') && isWord(tokens[i - 2], 'pg_catalog')
      const start = qualified ? tokens[i - 2]!.start : token.start
      const isCall = isPunct(tokens[i + 1], '(')
      let replacement: string | null = null
      if (isCall && token.text === 'pg_backend_pid' && isPunct(tokens[i + 2], ')')) {
        // A scalar subquery keeps the column name Postgres gives the call (`pg_backend_pid`, where a cast would give
        // `int4`), in the statements that return rows; elsewhere (a DEFAULT, CALL and EXECUTE arguments, COPY) a
        // subquery is not allowed, and no column is named.
        const first = tokens[0]
        const named = isPunct(first, '(') || (first?.kind === 'word' && ROW_STATEMENTS.has(first.text))
        out +=
          sql.slice(from, start) +
          (named ? `(SELECT ${processId}::pg_catalog.int4 AS pg_backend_pid)` : `(${processId}::pg_catalog.int4)`)
        from = tokens[i + 2]!.end
        found = true
        i += 2
        continue
      }
      if (isCall && TEMP_FUNCTIONS.has(token.text)) {
        replacement = `pg_temp.${token.text}`
        mayWait ||= WAITING_FUNCTIONS.has(token.text)
        // A pid written out, pg_cancel_backend(12345), or a parameter, ($1) (the lexer reads digits one by one: from the text).
        const argument =
          token.text === 'pg_cancel_backend' || token.text === 'pg_terminate_backend'
            ? PID_ARGUMENT.exec(sql.slice(tokens[i + 1]!.end))
            : null
        const op = token.text === 'pg_cancel_backend' ? 'cancel' : 'terminate'
        if (argument)
          signals.push(
            argument[1] !== undefined ? { op, pid: Number(argument[1]) } : { op, param: Number(argument[2]) },
          )
      } else if (!isCall && token.text === 'pg_stat_activity') {
        // Unqualified, the temporary view is found first; qualified, it is named.
        if (qualified) replacement = 'pg_temp.pg_stat_activity'
        needsContext = readsActivity = found = true
      }
      if (replacement === null) continue
      out += sql.slice(from, start) + replacement
      from = token.end
      needsContext = found = true
    }
  }
  return found ? { sql: out + sql.slice(from), needsContext, readsActivity, mayWait, signals } : null
}

/** Segment flags (Segment.functions): what its statements need. */
export const ServerFunctions = {
  /** The session must be told the context first. */
  Context: 1,
  /** A lock may have to wait for another client. */
  MayWait: 2,
  /**
   * It calls set_config(), which may change a setting for the session (its third argument false): the client's
   * settings are read back after it, as after a SET (SessionChange.Settings).
   */
  Settings: 4,
  /** It reads pg_stat_activity: the context tells what each client does (else only who they are). */
  Activity: 8,
} as const

/** The bits that need the session's functions and their replies read (FunctionReplies): not Settings. */
export const NEEDS_FUNCTION_REPLIES = ServerFunctions.Context | ServerFunctions.MayWait

/** A pg_advisory_lock that found the lock taken: what to wait for. */
export interface LockWait {
  key: string
  mode: LockMode
  holder: number
}

/** What the calls of one client need of its connection. */
export interface FunctionsClient {
  readonly processId: number
  /** Every client of the server, as pg_stat_activity shows them (`full`), or only their pids. */
  serverClients(full: boolean): ClientActivity[]
  /** pg_cancel_backend or pg_terminate_backend of another client of the server; false if none has that pid. */
  signalClient(processId: number, op: 'cancel' | 'terminate'): boolean
  /** The call that told pg_terminate_backend(processId) has ended: its answer is out, the client ended may be told. */
  answered(processId: number): void
}

const CONTEXT_STATEMENT = Buffer.from('pgdd.context')
const CONTEXT_PORTAL = Buffer.from('pgdd.context')

/**
 * The messages that tell the session `context` (and make the functions first, if `install`): a named
 * Parse/Bind/Execute per statement, which leaves the client's unnamed statement and portal alone (a simple Query
 * would drop the unnamed statement the client's unit may bind next). In an open pipeline without Sync, which stays
 * inside its transaction; at rest, with one.
 */
export function contextMessages(context: SessionContext, install: boolean, pipelineOpen: boolean): Buffer {
  const frames: Buffer[] = []
  for (const sql of [...(install ? installStatements() : []), contextSql(context)]) {
    frames.push(
      encodeClose('S', CONTEXT_STATEMENT),
      encodeExecution(CONTEXT_STATEMENT, CONTEXT_PORTAL, sql),
      encodeClose('P', CONTEXT_PORTAL),
    )
  }
  frames.push(encodeClose('S', CONTEXT_STATEMENT))
  if (!pipelineOpen) frames.push(SYNC)
  return Buffer.concat(frames)
}

/** What the session is told before this client's statements run (`functions`: their ServerFunctions bits). */
export function contextFor(
  client: FunctionsClient,
  session: SharedSession,
  signaled: ReadonlySet<number>,
  functions: number,
): SessionContext {
  const clients = client.serverClients((functions & ServerFunctions.Activity) !== 0)
  return { pid: client.processId, clients, locks: session.advisoryLocks.snapshot(), signaled: [...signaled] }
}

/**
 * Tell the session `context` (who runs now, the server's clients, this database's locks) through `capture`, and make
 * the server's functions there the first time.
 */
export async function tellContext(
  capture: (bytes: Uint8Array) => Promise<Buffer>,
  session: SharedSession,
  context: SessionContext,
  pipelineOpen: boolean,
): Promise<void> {
  const install = !session.serverFunctionsInstalled
  const reply = await capture(contextMessages(context, install, pipelineOpen))
  if (install && !hasMessage(reply, BackendCode.ErrorResponse)) session.serverFunctionsInstalled = true
}

/**
 * Reads the NoticeResponse and ErrorResponse messages of one call that used the functions: what they told the
 * server is done and dropped from the reply; a lock that must wait is noted (and, if `streaming`, its error made
 * one the client can read: its wait cannot happen here).
 */
export class FunctionReplies {
  /** The lock the call had to wait for, if any. */
  lockWait: LockWait | null = null
  /** The client asked for its own end (pg_terminate_backend of itself): the rest of the call goes nowhere. */
  terminatingSelf = false
  /** Other clients the call ended by pg_terminate_backend: told once the call is over (FunctionsClient.answered). */
  readonly terminated: number[] = []

  constructor(
    readonly client: FunctionsClient,
    readonly session: SharedSession,
    /** Pids the client's SQL signaled already (batch.ts #signalEarly): not signaled twice. */
    readonly signaledEarly: Set<number>,
  ) {}

  /** The message as the client gets it, or null when it is the server's alone. */
  read(message: Buffer, streaming: boolean): Buffer | null {
    if (this.terminatingSelf) return null
    const code = message[0]
    if (code !== BackendCode.NoticeResponse && code !== BackendCode.ErrorResponse) return message
    const fields = errorFields(message)
    if (code === BackendCode.NoticeResponse && fields.message === TELL_MESSAGE) {
      this.#act(fields.detail)
      return null
    }
    if (code === BackendCode.ErrorResponse && fields.message === LOCK_WAIT_MESSAGE) {
      const [key, mode, holder] = JSON.parse(fields.detail) as [string, LockMode, number]
      this.lockWait = { key, mode, holder }
      return streaming ? cannotWaitHere(this.lockWait) : message
    }
    return message
  }

  #act(detail: string): void {
    const told = readTold(detail)
    if (!told) return
    const locks = this.session.advisoryLocks
    const self = this.client.processId
    switch (told.op) {
      case 'lock':
        locks.acquired(self, told.key, told.mode, told.level)
        break
      case 'unlock':
        locks.released(self, told.key, told.mode)
        break
      case 'unlock_all':
        locks.releasedAll(self)
        break
      case 'cancel':
      case 'terminate':
        if (told.pid === self) {
          this.terminatingSelf = told.op === 'terminate'
          break
        }
        if (!this.signaledEarly.delete(told.pid)) this.client.signalClient(told.pid, told.op)
        if (told.op === 'terminate') this.terminated.push(told.pid)
        break
    }
  }
}

/**
 * The answer to a lock that would wait inside a transaction block: the client holds the session there, so the
 * holder could never run to release the lock. Postgres would wait; waiting here would never end.
 */
export function cannotWaitHere(wait: LockWait): Buffer {
  return encodeErrorResponse(
    'ERROR',
    SqlState.LockNotAvailable,
    `could not obtain advisory lock ${wait.key}: client ${wait.holder} holds it, and a statement inside a transaction block cannot wait for another client here`,
    undefined,
    'pglite-dev-db runs one transaction at a time, so the holder cannot run while this transaction is open: take the lock before BEGIN (it is then waited for), or use pg_try_advisory_lock.',
  )
}

/** The ErrorResponse in `reply` for a lock that had to wait, replaced by `error`. */
export function replaceLockWaitError(reply: Buffer, error: Buffer): Buffer {
  for (let at = 0; at < reply.length;) {
    const end = at + 1 + reply.readInt32BE(at + 1)
    if (reply[at] === BackendCode.ErrorResponse && errorFields(reply.subarray(at, end)).message === LOCK_WAIT_MESSAGE) {
      return Buffer.concat([reply.subarray(0, at), error, reply.subarray(end)])
    }
    at = end
  }
  return reply
}
