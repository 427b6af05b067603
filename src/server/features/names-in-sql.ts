// A client's statement and cursor names where its SQL text writes them (PREPARE, EXECUTE, DEALLOCATE; DECLARE ...
// WITH HOLD, FETCH, MOVE, CLOSE, WHERE CURRENT OF), given the client's prefix as its protocol names are
// (features/statements.ts), and recorded as made or gone as the text is read.

import { cursorNameEdits } from '../sql/cursor-names.ts'
import { statementNameEdits } from '../sql/statement-names.ts'
import type { Statements } from './statements.ts'

/**
 * `sql` with the statement names of SQL PREPARE, EXECUTE and DEALLOCATE given the client's prefix, recording what it
 * prepares and deallocates; null when it names none.
 */
export function prefixStatementNames(statements: Statements, sql: string): string | null {
  return withServerNames(sql, statementNameEdits(sql), (edit) => {
    const server = statements.serverName(Buffer.from(edit.name))
    if (edit.kind === 'prepare') statements.prepared(edit.name, server)
    else if (edit.kind === 'deallocate') statements.closed(edit.name)
    return server
  })
}

/**
 * `sql` with the names of cursors declared WITH HOLD given the client's prefix, where they are declared and where the
 * client names them again; null when there are none.
 */
export function prefixCursorNames(statements: Statements, sql: string): string | null {
  return withServerNames(sql, cursorNameEdits(sql, statements.isHeldCursor), (edit) => {
    // A name declared earlier in this text is held from here on; its prefix is the client's, as for any it holds.
    const server =
      edit.kind === 'declare-hold'
        ? statements.declaredHeldCursor(edit.name)
        : statements.serverName(Buffer.from(edit.name))
    if (edit.kind === 'close') statements.closedCursor(edit.name)
    return server
  })
}

/** `sql` with each edit's name replaced by the quoted name `serverName` gives it, in order; null when none. */
function withServerNames<E extends { name: string; start: number; end: number }>(
  sql: string,
  edits: readonly E[],
  serverName: (edit: E) => Buffer,
): string | null {
  if (edits.length === 0) return null
  let out = ''
  let from = 0
  for (const edit of edits) {
    out += `${sql.slice(from, edit.start)}"${serverName(edit).toString().replaceAll('"', '""')}"`
    from = edit.end
  }
  return out + sql.slice(from)
}
