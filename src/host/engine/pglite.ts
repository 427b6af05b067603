// PGlite.create for a database that stays open: PGlite keeps its options object for as long as it is open, so a
// loadDataDir tarball given to it (40 MB for the example schema) would stay in memory with it. Its in-memory files
// grow in large steps (memory-files.ts).

import { PGlite, type PGliteOptions } from '@electric-sql/pglite'
import { growFilesInLargeSteps } from './memory-files.ts'

export async function openPGlite(options: PGliteOptions): Promise<PGlite> {
  const own = { ...options }
  const db = await PGlite.create(own)
  delete own.loadDataDir
  growFilesInLargeSteps(db)
  return db
}
