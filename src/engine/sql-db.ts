// What the server's own SQL (migrations, resets) needs of a database: an in-process PGlite or a DbThread both fit.

import type { QueryOptions, Results } from '@electric-sql/pglite'

export interface SqlRunner {
  query<T>(sql: string, params?: unknown[], options?: Pick<QueryOptions, 'blob'>): Promise<Results<T>>
  exec(sql: string): Promise<Array<Results>>
}

export interface SqlDb extends SqlRunner {
  transaction<T>(callback: (tx: SqlRunner) => Promise<T>): Promise<T>
}
