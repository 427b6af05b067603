// The one database of a PGlite cluster renamed: each of ours is a cluster whose database carries the name clients
// give it.

/**
 * Give the database `from` of `db`'s cluster the name `to`. ALTER DATABASE ... RENAME refuses the database one is
 * connected to, and PGlite's one backend always is; what it would change is this row (a database's files are
 * named by its oid), so the row is changed directly. A database already named `to` (template1, when a client names
 * its database so) gives its name up first. A copy of a template is no template, as CREATE DATABASE makes it.
 */
export async function renameDatabase(
  db: { exec(sql: string): Promise<unknown> },
  from: string,
  to: string,
): Promise<void> {
  const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`
  await db.exec(
    `UPDATE pg_catalog.pg_database SET datname = ${literal('pglite_dev_db_')} || datname WHERE datname = ${literal(to)} AND datname <> ${literal(from)}; ` +
      `UPDATE pg_catalog.pg_database SET datname = ${literal(to)}, datistemplate = false WHERE datname = ${literal(from)}`,
  )
}
