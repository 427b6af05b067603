// What the server carries out in a client's message's place, as read from its SQL: COPY FROM STDIN (copy-in.ts),
// CREATE/DROP/ALTER DATABASE and the reset (database-commands.ts), DISCARD and DEALLOCATE ALL (discard.ts). A
// prepared statement keeps what it is (statements.ts), so that its every Execute is taken over too.

export interface CopyFromStdin {
  /** The table as written in the statement (quotes kept), for a catalog lookup of its column count. */
  table: string
  /** Column count when the statement lists columns. */
  columns: number | null
  binary: boolean
}

export type DatabaseCommand =
  /** `encoding`: its ENCODING option as written, null if none (database-encoding.ts). */
  | { kind: 'create'; name: string; template: string | null; encoding: string | null }
  | { kind: 'drop'; name: string; ifExists: boolean; force: boolean }
  /** ALTER DATABASE of another database than the client's: run in that database's PGlite (`sql`, as written). */
  | { kind: 'alter'; name: string; rename: boolean; sql: string }

export type DiscardCommand = 'DISCARD ALL' | 'DEALLOCATE ALL' | 'DISCARD TEMP'

/** What the server does instead of, or besides, passing a statement's Execute (or Bind) on to PGlite. */
export type Special =
  | { kind: 'copy'; copy: CopyFromStdin }
  | { kind: 'database'; command: DatabaseCommand }
  | { kind: 'reset' }
  | { kind: 'discard'; command: DiscardCommand }
