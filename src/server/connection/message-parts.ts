// What the message handlers (messages.ts) share: a statement's first word read from its bytes, names given the
// client's prefix, a message with its edits made, and the bits of the server's functions a statement calls.

import { editMessage, type Edit } from '../protocol/frontend-messages.ts'
import type { ClientState } from '../features/state.ts'
import type { Statements } from '../features/statements.ts'
import { callsSetConfig } from '../features/settings-sql.ts'
import { ServerFunctions, type ServerFunctionUse } from '../features/server-functions.ts'
import { Keyword } from '../sql/tokens.ts'

const LETTER_D = 0x64 // d
const SLASH = 0x2f // /
const DASH = 0x2d // -

/** Text that begins with a comment: what statement it is shows only once it is read (sql/tokens.ts). */
function startsWithComment(first: number): boolean {
  return first === SLASH || first === DASH
}

/**
 * The text at [start, end) (beginning with `first`; `sql` when already decoded) may be a DISCARD ALL, DISCARD TEMP or
 * DEALLOCATE ALL: its first word is DISCARD or DEALLOCATE (read from the bytes: most statements that begin with a d
 * are DELETE, DROP or DO, and need no lexer), or it begins with a comment.
 */
export function mayBeDiscard(bytes: Buffer, start: number, end: number, first: number, sql: string | null): boolean {
  if (first === LETTER_D)
    return startsWithWord(bytes, start, end, 'discard') || startsWithWord(bytes, start, end, 'deallocate')
  return startsWithComment(first) && (sql === null || /discard|deallocate/i.test(sql))
}

/** The text at [start, end), after white space, begins with `word` (lower-case ASCII) in any case, and a word ends there. */
export function startsWithWord(bytes: Buffer, start: number, end: number, word: string): boolean {
  let at = start
  while (at < end && (bytes[at] === 0x20 || (bytes[at]! >= 0x09 && bytes[at]! <= 0x0d))) at++
  if (end - at < word.length) return false
  for (let i = 0; i < word.length; i++) if ((bytes[at + i]! | 0x20) !== word.charCodeAt(i)) return false
  const next = at + word.length < end ? bytes[at + word.length]! | 0x20 : 0
  return !(
    (next >= 0x61 && next <= 0x7a) ||
    (next >= 0x30 && next <= 0x39) ||
    next === 0x7f ||
    next >= 0x80 ||
    next === 0x24
  )
}
export function text(bytes: Buffer, [start, end]: [number, number]): string {
  return start === end ? '' : bytes.toString('utf8', start, end)
}

/**
 * Edits that give names PGlite's: a statement name (`statement`, non-empty) the client's prefix, a portal name
 * (`portal`) only if it names a cursor the client declared WITH HOLD (see sql/cursor-names.ts); null if none.
 */
export function prefixNames(
  statements: Statements,
  bytes: Buffer,
  portal: [number, number] | null,
  statement?: [number, number],
): Edit[] | null {
  let edits: Edit[] | null = null
  if (portal !== null && portal[1] > portal[0] && statements.holdsCursors) {
    const server = statements.portalName(bytes.subarray(portal[0], portal[1]))
    if (server) edits = [[portal[0], portal[1], server]]
  }
  if (statement !== undefined && statement[1] > statement[0])
    (edits ??= []).push([statement[0], statement[1], statements.serverName(bytes.subarray(statement[0], statement[1]))])
  return edits
}

/** The message at [offset, end) with `edits` made, on its own (a message taken over). */
export function edited(bytes: Buffer, offset: number, end: number, edits: readonly Edit[] | null): Buffer {
  return edits ? editMessage(bytes, offset, end, edits) : bytes.subarray(offset, end)
}

/**
 * ServerFunctions.Settings if `sql` may change a setting by set_config(): it calls it, or EXECUTEs what may be a SQL
 * PREPARE of the client's that does.
 */
export function settingsBit(client: ClientState, words: number, sql: string): number {
  if (words & Keyword.SetConfig && callsSetConfig(sql)) {
    if (words & Keyword.StatementName) client.preparesSetConfig = true
    return ServerFunctions.Settings
  }
  return words & Keyword.StatementName && client.preparesSetConfig ? ServerFunctions.Settings : 0
}

export function functionBits(use: ServerFunctionUse): number {
  return (
    (use.needsContext ? ServerFunctions.Context : 0) |
    (use.readsActivity ? ServerFunctions.Activity : 0) |
    (use.mayWait ? ServerFunctions.MayWait : 0)
  )
}
