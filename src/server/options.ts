// The drop-in server's options, and the limits and timeouts among them that bound what one client may do, with their
// defaults: the one table that the drop-in server, startDevDb (databases/options.ts) and the command's --help all read.

import type { PGlite } from '@electric-sql/pglite'
import { createSecureContext } from 'node:tls'
import type { Logger } from '../log.ts'
import type { ConnectionOptions } from './connection/host.ts'
import { scramSecret } from './connection/scram.ts'
import { SpillBudget } from './connection/spill.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { DatabaseCatalog, SessionDb } from './session/databases.ts'

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
    spill:
      limits.maxSpillBytes === 0
        ? null
        : new SpillBudget(
            limits.maxSpillBytes ?? SERVER_DEFAULTS.maxSpillBytes,
            limits.spillDir ?? join(tmpdir(), 'pglite-dev-db-replies'),
          ),
  }
}

export interface PGLiteSocketServerOptions {
  /**
   * The PGlite database instance (or pglite-dev-db's PGlite in a worker thread), or a promise of it: then the server
   * listens at once and a client that connects sooner waits, as with `startupGate`, until it resolves. Servers given
   * the same promise share its session, as servers given the same instance do.
   */
  db: PGlite | SessionDb | Promise<PGlite | SessionDb>
  /** The port to listen on (default: 5432; 0 picks a free port, read it back with `port` or `getServerConn()`) */
  port?: number
  /** The host to bind to (default: 127.0.0.1) */
  host?: string
  /** Unix socket path to bind to (takes precedence over host/port) */
  path?: string
  /** Log every frame in and out as a hex dump (trace level) */
  inspect?: boolean
  /** Log connection and batch events (debug level) */
  debug?: boolean
  /** Stock name of `idleTimeoutMs` (0 to disable, default: 0) */
  idleTimeout?: number
  /** Close a client that is at rest and sends nothing for this long with FATAL 57P05 (0 = never, the default). */
  idleTimeoutMs?: number
  /**
   * A client that holds the session (inside a transaction, a failed transaction, or between Parse and Sync) and
   * sends nothing for this long gets FATAL 25P03, its work is rolled back, and the next client runs.
   * Default 60000; 0 disables it (one stalled client then blocks all others).
   */
  idleInTransactionTimeoutMs?: number
  /**
   * A client that waits this long for the session (another client holds it in a transaction) gets ERROR 55P03 for
   * the statement that waited and stays connected, as after a lock timeout. Default 120000; 0 waits without limit.
   */
  queueTimeoutMs?: number
  /**
   * A statement that waits this long behind another client's transaction while that client sends nothing (idle in
   * transaction) gets ERROR 55P03 naming that client (pid, application_name, how long idle) with a hint; the other
   * transaction is left alone. On Postgres the statement would just run: this is an app sending a query on another
   * pool connection inside an open transaction. Default 5000; 0 waits up to `queueTimeoutMs`.
   */
  idleTransactionWaitMs?: number
  /**
   * Require this password from every client, checked with SCRAM-SHA-256 as Postgres does (psql, libpq and the
   * drivers need no change); a wrong one gets FATAL 28P01. Default: none, any client is let in.
   */
  password?: string
  /** A COPY FROM STDIN is held in memory until complete; past this many bytes it fails with 54000 (default: 256 MB) */
  maxCopyBytes?: number
  /**
   * A client that stops reading the result of a statement outside a transaction block has the rest kept on disk, in
   * `spillDir`, so the statement ends and the others run; it reads it all later. Past this many bytes kept for all
   * clients together, the client that would add more gets FATAL 53400 after its last whole message (default: 1 GiB;
   * 0 keeps nothing on disk: the statement waits for its client, holding the database).
   */
  maxSpillBytes?: number
  /** Where those replies are kept: files unlinked as soon as made (default: the system's temp dir) */
  spillDir?: string
  /** Clients past this many get FATAL 53300 "sorry, too many clients already" after their startup packet (default: 1000) */
  maxConnections?: number
  /**
   * Record every message each client sends and receives, with connects and closes, as JSON lines in this file
   * (truncated when the server starts; flushed and closed by `stop()`). Servers of one process given the same
   * path share the file. `pglite-dev-db trace view FILE` prints it as a timeline. Default: no trace.
   */
  trace?: string
  /** Where logs go (default: warnings and errors on stderr; `debug`/`inspect` raise the level) */
  logger?: Logger
  /**
   * Listen at once, but admit clients only after this resolves: one that connects sooner waits after its
   * StartupMessage (its own connect timeout bounds the wait). If it rejects, or a `db` promise does, every client
   * waiting gets its error as FATAL (a WireError as it is, anything else as XX000 with its message), `start()`
   * rejects with it and the server stops listening.
   */
  startupGate?: Promise<unknown>
  /**
   * Serve several databases: a client's startup `database` picks one from here (created on first use), and CREATE
   * DATABASE / DROP DATABASE / `select pglite_dev_db.reset()` manage them. `db` must be the catalog's main database.
   * Default: none, every database name reaches `db` (the stock behaviour).
   */
  databases?: DatabaseCatalog
  /**
   * With `databases`: whether a client naming a database that does not exist gets a new one (made when it first sends
   * a message that needs it) or FATAL 3D000 "database ... does not exist" at connect, as from Postgres. Default true.
   */
  createDatabaseOnConnect?: boolean
  /**
   * Answer SSLRequest with 'S' and serve clients that ask for TLS (sslmode=require, `ssl: true`) with this certificate
   * and key (PEM); clients that do not ask are served in the clear. Default: none, SSLRequest is answered 'N' (stock).
   */
  tls?: { cert: string | Buffer; key: string | Buffer }
}
