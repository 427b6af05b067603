// DISCARD ALL, DISCARD TEMP and DEALLOCATE ALL, wherever a client sends them: a whole simple Query, a Parse, or one
// statement of several in a Query. On the one shared session they would wipe every client's prepared statements,
// settings, LISTENs, cursors and temporary tables; the server carries them out for the sending client alone
// (connection/discard-all.ts) and answers with the CommandComplete Postgres would send. (DEALLOCATE name needs
// nothing here: the name is given the client's prefix like every statement name, see client/statements.ts.)
// DISCARD PLANS and DISCARD SEQUENCES pass as they are: plans are made again unseen, and sequence state is the one
// session's anyway. In a simple Query, CLOSE ALL (other clients' cursors WITH HOLD) and DEALLOCATE ALL among other
// statements (their SQL PREPAREs) are stood in for by a close of the sender's own (client/statements.ts).

import { retagStandIns } from '../protocol/backend.ts'
import { statements, type Token } from '../sql/tokens.ts'
import { NO_OP_STATEMENT } from './database-commands.ts'
import { DROP_OWN_TEMP_OBJECTS_SQL } from './temp-objects.ts'

export type DiscardCommand = 'DISCARD ALL' | 'DEALLOCATE ALL' | 'DISCARD TEMP'

/** The DISCARD ALL, DISCARD TEMP or DEALLOCATE ALL that is the whole of `sql` (one statement, comments allowed), or null. */
export function parseDiscard(sql: string): DiscardCommand | null {
  const all = statements(sql)
  return all.length === 1 ? discardOf(all[0]!) : null
}

function discardOf(tokens: readonly Token[]): DiscardCommand | null {
  const word = (at: number, text: string): boolean => tokens[at]?.kind === 'word' && tokens[at]!.text === text
  if (word(0, 'discard') && tokens.length === 2) {
    if (word(1, 'all')) return 'DISCARD ALL'
    if (word(1, 'temp') || word(1, 'temporary')) return 'DISCARD TEMP'
  }
  if (word(0, 'deallocate') && (tokens.length === 2 ? word(1, 'all') : tokens.length === 3 && word(1, 'prepare') && word(2, 'all'))) return 'DEALLOCATE ALL'
  return null
}

/** What PGlite parses in place of a prepared DISCARD: the drop of the client's own temporary objects, or a no-op. */
export function standInSql(command: DiscardCommand): string {
  return command === 'DISCARD TEMP' ? DROP_OWN_TEMP_OBJECTS_SQL : NO_OP_STATEMENT
}

/** A statement of a simple Query that the server stands in for: its index among the statements, and its tag. */
export interface StandIn {
  index: number
  tag: 'DISCARD TEMP' | 'DEALLOCATE ALL' | 'CLOSE CURSOR ALL'
}

const STAND_IN_WORD = /(?<![\w$])(?:close|deallocate|discard)(?![\w$])/i

/** The SQL that acts for the client alone (client/statements.ts), asked for once a statement needs it. */
export interface OwnCloses {
  closeAllCursors(): string
  deallocateAll(): string
}

/**
 * `sql` (a simple Query) with the statements that would act on every client replaced by what acts on this client
 * alone: DISCARD TEMP and DEALLOCATE ALL among several statements (alone, they are parseDiscard's), and CLOSE ALL.
 * With the index of each among the statements (each statement that runs ends with one CommandComplete, see
 * withStandInTags) and the tag Postgres answers it with; null if there is none.
 */
export function rewriteStandIns(sql: string, own: OwnCloses): { sql: string; standIns: StandIn[] } | null {
  // The lexer's prefilter also passes closed_at, execute, temp...: only a text with one of these words is read whole.
  if (!STAND_IN_WORD.test(sql)) return null
  const all = statements(sql)
  let out = ''
  let from = 0
  const standIns: StandIn[] = []
  all.forEach((tokens, index) => {
    const tag = standInTag(tokens, all.length)
    if (!tag) return
    const standIn = tag === 'CLOSE CURSOR ALL' ? own.closeAllCursors() : tag === 'DEALLOCATE ALL' ? own.deallocateAll() : DROP_OWN_TEMP_OBJECTS_SQL
    out += sql.slice(from, tokens[0]!.start) + standIn
    from = tokens[tokens.length - 1]!.end
    standIns.push({ index, tag })
  })
  return standIns.length > 0 ? { sql: out + sql.slice(from), standIns } : null
}

function standInTag(tokens: readonly Token[], statementCount: number): StandIn['tag'] | null {
  if (tokens.length === 2 && tokens[0]!.kind === 'word' && tokens[0]!.text === 'close' && tokens[1]!.kind === 'word' && tokens[1]!.text === 'all') return 'CLOSE CURSOR ALL'
  const discard = statementCount > 1 ? discardOf(tokens) : null
  return discard === 'DISCARD TEMP' || discard === 'DEALLOCATE ALL' ? discard : null
}

/** PGlite's reply with the CommandCompletes at `completions`, those of the stand-ins, given the tag of `command`. */
export const withDiscardTags = (reply: Buffer, completions: readonly number[], command: DiscardCommand): Buffer => retagStandIns(reply, command, completions)

/** PGlite's reply to a Query rewritten by rewriteStandIns, each stand-in's CommandComplete given its tag. */
export function withStandInTags(reply: Buffer, standIns: readonly StandIn[]): Buffer {
  let out = reply
  for (const tag of new Set(standIns.map((standIn) => standIn.tag))) {
    out = retagStandIns(out, tag, standIns.filter((standIn) => standIn.tag === tag).map((standIn) => standIn.index))
  }
  return out
}
