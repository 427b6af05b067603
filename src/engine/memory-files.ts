// How a database in memory grows its files. With --memory every file of the database (tables, indexes, WAL segments,
// a sort's temporary files) is an Emscripten MEMFS file: one Uint8Array that PGlite's glue grows by copying it into
// a larger one, twice the size up to 1 MB and then 1.125 times (a 16 MB WAL segment is copied about 25 times as it
// fills). Node allocates those arrays with calloc, and glibc serves a request from its arenas unless it is at least
// its mmap threshold, a threshold that rises to the size of the largest chunk freed so far, up to 32 MB. So after
// the first large array is freed, every array of a growing file up to 32 MB is carved from an arena and left there
// as a hole when the file outgrows it: the server's RSS kept rising under a long load and did not come back (a
// 4-minute soak left 171 MB above idle for a 48 MB database).
//
// A file past 1 MB here grows to the next multiple of 32 MB at least half as large again: few copies (a 1 GB segment
// is copied 9 times as it fills, 3.3 GB in all; in steps of 32 MB it was copied 32 times, 16 GB), and the part no
// write has reached takes no memory (below). The same goes for a file made longer by setting its size (a temporary
// table's file is extended so), which Emscripten copied into an array of exactly the new size each time: a 100 MB
// temporary table took 7 s, 600 MB four minutes. glibc always maps a request of 32 MB or more on its own and
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
/** How much larger at least a file past SMALL_FILE grows each time: its copies add up to a few times its size. */
const LARGE_FILE_GROWTH = 1.5

interface MemfsNode {
  contents: Uint8Array
  usedBytes: number
}

interface Memfs {
  expandFileStorage(node: MemfsNode, newCapacity: number): void
  resizeFileStorage(node: MemfsNode, newSize: number): void
}

/** The capacity a file that must hold `wanted` bytes, now `capacity`, grows to. */
export function grownCapacity(capacity: number, wanted: number): number {
  if (wanted <= capacity) return capacity
  const doubled = Math.max(wanted, capacity * 2, 256)
  if (doubled <= SMALL_FILE) return doubled
  return Math.ceil(Math.max(wanted, capacity * LARGE_FILE_GROWTH) / FILE_GROWTH_STEP) * FILE_GROWTH_STEP
}

/** Makes `db`'s in-memory files grow as above. */
export function growFilesInLargeSteps(db: PGlite): void {
  const memfs = (db as unknown as { mod?: { MEMFS?: Partial<Memfs> } }).mod?.MEMFS
  if (typeof memfs?.expandFileStorage !== 'function' || typeof memfs.resizeFileStorage !== 'function') return
  memfs.expandFileStorage = (node, newCapacity) => {
    const capacity = grownCapacity(node.contents.length, newCapacity)
    if (capacity === node.contents.length) return
    const grown = new Uint8Array(capacity)
    grown.set(node.contents.subarray(0, node.usedBytes))
    node.contents = grown
  }
  memfs.resizeFileStorage = (node, newSize) => {
    const { contents, usedBytes } = node
    if (usedBytes === newSize) return
    // Longer within an array of its own: zeros where it has none (a shrink keeps no bytes past the end, see below).
    // An array in shared memory is a file of the image or of PGlite's bundle, which other threads read: never written.
    const own = contents instanceof Uint8Array && !(contents.buffer instanceof SharedArrayBuffer)
    if (own && newSize > usedBytes && newSize <= contents.length) {
      contents.fill(0, usedBytes, newSize)
    } else {
      // Shorter: a new array of that size, as Emscripten makes, so that the memory goes back.
      const resized = new Uint8Array(newSize > usedBytes ? grownCapacity(contents?.length ?? 0, newSize) : newSize)
      if (contents) resized.set(contents.subarray(0, Math.min(newSize, usedBytes)))
      node.contents = resized
    }
    node.usedBytes = newSize
  }
}
