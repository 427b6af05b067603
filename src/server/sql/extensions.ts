// CREATE EXTENSION in SQL text: PGlite loads an extension's files only when it starts, so the server must know
// which extensions a client is about to create before the statement runs (see session/databases.ts loadExtension).

import { isName, statements } from './tokens.ts'

/** The names of the extensions `sql` creates: CREATE EXTENSION [IF NOT EXISTS] name, as Postgres reads the name. */
export function createdExtensions(sql: string): string[] {
  const names: string[] = []
  for (const tokens of statements(sql)) {
    const [first, second] = tokens
    if (first?.kind !== 'word' || first.text !== 'create' || second?.kind !== 'word' || second.text !== 'extension')
      continue
    let at = 2
    if (tokens[at]?.text === 'if' && tokens[at + 1]?.text === 'not' && tokens[at + 2]?.text === 'exists') at += 3
    const name = tokens[at]
    if (isName(name)) names.push(name.text)
  }
  return names
}
