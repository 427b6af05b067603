// How a connection ends: which FATAL a failure becomes, what its client is told last, and how long its socket gets to
// flush that before it is destroyed.

import type { Socket } from 'node:net'
import { SqlState, WireError, isPGliteFatal } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { encodeErrorResponse } from '../protocol/backend-messages.ts'
import type { SharedSession } from '../session/session.ts'
import type { ConnectionTrace } from '../trace/trace.ts'
import type { ClientOutput } from './output.ts'

/** A FATAL goodbye gets this long to flush before the socket is destroyed. */
export const CLOSE_GRACE_MS = 2000
/**
 * A client ended by pg_terminate_backend is told at the latest this long after, if its caller's answer is not out (a
 * caller whose statement waits long for the session; the first cancel of a database's statement takes about 1 s).
 */
const GOODBYE_HOLD_MS = 5000
/**
 * Above this many bytes of notifications (and other replies) waiting for a client that does not read, it is closed:
 * Postgres's listener blocks in its write and the notifications queue on disk; ours would queue in server memory.
 */
const NOTIFICATION_BACKLOG_BYTES = 32 << 20
export const BACKLOG_FULL = new WireError(
  'FATAL',
  SqlState.OutOfMemory,
  `terminating connection: more than ${NOTIFICATION_BACKLOG_BYTES >> 20} MB of notifications wait for this client to read them`,
)
/** A slow reader gets longer than the usual grace to read what waits for it, down to the FATAL that explains. */
export const BACKLOG_GRACE_MS = 10_000

/**
 * The FATAL a failure closes the connection with: a WireError as it is; a PGlite that died marks its session dead and
 * every client gets why; anything else is logged and becomes XX000.
 */
export function failureFatal(
  error: unknown,
  log: Logger,
  membership: { readonly session: SharedSession },
): WireError | null {
  if (error instanceof WireError) {
    log.debug('closing client', { sqlstate: error.sqlstate, error: error.message })
    return error
  }
  if (isPGliteFatal(error)) {
    log.error('PGlite failed', { error })
    const { session } = membership
    session.markDead(error)
    return session.dead
  }
  // The pg-gateway rule: the client learns only that something failed; the log gets the details.
  log.error('batch failed', { error })
  return new WireError('FATAL', SqlState.InternalError, 'internal error in pglite-dev-db; see the server log', {
    cause: error,
  })
}

/** More than NOTIFICATION_BACKLOG_BYTES wait for the client to read them: it is to be closed with BACKLOG_FULL. */
export function notificationsPiledUp(socket: Socket, log: Logger): boolean {
  if (socket.writableLength <= NOTIFICATION_BACKLOG_BYTES) return false
  log.warn('client not reading its notifications; closing it', {
    pending: socket.writableLength,
    sqlstate: BACKLOG_FULL.sqlstate,
  })
  return true
}

/**
 * The client is told `error` (unless it is only logged), its output ends, and its socket (the connection's at the
 * time: TLS may have replaced the first) gets `graceMs` to flush.
 */
export function sayGoodbye(
  connection: { readonly socket: Socket },
  output: ClientOutput,
  trace: ConnectionTrace | null,
  error: WireError | null,
  graceMs: number,
): void {
  if (error && !error.logOnly) output.write(encodeErrorResponse(error.severity, error.sqlstate, error.message))
  trace?.close(error)
  output.end()
  if (!connection.socket.destroyed) {
    const grace = setTimeout(() => connection.socket.destroy(), graceMs).unref()
    connection.socket.once('close', () => clearTimeout(grace))
  }
}

/** `goodbye` once `after` resolves, or GOODBYE_HOLD_MS pass. */
export function goodbyeAfter(after: Promise<void>, goodbye: () => void): void {
  let hold: NodeJS.Timeout | undefined
  void Promise.race([after, new Promise<void>((resolve) => (hold = setTimeout(resolve, GOODBYE_HOLD_MS)))]).then(() => {
    clearTimeout(hold)
    goodbye()
  })
}
