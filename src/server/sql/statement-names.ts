// Statement names in SQL text: PREPARE name, EXECUTE name, DEALLOCATE [PREPARE] name, EXPLAIN ... EXECUTE name and
// CREATE TABLE ... AS EXECUTE name. PGlite's one session has one namespace for them, so each client's names are
// given its prefix here, as protocol-level names are in features/statements.ts.

import { isName, statements, type Token } from './tokens.ts'

export interface NameEdit {
  kind: 'prepare' | 'execute' | 'deallocate'
  /** The name as Postgres sees it (unquoted names folded to lower case). */
  name: string
  /** Where the name token is in the text (string offsets). */
  start: number
  end: number
}

export function statementNameEdits(sql: string): NameEdit[] {
  const edits: NameEdit[] = []
  const edit = (kind: NameEdit['kind'], token: Token | undefined) => {
    if (isName(token)) edits.push({ kind, name: token.text, start: token.start, end: token.end })
  }
  for (const tokens of statements(sql)) {
    const [first, second, third] = tokens
    if (first?.kind !== 'word') continue
    switch (first.text) {
      case 'prepare':
        // PREPARE TRANSACTION 'id' is two-phase commit, not a statement name.
        if (!(second?.text === 'transaction' && second.kind === 'word' && third?.text === "'")) edit('prepare', second)
        break
      case 'execute':
        edit('execute', second)
        break
      case 'deallocate':
        if (second?.kind === 'word' && second.text === 'prepare')
          edit('deallocate', third?.text === 'all' && third.kind === 'word' ? undefined : third)
        else if (!(second?.kind === 'word' && second.text === 'all')) edit('deallocate', second)
        break
      case 'explain':
      case 'create': {
        // EXPLAIN [options] EXECUTE name; CREATE TABLE t AS EXECUTE name. Not EXECUTE FUNCTION/PROCEDURE (triggers).
        const at = tokens.findIndex(
          (t, i) =>
            i > 0 &&
            t.kind === 'word' &&
            t.text === 'execute' &&
            (first.text === 'explain' || tokens[i - 1]?.text === 'as'),
        )
        const name = at > 0 ? tokens[at + 1] : undefined
        if (name && !(name.kind === 'word' && (name.text === 'function' || name.text === 'procedure')))
          edit('execute', name)
        break
      }
    }
  }
  return edits
}
