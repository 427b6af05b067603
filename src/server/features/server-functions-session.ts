// The session's own versions of what answers per backend (see features/server-functions.ts): advisory lock functions,
// pg_cancel_backend, pg_terminate_backend and a pg_stat_activity view, made in pg_temp (so nothing shows in the
// user's schema, a dump or a migration diff). They read what the server last told the session (the `context`
// setting: which client runs, every client of the server, every advisory lock held) and tell the server what they
// did in a NOTICE the server takes out of the client's replies; a lock that must wait fails with an ERROR the
// server turns into a wait outside the session.

import type { LockLevel, LockMode } from '../session/advisory-locks.ts'
import { literal } from '../sql/literal.ts'

/** The setting that carries the context; names under pglite_dev_db. are never a client's (features/settings.ts). */
const CONTEXT = 'pglite_dev_db.context'
/** The message of the NOTICE a function tells the server with (its DETAIL is JSON). */
export const TELL_MESSAGE = 'pglite_dev_db'
/** The message of the ERROR of a lock that must wait (its DETAIL: [key, mode, holder]). */
export const LOCK_WAIT_MESSAGE = 'pglite_dev_db: advisory lock wait'

/** One client as pg_stat_activity shows it (its pid alone where no statement reads the view). Times are ISO 8601. */
export interface ClientActivity {
  pid: number
  datname?: string
  usename?: string
  application_name?: string
  client_addr?: string | null
  client_port?: number | null
  backend_start?: string
  xact_start?: string | null
  query_start?: string | null
  state_change?: string | null
  wait_event_type?: string | null
  wait_event?: string | null
  state?: string
  query?: string
}

export interface SessionContext {
  /** The client whose statements run now. */
  pid: number
  /** Every client of the server (any database). */
  clients: ClientActivity[]
  /** This database's advisory locks: [key, holder, mode, level] per acquisition. */
  locks: Array<[string, number, LockMode, LockLevel]>
  /** Pids this client's statement signaled before it ran (gone by now, perhaps): true is their answer. */
  signaled: number[]
}

/** What a function told the server. */
export type Told =
  | { op: 'lock'; key: string; mode: LockMode; level: LockLevel }
  | { op: 'unlock'; key: string; mode: LockMode }
  | { op: 'unlock_all' }
  | { op: 'cancel' | 'terminate'; pid: number }

/** Read the DETAIL of a TELL_MESSAGE notice. */
export function readTold(detail: string): Told | null {
  const value = JSON.parse(detail) as unknown[]
  switch (value[0]) {
    case 'lock':
      return {
        op: 'lock',
        key: String(value[1]),
        mode: value[2] === 's' ? 's' : 'x',
        level: value[3] === 'xact' ? 'xact' : 'session',
      }
    case 'unlock':
      return { op: 'unlock', key: String(value[1]), mode: value[2] === 's' ? 's' : 'x' }
    case 'unlock_all':
      return { op: 'unlock_all' }
    case 'cancel':
    case 'terminate':
      return { op: value[0], pid: Number(value[1]) }
    default:
      return null
  }
}

/** The statement that tells the session the context. */
export function contextSql(context: SessionContext): string {
  return `SELECT pg_catalog.set_config(${literal(CONTEXT)}, ${literal(JSON.stringify(context))}, false)`
}

const ctx = `pg_temp.pglite_dev_db_context()`
const tell = (what: string): string => `PERFORM pg_temp.pglite_dev_db_tell(${what});`

