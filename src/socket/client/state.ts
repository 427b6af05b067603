// What a client's messages told the server beyond what PGlite itself keeps: its statements and portals, the LISTENs
// and UNLISTENs it sent since it last released the session, and whether it asked for its database to be reset. The
// message handlers write it as they read; the client's backend reads it when the client takes or leaves the session.

import type { ListenCommand } from './listen.ts'
import { Statements } from './statements.ts'

export class ClientState {
  readonly statements: Statements
  /** LISTEN/UNLISTEN statements read since the client last released the session, in order. */
  readonly listenCommands: ListenCommand[] = []
  /** The client called pglite_dev_db.reset(): once it is at rest, the server checks that the call took effect. */
  resetRequested = false

  /** `namespaceId` gives the client's statement names their prefix (its process id). */
  constructor(namespaceId: number) {
    this.statements = new Statements(namespaceId)
  }
}
