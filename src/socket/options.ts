// The limits and timeouts that bound what one client may do, with their defaults: the one table that the drop-in
// server, startDevDb (host/options.ts) and the command's --help all read.

import { createSecureContext } from 'node:tls'
import type { ConnectionOptions } from './connection/host.ts'
import { scramSecret } from './connection/scram.ts'
import { SpillBudget } from './connection/spill.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const SERVER_DEFAULTS = {
  /** Far above any pool, so only a runaway client meets it. */
  maxConnections: 1000,
  /** A client holding the session idle this long is blocking everyone else. 0: never reaped. */
  idleInTransactionTimeoutMs: 60_000,
  /**
   * Longer than the idle-in-transaction timeout, so a holder that stalled is reaped (and the waiters run) before
   * anyone waiting gives up; what remains is a holder that keeps working this long. 0: wait without limit.
   */
  queueTimeoutMs: 120_000,
  /**
   * A statement waiting behind another client's transaction that sits idle (its client sends nothing) most often
   * waits for its own app: a query sent on another pool connection inside an open transaction, which on Postgres
   * would just run. Seconds, so that such an app fails fast and says why. 0: wait up to the queue timeout.
   */
  idleTransactionWaitMs: 5_000,
  /** Healthy idle pool connections outside a transaction are never closed by default. */
  idleTimeoutMs: 0,
  /** PGlite needs a whole COPY FROM STDIN in memory at once. */
  maxCopyBytes: 256 * 2 ** 20,
  /** Replies clients have not read, kept on disk so that their statements end (connection/spill.ts): all clients' together. */
  maxSpillBytes: 2 ** 30,
} as const

export const DEFAULT_MAX_CONNECTIONS: number = SERVER_DEFAULTS.maxConnections
export const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS: number = SERVER_DEFAULTS.idleInTransactionTimeoutMs
export const DEFAULT_QUEUE_TIMEOUT_MS: number = SERVER_DEFAULTS.queueTimeoutMs
export const DEFAULT_MAX_COPY_BYTES: number = SERVER_DEFAULTS.maxCopyBytes

/** What a server's options say about its clients; unset ones take SERVER_DEFAULTS. */
export interface ClientLimits {
  idleTimeoutMs?: number | undefined
  idleInTransactionTimeoutMs?: number | undefined
  queueTimeoutMs?: number | undefined
  idleTransactionWaitMs?: number | undefined
  maxCopyBytes?: number | undefined
  maxSpillBytes?: number | undefined
  spillDir?: string | undefined
  inspect?: boolean | undefined
  password?: string | undefined
  createDatabaseOnConnect?: boolean | undefined
  tls?: TlsOptions | undefined
}

/** A certificate and its private key, PEM, for clients that ask for TLS (SSLRequest). */
export interface TlsOptions {
  cert: string | Buffer
  key: string | Buffer
}

/** The options every connection of a server works with. */
export function connectionOptions(limits: ClientLimits): ConnectionOptions {
  return {
    idleTimeoutMs: limits.idleTimeoutMs ?? SERVER_DEFAULTS.idleTimeoutMs,
    idleInTransactionTimeoutMs: limits.idleInTransactionTimeoutMs ?? SERVER_DEFAULTS.idleInTransactionTimeoutMs,
    queueTimeoutMs: limits.queueTimeoutMs ?? SERVER_DEFAULTS.queueTimeoutMs,
    idleTransactionWaitMs: limits.idleTransactionWaitMs ?? SERVER_DEFAULTS.idleTransactionWaitMs,
    maxCopyBytes: limits.maxCopyBytes ?? SERVER_DEFAULTS.maxCopyBytes,
    inspect: limits.inspect ?? false,
    password: limits.password ? scramSecret(limits.password) : null,
    createDatabaseOnConnect: limits.createDatabaseOnConnect ?? true,
    tls: limits.tls ? createSecureContext({ cert: limits.tls.cert, key: limits.tls.key }) : null,
    spill: limits.maxSpillBytes === 0 ? null : new SpillBudget(limits.maxSpillBytes ?? SERVER_DEFAULTS.maxSpillBytes, limits.spillDir ?? join(tmpdir(), 'pglite-dev-db-replies')),
  }
}