/** A lock function's body: key and mode from its arguments, then the shared decision. */
function lockFunctions(): string[] {
  const out: string[] = []
  const keys = [
    ['k bigint', 'k::text'],
    ['a integer, b integer', "a::text || ',' || b::text"],
  ] as const
  for (const [args, key] of keys) {
    for (const [level, infix] of [
      ['session', ''],
      ['xact', 'xact_'],
    ] as const) {
      for (const [mode, suffix] of [
        ['x', ''],
        ['s', '_shared'],
      ] as const) {
        out.push(
          plpgsql(
            `pg_advisory_${infix}lock${suffix}(${args})`,
            'void',
            `PERFORM pg_temp.pglite_dev_db_lock(${key}, '${mode}', '${level}', true);`,
          ),
        )
        out.push(
          plpgsql(
            `pg_try_advisory_${infix}lock${suffix}(${args})`,
            'boolean',
            `RETURN pg_temp.pglite_dev_db_lock(${key}, '${mode}', '${level}', false);`,
          ),
        )
      }
    }
    for (const [mode, suffix] of [
      ['x', ''],
      ['s', '_shared'],
    ] as const) {
      out.push(
        plpgsql(
          `pg_advisory_unlock${suffix}(${args})`,
          'boolean',
          `RETURN pg_temp.pglite_dev_db_unlock(${key}, '${mode}');`,
        ),
      )
    }
  }
  return out
}

function plpgsql(signature: string, returns: string, body: string, declare = ''): string {
  return `CREATE OR REPLACE FUNCTION pg_temp.${signature} RETURNS ${returns} LANGUAGE plpgsql AS $pgdd$${declare ? `DECLARE ${declare} ` : ''}BEGIN ${body} END$pgdd$`
}

const NOTICES_SENT = `('debug5', 'debug4', 'debug3', 'debug2', 'debug1', 'log', 'notice')`

