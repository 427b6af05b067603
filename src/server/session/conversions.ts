// PGlite converts no text between encodings: Postgres's catalog lists 128 conversions, and each one's function is in
// a library ($libdir/utf8_and_iso8859_1 and so on) that PGlite does not have. A call of one (a client's
// `SET client_encoding TO 'LATIN1'` before its next non-ASCII text, `convert_to('é', 'LATIN1')`) ends PGlite's one
// backend, and the database with it for every client. So before an engine serves, the conversions initdb made whose
// function cannot load leave its catalog, and Postgres answers as it does for a conversion it lacks: 0A000 "invalid
// value for parameter" (Conversion between LATIN1 and UTF8 is not supported) for the setting, 42883 for convert_to.

import { BackendCode } from '../protocol/codes.ts'
import { errorFields, findMessage, firstValue } from '../protocol/backend-messages.ts'
import { encodeQuery } from '../protocol/frontend-messages.ts'

/** initdb's conversions (below FirstNormalObjectId) whose function is in a library. */
const UNLOADABLE =
  'SELECT c.conproc FROM pg_catalog.pg_conversion c JOIN pg_catalog.pg_proc p ON p.oid = c.conproc ' +
  "WHERE c.oid < 16384 AND p.probin LIKE '$libdir/%'"

/**
 * 'some', 'none', or why they must stay: a session started read only (start parameters), or a role that may not
 * write the catalog (the drop-in's PGlite may run as one).
 */
const LOOK = encodeQuery(
  "SELECT CASE WHEN pg_catalog.current_setting('transaction_read_only')::bool THEN 'the session is read only' " +
    "WHEN NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN 'its role is not a superuser' " +
    `WHEN EXISTS (${UNLOADABLE}) THEN 'some' ELSE 'none' END`,
)

/**
 * The conversions, their functions (so that CREATE CONVERSION cannot name one again), and the comments on both. A
 * template runs it as it is built, so that its copies have nothing to drop.
 */
export const DROP_UNLOADABLE_CONVERSIONS =
  `WITH conversions AS (DELETE FROM pg_catalog.pg_conversion WHERE conproc IN (${UNLOADABLE}) AND oid < 16384 RETURNING oid, conproc), ` +
  'functions AS (DELETE FROM pg_catalog.pg_proc p USING conversions c WHERE p.oid = c.conproc RETURNING p.oid) ' +
  "DELETE FROM pg_catalog.pg_description WHERE (classoid = 'pg_catalog.pg_conversion'::pg_catalog.regclass AND objoid IN (SELECT oid FROM conversions)) " +
  "OR (classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND objoid IN (SELECT oid FROM functions))"
const DROP = encodeQuery(DROP_UNLOADABLE_CONVERSIONS)

/**
 * Drop the conversions PGlite cannot run from the engine `run` (a Query's whole reply) reaches. Null once none is
 * left; else why they stay (the database then ends as before when a client asks for one).
 */
export async function dropUnloadableConversions(run: (query: Buffer) => Promise<Buffer>): Promise<string | null> {
  const look = await run(LOOK)
  const found = firstValue(look)
  if (found === 'none') return null
  if (found !== 'some') return found ?? failure(look)
  const dropped = await run(DROP)
  return findMessage(dropped, BackendCode.ErrorResponse) ? failure(dropped) : null
}

function failure(reply: Buffer): string {
  const error = findMessage(reply, BackendCode.ErrorResponse)
  if (!error) return 'no answer to the look for them'
  const { code, message } = errorFields(error)
  return `${code} ${message}`
}
