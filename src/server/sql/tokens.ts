// Just enough of Postgres's lexer to find statements and the names in them: comments (nested /* */), string
// literals ('', E'' with backslashes), dollar quotes, quoted identifiers, words and punctuation. What the server
// reads from SQL text (LISTEN channels, names in PREPARE/EXECUTE/DEALLOCATE) is read through this, so text inside
// a literal, a comment or a function body is never mistaken for a command.

export interface Token {
  kind: 'word' | 'ident' | 'other'
  /** Words folded to lower case (as Postgres folds unquoted names); quoted identifiers as written, unescaped. */
  text: string
  start: number
  end: number
}

/** The statements of `sql` (split at top-level semicolons), each as its tokens. */
export function statements(sql: string): Token[][] {
  const result: Token[][] = []
  let statement: Token[] = []
  const push = (kind: Token['kind'], text: string, start: number, end: number) =>
    statement.push({ kind, text, start, end })
  let i = 0
  const n = sql.length
  while (i < n) {
    const start = i
    const ch = sql[i]!
    const next = sql[i + 1]
    if (ch === ';') {
      if (statement.length > 0) result.push(statement)
      statement = []
      i++
    } else if (ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r' || ch === '\f') {
      i++
    } else if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i)
      i = end < 0 ? n : end + 1
    } else if (ch === '/' && next === '*') {
      let depth = 1
      i += 2
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++
          i += 2
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--
          i += 2
        } else i++
      }
    } else if (ch === "'" || ((ch === 'e' || ch === 'E') && next === "'")) {
      const escapes = ch !== "'"
      i += escapes ? 2 : 1
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2
        else if (sql[i] === "'") break
        else i++
      }
      i++
      push('other', "'", start, i)
    } else if (ch === '"') {
      let name = ''
      i++
      while (i < n) {
        if (sql[i] === '"' && sql[i + 1] === '"') {
          name += '"'
          i += 2
        } else if (sql[i] === '"') break
        else name += sql[i++]
      }
      i++
      push('ident', name, start, i)
    } else if (ch === '$' && DOLLAR_TAG.test(sql.slice(i, i + 64))) {
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 64))![0]
      const end = sql.indexOf(tag, i + tag.length)
      i = end < 0 ? n : end + tag.length
      push('other', '$', start, i)
    } else if (WORD_START.test(ch)) {
      i++
      while (i < n && WORD_PART.test(sql[i]!)) i++
      push('word', sql.slice(start, i).toLowerCase(), start, i)
    } else {
      i++
      push('other', ch, start, i)
    }
  }
  if (statement.length > 0) result.push(statement)
  return result
}

const DOLLAR_TAG = /^\$([A-Za-z_\u0080-\uffff][A-Za-z_0-9\u0080-\uffff]*)?\$/
const WORD_START = /[A-Za-z_\u0080-\uffff]/
const WORD_PART = /[A-Za-z_0-9$\u0080-\uffff]/

/** The token is a name: an unquoted word or a quoted identifier. */
export const isName = (token: Token | undefined): token is Token => token !== undefined && token.kind !== 'other'

/** Words the server looks for in SQL text before reading it further (see `keywordsIn`). */
export const Keyword = {
  /** COPY ... FROM STDIN */
  Stdin: 1,
  /** LISTEN, UNLISTEN */
  Listen: 2,
  /** a call of pglite_dev_db.reset() */
  Pglite: 4,
  /** CREATE DATABASE, DROP DATABASE */
  Database: 8,
  /** PREPARE, EXECUTE, DEALLOCATE: statement names in SQL */
  StatementName: 16,
  /** DECLARE: a cursor, which outlives its transaction if WITH HOLD */
  Declare: 32,
  /** pg_...: a function or view that answers per backend (pg_backend_pid, pg_advisory_lock, pg_stat_activity...) */
  PgName: 64,
  /** TEMP, TEMPORARY, pg_temp: a temporary object may be made */
  Temp: 128,
  /** CREATE EXTENSION */
  Extension: 256,
  /** SET / RESET SESSION AUTHORIZATION */
  Authorization: 512,
  /** set_...: set_config(), a SET by function (also any other name that ends in set_, such as offset_) */
  SetConfig: 1024,
  /** CLOSE: CLOSE ALL would close every client's cursors */
  Close: 2048,
} as const

/**
 * Each word, in lower-case ASCII, with its Keyword bit, grouped by last letter (in both cases; `_` has one): one scan
 * per letter and case finds them all.
 */
const WORDS_BY_LAST_LETTER: ReadonlyArray<[lastLetter: number, words: ReadonlyArray<[word: string, bit: number]>]> = [
  [
    0x5f,
    [
      ['pg_', Keyword.PgName],
      ['set_', Keyword.SetConfig],
    ],
  ], // _
  [0x70, [['temp', Keyword.Temp]]], // p
  [0x50, [['temp', Keyword.Temp]]], // P
  [
    0x6e,
    [
      ['stdin', Keyword.Stdin],
      ['listen', Keyword.Listen],
      ['extension', Keyword.Extension],
      ['authorization', Keyword.Authorization],
    ],
  ], // n
  [
    0x4e,
    [
      ['stdin', Keyword.Stdin],
      ['listen', Keyword.Listen],
      ['extension', Keyword.Extension],
      ['authorization', Keyword.Authorization],
    ],
  ], // N
  [
    0x65,
    [
      ['pglite', Keyword.Pglite],
      ['database', Keyword.Database],
      ['prepare', Keyword.StatementName],
      ['execute', Keyword.StatementName],
      ['deallocate', Keyword.StatementName],
      ['declare', Keyword.Declare],
      ['close', Keyword.Close],
    ],
  ], // e
  [
    0x45,
    [
      ['pglite', Keyword.Pglite],
      ['database', Keyword.Database],
      ['prepare', Keyword.StatementName],
      ['execute', Keyword.StatementName],
      ['deallocate', Keyword.StatementName],
      ['declare', Keyword.Declare],
      ['close', Keyword.Close],
    ],
  ], // E
]

/**
 * Which Keyword words occur in the text at [start, end), in any case (a bitmask; 0 for most statements). A quick
 * byte test before any tokenizing: it looks back from each occurrence of a word's last letter, in both cases, so
 * the text is scanned seven times however many words there are, and no string is built. A word inside a literal or
 * a longer name counts too: callers read the text properly (`statements`) when a bit is set.
 */
export function keywordsIn(bytes: Buffer, start: number, end: number): number {
  let found = 0
  for (const [letter, words] of WORDS_BY_LAST_LETTER) {
    for (let i = bytes.indexOf(letter, start); i >= 0 && i < end; i = bytes.indexOf(letter, i + 1)) {
      for (const [word, bit] of words) if ((found & bit) === 0 && endsAt(bytes, start, i, word)) found |= bit
    }
  }
  return found
}

function endsAt(bytes: Buffer, start: number, last: number, word: string): boolean {
  const from = last - word.length + 1
  if (from < start) return false
  for (let k = 0; k < word.length; k++) {
    const byte = bytes[from + k]!
    // ASCII letters compare in either case; other bytes (`_`) as they are.
    if ((byte >= 0x41 && byte <= 0x5a ? byte | 0x20 : byte) !== word.charCodeAt(k)) return false
  }
  return true
}

/** The first byte of the text at [start, end) that is not white space, lower-cased (ASCII), or 0. */
export function firstLetter(bytes: Buffer, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    const byte = bytes[i]!
    if (byte === 0x20 || (byte >= 0x09 && byte <= 0x0d)) continue
    return byte | 0x20
  }
  return 0
}
