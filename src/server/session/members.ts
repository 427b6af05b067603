// What the session knows of the clients that share it: who may hold it, and what it can ask of a connection.

import type { WireError } from '../../errors.ts'

/** What may hold the session: a client, or a combined call of several clients' units (combined-calls.ts). */
export interface SessionHolder {
  /** The process id the client was told in BackendKeyData (named in errors about who holds the session). */
  readonly processId: number
  /** What the client named itself in its startup packet (application_name), for errors that name it. */
  readonly applicationName: string
  /**
   * Since when (performance.now()) the client has held the session idle in a transaction: its last reply was
   * ReadyForQuery saying T or E and it has sent nothing since. Null when it is not (it runs, streams a pipeline or a
   * COPY, or holds nothing).
   */
  readonly idleInTransactionSince: number | null
  /**
   * Another client waits for the session this one holds: if all it holds is an open pipeline that only prepared
   * statements (Parse, Describe, no Bind) and it is not running anything, it gives the session up until it sends more.
   */
  parkIfIdle?(): void
  /** The client closed its socket while its last statements run: they finish, as on Postgres (idle-holder.ts). */
  readonly left?: boolean
  /** Stop the statement it runs, as its CancelRequest would. */
  cancel?(): void
  /**
   * Its socket, lent to the database's thread for the statement running, is read by the server again, so that a
   * client that left is seen (left); false if it is not lent, or the thread reads it already.
   */
  reclaimSocket?(): boolean
}

/** A connection as the session sees it: something that can be told the session is gone, or handed a notification. */
export interface SessionMember extends SessionHolder {
  /** Send `error` (FATAL) and close; given `after`, its work stops now and it is told once `after` resolves. */
  terminate(error: WireError, after?: Promise<void>): Promise<void>
  /** Deliver a NotificationResponse (whole message) to this client. */
  notify(message: Buffer): void
  /** Parse messages that make this client's prepared statements again. */
  preparedStatementFrames(): Buffer[]
  /** Those of preparedStatementFrames() failed to make their statement: tried again when it next takes the session. */
  remakeFailed(frames: readonly Buffer[]): void
}
