// PGlite.create for a database that stays open: PGlite keeps its options object for as long as it is open, so a
// loadDataDir tarball given to it (40 MB for the example schema) would stay in memory with it.

import { PGlite, type PGliteOptions } from '@electric-sql/pglite'

export async function openPGlite(options: PGliteOptions): Promise<PGlite> {
  const own = { ...options }
  const db = await PGlite.create(own)
  delete own.loadDataDir
  return db
}
