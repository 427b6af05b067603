// DISCARD ALL, DISCARD TEMP and DEALLOCATE ALL sent as a whole simple Query. On the one shared session they would
// wipe every client's prepared statements, settings, LISTENs and temporary tables; the server carries them out for the sending client alone
// and answers with the CommandComplete Postgres would send. (DEALLOCATE name needs nothing here: the name is given
// the client's prefix like every statement name, see client/statements.ts.)

export type DiscardCommand = 'DISCARD ALL' | 'DEALLOCATE ALL' | 'DISCARD TEMP'

const DISCARD_ALL = /^\s*discard\s+all\s*;?\s*$/i
const DISCARD_TEMP = /^\s*discard\s+temp(?:orary)?\s*;?\s*$/i
const DEALLOCATE_ALL = /^\s*deallocate\s+(?:prepare\s+)?all\s*;?\s*$/i

export function parseDiscard(sql: string): DiscardCommand | null {
  if (DISCARD_ALL.test(sql)) return 'DISCARD ALL'
  if (DISCARD_TEMP.test(sql)) return 'DISCARD TEMP'
  if (DEALLOCATE_ALL.test(sql)) return 'DEALLOCATE ALL'
  return null
}
