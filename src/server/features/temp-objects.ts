// A client's temporary tables, views, sequences and indexes. PGlite's one session has one pg_temp schema, so two
// clients' TEMP TABLE person would collide (42P07) and each would see the other's. While a client holds the session,
// its temporary objects have the names it gave them; when it releases the session they are renamed to names of its
// own (pgdd<id>$<oid>), and renamed back when it next takes it. Statements that name them are planned again after a
// rename (Postgres re-plans on the relation's invalidation), so each client's names reach its own objects. They
// are dropped when the client leaves, as Postgres drops a backend's temporary objects at exit.
// https://www.postgresql.org/docs/current/sql-createtable.html#SQL-CREATETABLE-TEMPORARY

import { encodeQuery } from '../protocol/frontend-messages.ts'
import { SESSION_USER } from './settings-sql.ts'

/** The kinds of relation renamed, each with the word its ALTER and DROP use. */
const KIND_WORDS: Readonly<Record<string, string>> = {
  r: 'TABLE',
  p: 'TABLE',
  v: 'VIEW',
  S: 'SEQUENCE',
  i: 'INDEX',
  I: 'INDEX',
}
const KINDS = Object.keys(KIND_WORDS)
  .map((kind) => `'${kind}'`)
  .join(', ')
/** Names no client gave: other clients' objects while away, and the server's own view (server-functions-session.ts). */
const NOT_CLIENTS = `c.relname !~ '^pgdd[0-9a-z]+\\$' AND NOT (c.relkind = 'v' AND c.relname = 'pg_stat_activity')`

/** The temporary objects with the names a client gave them (those of the client holding the session). */
export const LIST_OWN_TEMP_OBJECTS = encodeQuery(
  `SELECT c.oid::text, c.relname, c.relkind::text FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind IN (${KINDS}) AND ${NOT_CLIENTS}`,
)

/**
 * Drops the temporary objects with the names a client gave them: the leaving (or DISCARD TEMP) client's. A DO block,
 * so that it can stand in for a DISCARD TEMP anywhere (a prepared one, one of several statements in a Query).
 */
export const DROP_OWN_TEMP_OBJECTS_SQL =
  `DO $pgdd$DECLARE r record; BEGIN FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_catalog.pg_class c WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() ` +
  `AND c.relkind IN ('r', 'p', 'v', 'S') AND ${NOT_CLIENTS} ORDER BY c.relkind = 'v' DESC LOOP ` +
  `EXECUTE pg_catalog.format('DROP %s IF EXISTS %s CASCADE', CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel); END LOOP; END$pgdd$`
export const DROP_OWN_TEMP_OBJECTS = encodeQuery(DROP_OWN_TEMP_OBJECTS_SQL)

interface Hidden {
  /** The name it has while the client is away. */
  hidden: string
  /** The name the client gave it. */
  name: string
  kind: string
}

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`

/**
 * The server's renames and drops of a client's objects, as the session's own user: the client may be at rest under a
 * role (SET ROLE, SET SESSION AUTHORIZATION) that does not own them. The transaction gives it back its own after.
 */
const asSessionUser = (statements: string[]): Buffer =>
  encodeQuery(`BEGIN; SET LOCAL SESSION AUTHORIZATION ${SESSION_USER}; ${statements.join('; ')}; COMMIT`)

export class TempObjects {
  readonly #prefix: string
  /** The client's objects under their hidden names (while it does not hold the session). */
  #hidden: Hidden[] = []
  /** Its objects have their own names now: it holds the session, or has just made some. */
  revealed = false
  /** Its SQL named TEMP, TEMPORARY or pg_temp: it may have made temporary objects (looked for at its release). */
  mayMake = false
  /** Its search_path begins with pg_temp: whatever it creates without a schema is temporary, TEMP or not. */
  firstInSearchPath = false

  constructor(processId: number) {
    this.#prefix = `pgdd${processId.toString(36)}$`
  }

  /** The client has temporary objects, hidden while it is away (they get their names back when it takes the session). */
  get hasHidden(): boolean {
    return this.#hidden.length > 0
  }

  /** The renames that hide the objects listed (rows of LIST_OWN_TEMP_OBJECTS: oid, name, kind), now recorded. */
  hide(rows: ReadonlyArray<readonly [string, string, string]>): Buffer | null {
    this.revealed = this.mayMake = false
    if (rows.length === 0) return null
    this.#hidden = rows.map(([oid, name, kind]) => ({ hidden: `${this.#prefix}${oid}`, name, kind }))
    return asSessionUser(
      this.#hidden.map(
        (o) => `ALTER ${KIND_WORDS[o.kind] ?? 'TABLE'} pg_temp.${ident(o.name)} RENAME TO ${ident(o.hidden)}`,
      ),
    )
  }

  /** The renames that give the objects their own names back (the client takes the session), now recorded. */
  reveal(): Buffer | null {
    if (this.#hidden.length === 0) return null
    const renames = this.#hidden.map(
      (o) => `ALTER ${KIND_WORDS[o.kind] ?? 'TABLE'} IF EXISTS pg_temp.${ident(o.hidden)} RENAME TO ${ident(o.name)}`,
    )
    this.#hidden = []
    this.revealed = true
    return asSessionUser(renames)
  }

  /** Drops of the hidden objects, which the client leaves behind; forgotten. */
  dropHidden(): Buffer | null {
    const dropped = this.#hidden.filter((o) => o.kind !== 'i' && o.kind !== 'I')
    this.#hidden = []
    if (dropped.length === 0) return null
    return asSessionUser(
      dropped.map((o) => `DROP ${KIND_WORDS[o.kind] ?? 'TABLE'} IF EXISTS pg_temp.${ident(o.hidden)} CASCADE`),
    )
  }

  /** The objects were dropped in PGlite (DISCARD TEMP, DISCARD ALL): nothing to hide or reveal. */
  forget(): void {
    this.#hidden = []
    this.revealed = false
  }
}
