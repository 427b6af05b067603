// What the server carries out in a client's message's place, as read from its SQL: COPY FROM STDIN (copy-in.ts),
// CREATE/DROP/ALTER DATABASE and the reset (database-commands.ts), DISCARD and DEALLOCATE ALL (discard.ts). A
// prepared statement keeps what it is (statements.ts), so that its every Execute is taken over too.

import type { WireError } from '../../errors.ts'

export interface CopyFromStdin {
  /** The table as written in the statement (quotes kept), for a catalog lookup of its column count. */
  table: string
  /** Column count when the statement lists columns. */
  columns: number | null
  binary: boolean
}

/** CREATE DATABASE's options, as far as the server acts on them or Postgres refuses them. */
export interface CreateOptions {
  /** TEMPLATE, unless it names a built-in template or DEFAULT (null). */
  template: string | null
  /** ENCODING as written (a name, or digits); null if none or DEFAULT. */
  encoding: string | null
  /** OWNER and TABLESPACE, which must exist (in the client's database: every database here has its own roles). */
  owner: string | null
  tablespace: string | null
  /** What Postgres refuses before it looks anything up: the option list itself, ENCODING's name, a value's type. */
  early: WireError | null
  /** STRATEGY's refusal, which Postgres gives once the template was found. */
  strategy: WireError | null
  /** The WARNINGs Postgres sends as it reads the list (LOCATION), as NoticeResponses. */
  warnings: Buffer[]
}

export type DatabaseCommand =
  /** With its options, and what Postgres would refuse in them (database-options.ts). */
  | ({ kind: 'create'; name: string } & CreateOptions)
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
