// What the server may do on a client's behalf when it takes over one of its messages (COPY, CREATE/DROP DATABASE,
// DISCARD): the BatchRunner hands each takeover this, and the takeover needs nothing else. A takeover that
// changes how the client's next messages are read says so in what it returns (connection/takeover.ts TakeoverEnd).

import type { Logger } from '../../log.ts'
import type { ClientState } from './state.ts'
import type { DatabaseCatalog } from '../session/databases.ts'
import type { Backend } from './backend.ts'

export interface Turn {
  readonly backend: Backend
  readonly client: ClientState
  /** Where databases come from; null: a server with one database, which takes over no database command. */
  readonly databases: DatabaseCatalog | null
  /** The database the client connected to. */
  readonly database: string
  /** A statement of the client's open pipeline ran since it opened (Postgres then refuses DISCARD ALL in it). */
  readonly pipelineExecuted: boolean
  /** A COPY FROM STDIN gathers at most this many bytes. */
  readonly maxCopyBytes: number
  readonly log: Logger
  /** Become the session's owner, waiting behind other clients if need be; throws when the wait is refused. */
  own(): Promise<void>
  /** Run messages as the client's own (waiting for the session, refused as any wait is), then release at rest. */
  run(bytes: Buffer): Promise<void>
  /** The wait for the session was refused (cancel, queue timeout): answer `frame` as Postgres answers a failed statement. */
  refuse(error: unknown, frame: Buffer): void
  /** Release the session if the client is at rest. */
  releaseIfAtRest(): Promise<void>
  /** Give the session up and wait (the queue timeout and a CancelRequest apply) until `wait` ends; then own it again. */
  waitOutside(wait: (stop: Promise<never>) => Promise<void>): Promise<void>
  /** Send bytes to the client. */
  write(bytes: Uint8Array): void
}

/** After a takeover of a command: the client's next messages are dropped until its next Sync, or (null) read as usual. */
export type NextRead = 'discard-until-sync' | null
