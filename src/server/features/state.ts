// What a client's messages told the server beyond what PGlite itself keeps: its statements and portals, the LISTENs
// and UNLISTENs it sent since it last released the session, and whether it asked for its database to be reset. The
// message handlers write it as they read; the client's backend reads it when the client takes or leaves the session.

import type { ListenCommand } from './listen.ts'
import { Statements } from './statements.ts'
import { TempObjects } from './temp-objects.ts'

export class ClientState {
  readonly statements: Statements
  /** Its temporary tables, views and sequences, under names of its own while it is away. */
  readonly temp: TempObjects
  /** LISTEN/UNLISTEN statements read since the client last released the session, in order. */
  readonly listenCommands: ListenCommand[] = []
  /** The client called pglite_dev_db.reset(): once it is at rest, the server checks that the call took effect. */
  resetRequested = false
  /** The client's SQL PREPAREd a statement that calls set_config(): its EXECUTEs may change settings too. */
  preparesSetConfig = false
  /** Extensions the client's next statements CREATE: their files are loaded before they run. */
  readonly extensionsWanted: string[] = []
  /**
   * pg_cancel_backend / pg_terminate_backend of pids written in the client's SQL: sent when read, before the
   * statement waits its turn (the target may be the one it waits for); the statement's own call then sends none again.
   */
  readonly signals: Array<{ op: 'cancel' | 'terminate'; pid: number }> = []
  readonly signaledEarly = new Set<number>()

  /** The process id the client was told: its statement names' prefix, and what pg_backend_pid() answers it. */
  readonly processId: number

  constructor(processId: number) {
    this.processId = processId
    this.statements = new Statements(processId)
    this.temp = new TempObjects(processId)
  }
}
