// What the server may do on a client's behalf when it takes over one of its messages (COPY, CREATE/DROP DATABASE,
// DISCARD ALL): the connection hands each takeover this, and the takeover needs nothing else of it.

import type { Logger } from '../../log.ts'
import type { CopyIn } from '../client/copy-in.ts'
import type { ClientBackend } from './backend.ts'
import type { ConnectionHost } from './host.ts'
import type { MessageReader } from './messages.ts'

export interface Turn {
  readonly backend: ClientBackend
  readonly messages: MessageReader
  readonly host: ConnectionHost
  readonly log: Logger
  /** The database the client connected to. */
  readonly database: string
  /** Become the session's owner, waiting behind other clients if need be; throws when the wait is refused. */
  own(): Promise<void>
  /** Run messages as the client's own (waiting for the session, refused as any wait is), then release at rest. */
  run(bytes: Buffer): Promise<void>
  /** The wait for the session was refused (cancel, queue timeout): answer `frame` as Postgres answers a failed statement. */
  refuse(error: unknown, frame: Buffer): void
  /** Release the session if the client is at rest. */
  releaseIfAtRest(): Promise<void>
  /** Send bytes to the client. */
  write(bytes: Uint8Array): void
  /** Drop the client's messages until its next Sync, as Postgres does after an error in the extended protocol. */
  discardUntilSync(): void
  /** The COPY FROM STDIN gathering the client's data, if one is. */
  copy: CopyIn | null
}
