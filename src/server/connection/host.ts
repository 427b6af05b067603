// What a connection needs from the server that accepted it: the session of the main database, the catalog of the
// others, the options that bound what one client may do, and the hooks for admission, cancel and close.

import type { SpillBudget } from './spill.ts'
import type { WireError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import type { DatabaseCatalog } from '../session/databases.ts'
import type { ClientActivity } from '../features/server-functions-session.ts'
import type { SharedSession, SessionMember } from '../session/session.ts'
import type { ConnectionTrace, TraceFile } from '../trace/trace.ts'
import type { SecureContext } from 'node:tls'
import type { ScramSecret } from './scram.ts'

export interface ConnectionOptions {
  /** A COPY FROM STDIN gathers at most this many bytes before it fails with 54000. */
  maxCopyBytes: number
  /** Reap a client that holds the session (open pipeline or transaction) and sends nothing this long: FATAL 25P03. 0 = never. */
  idleInTransactionTimeoutMs: number
  /** Close a client at rest that sends nothing this long: FATAL 57P05. 0 = never. */
  idleTimeoutMs: number
  /** A client waiting longer than this for the session gets ERROR 55P03 for that work and stays connected. 0 = never. */
  queueTimeoutMs: number
  /** A statement waiting this long behind another client's idle transaction gets ERROR 55P03 naming it. 0 = never. */
  idleTransactionWaitMs: number
  /** Log every frame in and out as a hex dump (at trace level). */
  inspect: boolean
  /** Clients must prove they know this password with SCRAM-SHA-256 before anything else. Null: no password. */
  password: ScramSecret | null
  /** A client naming a database the catalog does not hold gets a new one (true) or FATAL 3D000 (false). */
  createDatabaseOnConnect: boolean
  /** SSLRequest is answered 'S' and the connection goes on over TLS with this; null: answered 'N'. */
  tls: SecureContext | null
  /** Where replies that clients do not read wait on disk, and how much of them (spill.ts); null: they wait in the database. */
  spill: SpillBudget | null
}

/** A connection as its server sees it. */
export interface ServedConnection extends SessionMember {
  readonly secretKey: number
  readonly startupParams: ReadonlyMap<string, string>
  /** Batches read and not yet run. */
  readonly queuedBatches: number
  /** The client is not reading its replies, so its next batch waits. */
  readonly blockedOnOutput: boolean
  /** `lent`: what it sends is read by its database's thread now (engine/lent-reads.ts). */
  readonly output: { readonly lent: boolean }
  /** A CancelRequest with this connection's key arrived (or a pg_cancel_backend of it). */
  cancel(): void
  /** What pg_stat_activity shows of it (`full`), or only its pid. */
  activity(full: boolean): ClientActivity
}

export interface ConnectionHost {
  /** The main database's session: every client's until its startup packet names another database. */
  readonly session: SharedSession
  /** Where the other databases come from; null: one database, whatever name a client gives. */
  readonly databases: DatabaseCatalog | null
  /** The session of database `name` (opened, or created from the template, on first use). */
  openSession(name: string): Promise<SharedSession>
  readonly log: Logger
  readonly options: ConnectionOptions
  /** Where this connection's frames are recorded (--trace), if anywhere. */
  readonly trace?: TraceFile | null
  /**
   * While the server starts (the main database is not ready: its session has no startup prefix yet): resolves once
   * clients can be let in (null), or with the error that refuses them all. Absent: such a client gets FATAL 57P03.
   */
  started?(): Promise<WireError | null>
  /** Called with the StartupMessage read; a returned error refuses the client (e.g. 53300). */
  admit(connection: ServedConnection): WireError | null
  /** A CancelRequest arrived with this process id and key. */
  cancel(processId: number, secretKey: number): void
  /** The clients admitted, every database's (pg_stat_activity, pg_cancel_backend, pg_terminate_backend). */
  clients(): ServedConnection[]
  closed(connection: ServedConnection): void
}

export type { ConnectionTrace }
