// PGlite converts no text between encodings: Postgres's catalog lists 128 conversions, and each one's function is in
// a library ($libdir/utf8_and_iso8859_1 and so on) that PGlite does not have. A call of one (a client's
// `SET client_encoding TO 'LATIN1'` before its next non-ASCII text, `convert_to('é', 'LATIN1')`) ends PGlite's one
// backend, and the database with it for every client. So before a database serves, the conversions whose function
// cannot load leave its catalog, and Postgres answers as it does for a conversion it lacks: 0A000 "invalid value for
// parameter" (Conversion between LATIN1 and UTF8 is not supported) for the setting, 42883 for convert_to.

import { SqlState, WireError } from '../../errors.ts'
import { BackendCode } from '../protocol/codes.ts'
import { errorFields, findMessage, firstValue } from '../protocol/backend-messages.ts'
import { encodeQuery } from '../protocol/frontend-messages.ts'

const UNLOADABLE = "SELECT c.conproc FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_proc p ON p.oid = c.conproc WHERE p.probin LIKE '$libdir/%'"

/** 'read only' (a database made so keeps them: no write may run), 'some' or 'none'. */
const LOOK = encodeQuery(
  `SELECT CASE WHEN pg_catalog.current_setting('transaction_read_only')::bool THEN 'read only' WHEN EXISTS (${UNLOADABLE}) THEN 'some' ELSE 'none' END`,
)

/**
 * The conversions, then their functions (so that CREATE CONVERSION cannot name one again). A template runs it as it is
 * built, so that its copies have nothing to drop.
 */
export const DROP_UNLOADABLE_CONVERSIONS =
  `WITH gone AS (DELETE FROM pg_catalog.pg_conversion WHERE conproc IN (${UNLOADABLE}) RETURNING conproc) ` +
  'DELETE FROM pg_catalog.pg_proc p USING gone WHERE p.oid = gone.conproc'
const DROP = encodeQuery(DROP_UNLOADABLE_CONVERSIONS)

/**
 * Drop the conversions PGlite cannot run from the database `run` (a Query's whole reply) reaches, unless it is read
 * only. A failure to drop them is the database's failure to start.
 */
export async function dropUnloadableConversions(run: (query: Buffer) => Promise<Buffer>): Promise<void> {
  const found = firstValue(await run(LOOK))
  if (found === 'read only' || found === 'none') return
  const error = findMessage(await run(DROP), BackendCode.ErrorResponse)
  if (error) {
    const { code, message } = errorFields(error)
    throw new WireError('FATAL', SqlState.InternalError, `cannot drop the encoding conversions PGlite lacks: ${code} ${message}`)
  }
}
