// Functions and views whose answer depends on which backend asks: on PGlite's one session every client would be the
// same backend. pg_backend_pid() becomes the client's own process id; the advisory lock functions,
// pg_cancel_backend and pg_terminate_backend become the server's own versions in pg_temp (session/server-functions.ts),
// which read what the server tells the session about its clients; pg_stat_activity needs no rewrite (a temporary view
// of that name comes first in the search path) but that same knowledge.

import { statements, type Token } from './tokens.ts'

/** Calls the server answers through its own functions of the same name in pg_temp. */
const TEMP_FUNCTIONS = new Set([
  'pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared',
  'pg_try_advisory_lock', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock', 'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_shared', 'pg_advisory_unlock_all',
  'pg_cancel_backend', 'pg_terminate_backend',
])
/** Those of them that wait for another client's lock. */
const WAITING_FUNCTIONS = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_advisory_xact_lock', 'pg_advisory_xact_lock_shared'])

/** Statements whose rows name their columns, and that allow a subquery wherever an expression goes. */
const ROW_STATEMENTS = new Set(['select', 'with', 'values', 'insert', 'update', 'delete', 'merge'])

/** A pid written out, or a parameter, perhaps cast to an integer type: `(12345)`, `($1)`, `($1::int)`. */
const PID_ARGUMENT = /^\s*(?:(\d{1,10})|\$(\d{1,5})(?:\s*::\s*(?:pg_catalog\s*\.\s*)?(?:int|int4|integer|int8|bigint))?)\s*[),]/i

export interface ServerFunctionUse {
  /** The SQL text with each call rewritten. */
  sql: string
  /** The session must know the server's clients and locks before it runs (see session/server-functions.ts). */
  needsContext: boolean
  /** It reads pg_stat_activity: the session must know what each client does, too. */
  readsActivity: boolean
  /** A call may wait for a lock another client holds. */
  mayWait: boolean
  /**
   * pg_cancel_backend / pg_terminate_backend of a pid written in the text, or given as a parameter (its number): done
   * before the statement waits its turn.
   */
  signals: SignalArgument[]
}

/** The pid a pg_cancel_backend or pg_terminate_backend call is given: written out, or parameter `param` (1-based). */
export type SignalArgument = { op: 'cancel' | 'terminate'; pid: number } | { op: 'cancel' | 'terminate'; param: number }

const isWord = (token: Token | undefined, text: string): boolean => token?.kind === 'word' && token.text === text
const isPunct = (token: Token | undefined, text: string): boolean => token?.kind === 'other' && token.text === text

/** The calls of such functions in `sql` rewritten for the client with process id `processId`; null if it has none. */
export function rewriteServerFunctions(sql: string, processId: number): ServerFunctionUse | null {
  let out = ''
  let from = 0
  let needsContext = false
  let readsActivity = false
  let mayWait = false
  let found = false
  const signals: ServerFunctionUse['signals'] = []
  for (const tokens of statements(sql)) {
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i]!
      if (token.kind !== 'word' || !token.text.startsWith('pg_')) continue
      // pg_catalog.name: the qualified name is rewritten whole.
      const qualified = i >= 2 && isPunct(tokens[i - 1], '.') && isWord(tokens[i - 2], 'pg_catalog')
      const start = qualified ? tokens[i - 2]!.start : token.start
      const isCall = isPunct(tokens[i + 1], '(')
      let replacement: string | null = null
      if (isCall && token.text === 'pg_backend_pid' && isPunct(tokens[i + 2], ')')) {
        // A scalar subquery keeps the column name Postgres gives the call (`pg_backend_pid`, where a cast would give
        // `int4`), in the statements that return rows; elsewhere (a DEFAULT, CALL and EXECUTE arguments, COPY) a
        // subquery is not allowed, and no column is named.
        const first = tokens[0]
        const named = isPunct(first, '(') || (first?.kind === 'word' && ROW_STATEMENTS.has(first.text))
        out += sql.slice(from, start) + (named ? `(SELECT ${processId}::pg_catalog.int4 AS pg_backend_pid)` : `(${processId}::pg_catalog.int4)`)
        from = tokens[i + 2]!.end
        found = true
        i += 2
        continue
      }
      if (isCall && TEMP_FUNCTIONS.has(token.text)) {
        replacement = `pg_temp.${token.text}`
        mayWait ||= WAITING_FUNCTIONS.has(token.text)
        // A pid written out, pg_cancel_backend(12345), or a parameter, ($1) (the lexer reads digits one by one: from the text).
        const argument = token.text === 'pg_cancel_backend' || token.text === 'pg_terminate_backend' ? PID_ARGUMENT.exec(sql.slice(tokens[i + 1]!.end)) : null
        const op = token.text === 'pg_cancel_backend' ? 'cancel' : 'terminate'
        if (argument) signals.push(argument[1] !== undefined ? { op, pid: Number(argument[1]) } : { op, param: Number(argument[2]) })
      } else if (!isCall && token.text === 'pg_stat_activity') {
        // Unqualified, the temporary view is found first; qualified, it is named.
        if (qualified) replacement = 'pg_temp.pg_stat_activity'
        needsContext = readsActivity = found = true
      }
      if (replacement === null) continue
      out += sql.slice(from, start) + replacement
      from = token.end
      needsContext = found = true
    }
  }
  return found ? { sql: out + sql.slice(from), needsContext, readsActivity, mayWait, signals } : null
}
