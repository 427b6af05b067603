// A client's calls of what answers per backend (advisory locks, pg_cancel_backend, pg_terminate_backend,
// pg_stat_activity): before its statements run, the session is told the context (which client runs, the server's
// clients, this database's locks); what the session's functions then tell the server is acted on here, and taken out
// of the client's replies. See session/server-functions.ts for the session's side.

import { SqlState } from '../../errors.ts'
import { BackendCode } from '../protocol/codes.ts'
import { encodeErrorResponse, errorFields } from '../protocol/backend.ts'
import { SYNC, encodeClose, encodeExecution } from '../protocol/frontend.ts'
import type { LockMode } from '../session/advisory-locks.ts'
import { LOCK_WAIT_MESSAGE, TELL_MESSAGE, contextSql, installStatements, readTold, type ClientActivity, type SessionContext } from '../session/server-functions.ts'
import type { SharedSession } from '../session/session.ts'

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
    frames.push(encodeClose('S', CONTEXT_STATEMENT), encodeExecution(CONTEXT_STATEMENT, CONTEXT_PORTAL, sql), encodeClose('P', CONTEXT_PORTAL))
  }
  frames.push(encodeClose('S', CONTEXT_STATEMENT))
  if (!pipelineOpen) frames.push(SYNC)
  return Buffer.concat(frames)
}

/** What the session is told before this client's statements run (`functions`: their ServerFunctions bits). */
export function contextFor(client: FunctionsClient, session: SharedSession, signaled: ReadonlySet<number>, functions: number): SessionContext {
  const clients = client.serverClients((functions & ServerFunctions.Activity) !== 0)
  return { pid: client.processId, clients, locks: session.advisoryLocks.snapshot(), signaled: [...signaled] }
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
  for (let at = 0; at < reply.length; ) {
    const end = at + 1 + reply.readInt32BE(at + 1)
    if (reply[at] === BackendCode.ErrorResponse && errorFields(reply.subarray(at, end)).message === LOCK_WAIT_MESSAGE) {
      return Buffer.concat([reply.subarray(0, at), error, reply.subarray(end)])
    }
    at = end
  }
  return reply
}
