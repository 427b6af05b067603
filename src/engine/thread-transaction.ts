// A transaction through a database thread's query and exec, as PGlite's transaction() gives one: BEGIN, the
// callback's statements, COMMIT (ROLLBACK if it throws).

import type { Results } from '@electric-sql/pglite'
import type { ThreadExecOptions, ThreadQueryOptions } from './thread-messages.ts'

/** What `transaction()` hands its callback: statements inside the transaction, as PGlite's Transaction has them. */
export interface DbThreadTransaction {
  query<T>(sql: string, params?: unknown[], options?: ThreadQueryOptions): Promise<Results<T>>
  exec(sql: string, options?: ThreadExecOptions): Promise<Array<Results>>
  rollback(): Promise<void>
  readonly closed: boolean
}

/** The statements a transaction runs with (the thread's, without its lock), and whether the database died. */
export interface TransactionStatements {
  query<T>(sql: string, params?: unknown[], options?: ThreadQueryOptions): Promise<Results<T>>
  exec(sql: string, options?: ThreadExecOptions): Promise<Array<Results>>
  dead(): boolean
}

export async function runTransaction<T>(
  db: TransactionStatements,
  callback: (tx: DbThreadTransaction) => Promise<T>,
): Promise<T> {
  await db.exec('BEGIN')
  let open = true
  const ensureOpen = () => {
    if (!open) throw new Error('Transaction is closed')
  }
  const tx: DbThreadTransaction = {
    query: async <R>(sql: string, params?: unknown[], options?: ThreadQueryOptions) => (
      ensureOpen(),
      db.query<R>(sql, params, options)
    ),
    exec: async (sql: string, options?: ThreadExecOptions) => (ensureOpen(), db.exec(sql, options)),
    rollback: async () => {
      ensureOpen()
      await db.exec('ROLLBACK')
      open = false
    },
    get closed() {
      return !open
    },
  }
  try {
    const result = await callback(tx)
    if (open) await db.exec('COMMIT')
    return result
  } catch (error) {
    if (open && !db.dead()) await db.exec('ROLLBACK')
    throw error
  } finally {
    open = false
  }
}
