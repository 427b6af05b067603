// Cursor names in SQL text. A cursor is a portal: SQL DECLARE/FETCH/MOVE/CLOSE and the protocol's Bind/Execute/
// Describe/Close share one namespace per backend. Portals need no prefix (a portal lives until its transaction ends,
// and only the client holding the session has one open), except a cursor declared WITH HOLD, which outlives its
// transaction: its name is given the client's prefix where it is declared and wherever that client names it again.

import { isName, statements, type Token } from './tokens.ts'

export interface CursorEdit {
  /** `declare-hold`: DECLARE ... WITH HOLD makes it; `close`: CLOSE ends it; `use`: FETCH, MOVE, WHERE CURRENT OF. */
  kind: 'declare-hold' | 'close' | 'use'
  /** The name as Postgres sees it (unquoted names folded to lower case). */
  name: string
  /** Where the name token is in the text (string offsets). */
  start: number
  end: number
}

const word = (token: Token | undefined, text: string): boolean => token?.kind === 'word' && token.text === text

/**
 * The cursor names of `sql` to give the client's prefix: those DECLAREd WITH HOLD, and those the client names in
 * FETCH, MOVE, CLOSE or WHERE CURRENT OF for which `isHeld` says it holds such a cursor.
 */
export function cursorNameEdits(sql: string, isHeld: (name: string) => boolean): CursorEdit[] {
  const edits: CursorEdit[] = []
  // Held from here on in this text: a cursor declared in one statement is named in the next.
  const declared = new Set<string>()
  const closed = new Set<string>()
  const held = (name: string) => declared.has(name) || (!closed.has(name) && isHeld(name))
  const use = (kind: CursorEdit['kind'], token: Token | undefined) => {
    if (!isName(token) || (kind !== 'declare-hold' && !held(token.text))) return
    edits.push({ kind, name: token.text, start: token.start, end: token.end })
    if (kind === 'declare-hold') {
      declared.add(token.text)
      closed.delete(token.text)
    } else if (kind === 'close') {
      declared.delete(token.text)
      closed.add(token.text)
    }
  }
  for (const tokens of statements(sql)) {
    const [first, second] = tokens
    if (first?.kind !== 'word') continue
    switch (first.text) {
      case 'declare': {
        // DECLARE name [BINARY] [ASENSITIVE | INSENSITIVE] [[NO] SCROLL] CURSOR [{WITH | WITHOUT} HOLD] FOR query
        const forAt = tokens.findIndex((t, i) => i > 1 && word(t, 'for'))
        const options = forAt < 0 ? [] : tokens.slice(2, forAt)
        if (options.some((t, i) => word(t, 'with') && word(options[i + 1], 'hold'))) use('declare-hold', second)
        break
      }
      case 'fetch':
      case 'move':
        // FETCH [direction] [FROM | IN] name: the name comes last.
        if (tokens.length > 1) use('use', tokens[tokens.length - 1])
        break
      case 'close':
        if (!word(second, 'all')) use('close', second)
        break
    }
    // UPDATE/DELETE ... WHERE CURRENT OF name
    for (let i = 1; i + 2 < tokens.length; i++)
      if (word(tokens[i], 'current') && word(tokens[i + 1], 'of')) use('use', tokens[i + 2])
  }
  return edits
}