/** Everything the session needs, made in pg_temp; run once per session, and again after a DISCARD TEMP or ALL. */
const INSTALL_STATEMENTS = [
  `CREATE OR REPLACE FUNCTION pg_temp.pglite_dev_db_context() RETURNS jsonb LANGUAGE sql VOLATILE AS $pgdd$SELECT coalesce(nullif(pg_catalog.current_setting('${CONTEXT}', true), ''), '{}')::jsonb$pgdd$`,
  // The notice reaches the server whatever client_min_messages the client chose.
  plpgsql(
    'pglite_dev_db_tell(what jsonb)',
    'void',
    `IF level NOT IN ${NOTICES_SENT} THEN PERFORM pg_catalog.set_config('client_min_messages', 'notice', true); END IF; ` +
      `RAISE NOTICE USING MESSAGE = '${TELL_MESSAGE}', DETAIL = what::text; ` +
      `IF level NOT IN ${NOTICES_SENT} THEN PERFORM pg_catalog.set_config('client_min_messages', level, true); END IF;`,
    `level text := pg_catalog.current_setting('client_min_messages');`,
  ),
  plpgsql(
    'pglite_dev_db_lock(key text, mode text, level text, wait boolean)',
    'boolean',
    `SELECT (l->>1)::integer INTO holder FROM jsonb_array_elements(coalesce(ctx->'locks', '[]')) AS l ` +
      `WHERE l->>0 = key AND (l->>1)::integer IS DISTINCT FROM me AND (l->>2 = 'x' OR mode = 'x') LIMIT 1; ` +
      `IF holder IS NOT NULL THEN ` +
      `IF wait THEN RAISE EXCEPTION USING ERRCODE = '55P03', MESSAGE = '${LOCK_WAIT_MESSAGE}', DETAIL = jsonb_build_array(key, mode, holder)::text; END IF; ` +
      `RETURN false; END IF; ` +
      `PERFORM pg_catalog.set_config('${CONTEXT}', jsonb_set(ctx, '{locks}', coalesce(ctx->'locks', '[]') || jsonb_build_array(jsonb_build_array(key, me, mode, level)))::text, false); ` +
      `${tell(`jsonb_build_array('lock', key, mode, level)`)} RETURN true;`,
    `ctx jsonb := ${ctx}; me integer := (ctx->>'pid')::integer; holder integer;`,
  ),
  plpgsql(
    'pglite_dev_db_unlock(key text, mode text)',
    'boolean',
    `SELECT i - 1 INTO at FROM jsonb_array_elements(coalesce(ctx->'locks', '[]')) WITH ORDINALITY AS e(l, i) ` +
      `WHERE l->>0 = key AND (l->>1)::integer = me AND l->>2 = mode AND l->>3 = 'session' LIMIT 1; ` +
      `IF at IS NULL THEN RAISE WARNING 'you don''t own a lock of type %', CASE mode WHEN 'x' THEN 'ExclusiveLock' ELSE 'ShareLock' END; RETURN false; END IF; ` +
      `PERFORM pg_catalog.set_config('${CONTEXT}', jsonb_set(ctx, '{locks}', (ctx->'locks') - at)::text, false); ` +
      `${tell(`jsonb_build_array('unlock', key, mode)`)} RETURN true;`,
    `ctx jsonb := ${ctx}; me integer := (ctx->>'pid')::integer; at integer;`,
  ),
  ...lockFunctions(),
  plpgsql(
    'pg_advisory_unlock_all()',
    'void',
    `PERFORM pg_catalog.set_config('${CONTEXT}', jsonb_set(ctx, '{locks}', (SELECT coalesce(jsonb_agg(l), '[]') FROM jsonb_array_elements(coalesce(ctx->'locks', '[]')) AS l ` +
      `WHERE NOT ((l->>1)::integer = me AND l->>3 = 'session')))::text, false); ${tell(`jsonb_build_array('unlock_all')`)}`,
    `ctx jsonb := ${ctx}; me integer := (ctx->>'pid')::integer;`,
  ),
  ...(['cancel', 'terminate'] as const).map((op) =>
    plpgsql(
      op === 'cancel'
        ? 'pg_cancel_backend(pid integer)'
        : 'pg_terminate_backend(pid integer, timeout bigint DEFAULT 0)',
      'boolean',
      `IF pid IS NULL THEN RETURN NULL; END IF; ` +
        `IF NOT EXISTS (SELECT FROM jsonb_array_elements(coalesce(ctx->'clients', '[]')) AS c WHERE (c->>'pid')::integer = pid) ` +
        `AND NOT coalesce(ctx->'signaled', '[]') @> pg_catalog.to_jsonb(pid) THEN ` +
        `RAISE WARNING 'PID % is not a PostgreSQL backend process', pid; RETURN false; END IF; ` +
        (op === 'cancel'
          ? `IF pid = (ctx->>'pid')::integer THEN RAISE EXCEPTION USING ERRCODE = '57014', MESSAGE = 'canceling statement due to user request'; END IF; `
          : '') +
        `${tell(`jsonb_build_array('${op}', pid)`)} RETURN true;`,
      `ctx jsonb := ${ctx};`,
    ),
  ),
  // Unqualified, pg_stat_activity finds this view before pg_catalog's (pg_temp comes first for relations). The client
  // that reads it is the one running: its times are the session's own.
  `CREATE OR REPLACE TEMP VIEW pg_stat_activity AS SELECT s.datid, c.datname::name AS datname, c.pid, NULL::integer AS leader_pid, s.usesysid, ` +
    `c.usename::name AS usename, c.application_name, c.client_addr::inet AS client_addr, NULL::text AS client_hostname, c.client_port, ` +
    `c.backend_start, CASE WHEN c.pid = me THEN s.xact_start ELSE c.xact_start END AS xact_start, ` +
    `CASE WHEN c.pid = me THEN coalesce(s.query_start, c.query_start) ELSE c.query_start END AS query_start, ` +
    `CASE WHEN c.pid = me THEN coalesce(s.query_start, c.state_change) ELSE c.state_change END AS state_change, ` +
    `c.wait_event_type, c.wait_event, c.state, NULL::xid AS backend_xid, NULL::xid AS backend_xmin, NULL::bigint AS query_id, ` +
    `c.query, 'client backend'::text AS backend_type ` +
    `FROM (SELECT (${ctx}->>'pid')::integer AS me) AS m, ` +
    `jsonb_to_recordset(coalesce(${ctx}->'clients', '[]')) AS c(pid integer, datname text, usename text, application_name text, client_addr text, ` +
    `client_port integer, backend_start timestamptz, xact_start timestamptz, query_start timestamptz, state_change timestamptz, ` +
    `wait_event_type text, wait_event text, state text, query text) ` +
    `LEFT JOIN (SELECT * FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()) AS s ON true`,
]

/** The statements that make the functions, one by one (a Parse holds one statement). */
export function installStatements(): readonly string[] {
  return INSTALL_STATEMENTS
}
