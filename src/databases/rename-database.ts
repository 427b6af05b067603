// The one database of a PGlite cluster renamed: each of ours is a cluster whose database carries the name clients
// give it.

import { errorFields, findMessage } from '../server/protocol/backend-messages.ts'
import { BackendCode } from '../server/protocol/codes.ts'
import { encodeQuery } from '../server/protocol/frontend-messages.ts'
import { literal } from '../server/sql/literal.ts'

/**
 * Give the database `from` of `db`'s cluster the name `to`. ALTER DATABASE ... RENAME refuses the database one is
 * connected to, and PGlite's one backend always is; what it would change is this row (a database's files are
 * named by its oid), so the row is changed directly. A database already named `to` (template1, when a client names
 * its database so) gives its name up first. A copy of a template is no template, as CREATE DATABASE makes it.
 *
 * Sent as protocol, not through PGlite's query API, which reads the reply itself: what PGlite reported since would go
 * unseen, and the next report of an unchanged setting would reach a client (repeated-reports.ts). A spare is renamed
 * when taken, after its session was made ready.
 */
export async function renameDatabase(
  db: { execProtocolRaw(message: Uint8Array): Promise<Uint8Array> },
  from: string,
  to: string,
): Promise<void> {
  const reply = Buffer.from(
    await db.execProtocolRaw(
      encodeQuery(
        `UPDATE pg_catalog.pg_database SET datname = ${literal('pglite_dev_db_')} || datname WHERE datname = ${literal(to)} AND datname <> ${literal(from)}; ` +
          `UPDATE pg_catalog.pg_database SET datname = ${literal(to)}, datistemplate = false WHERE datname = ${literal(from)}`,
      ),
    ),
  )
  const error = findMessage(reply, BackendCode.ErrorResponse)
  if (!error) return
  const { code, message } = errorFields(error)
  throw Object.assign(new Error(`could not name the database ${literal(to)}: ${message}`), { code })
}
