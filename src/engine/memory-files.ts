// How a database in memory grows its files. With --memory every file of the database (tables, indexes, WAL segments,
// a sort's temporary files) is an Emscripten MEMFS file: one Uint8Array that PGlite's glue grows by copying it into
// a larger one, twice the size up to 1 MB and then 1.125 times (a 16 MB WAL segment is copied about 25 times as it
// fills). Node allocates those arrays with calloc, and glibc serves a request from its arenas unless it is at least
// its mmap threshold, a threshold that rises to the size of the largest chunk freed so far, up to 32 MB. So after
// the first large array is freed, every array of a growing file up to 32 MB is carved from an arena and left there
// as a hole when the file outgrows it: the server's RSS kept rising under a long load and did not come back (a
// 4-minute soak left 171 MB above idle for a 48 MB database).
//
// A file past 1 MB here grows in steps of 32 MB instead. glibc always maps a request of 32 MB or more on its own and
// unmaps it when it is freed, so an outgrown array goes back to the system at once; and calloc leaves a fresh mapping
// as the kernel made it, so the part of the step no write has reached yet takes no memory.
//
// MEMFS is PGlite's own, its Module.MEMFS (0.5.16's Emscripten no longer has FS.filesystems.MEMFS, where this was
// looked up before): when a PGlite release lacks it, files grow as they always did and memory-files.test.ts fails.

import type { PGlite } from '@electric-sql/pglite'

/** Below this, a file doubles as Emscripten grows it (the arrays are small and reused from the arenas). */
export const SMALL_FILE = 1 << 20
/** glibc's largest mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a request this size is always mapped. */
export const FILE_GROWTH_STEP = 32 << 20

interface MemfsNode {
  contents: Uint8Array
  usedBytes: number
}

interface Memfs {
  expandFileStorage(node: MemfsNode, newCapacity: number): void
}

/** The capacity a file that must hold `wanted` bytes, now `capacity`, grows to. */
export function grownCapacity(capacity: number, wanted: number): number {
  if (wanted <= capacity) return capacity
  const doubled = Math.max(wanted, capacity * 2, 256)
  if (doubled <= SMALL_FILE) return doubled
  return Math.ceil(wanted / FILE_GROWTH_STEP) * FILE_GROWTH_STEP
}

/** Makes `db`'s in-memory files grow as above. */
export function growFilesInLargeSteps(db: PGlite): void {
  const memfs = (db as unknown as { mod?: { MEMFS?: Partial<Memfs> } }).mod?.MEMFS
  if (typeof memfs?.expandFileStorage !== 'function') return
  memfs.expandFileStorage = (node, newCapacity) => {
    const capacity = grownCapacity(node.contents.length, newCapacity)
    if (capacity === node.contents.length) return
    const grown = new Uint8Array(capacity)
    grown.set(node.contents.subarray(0, node.usedBytes))
    node.contents = grown
  }
}
