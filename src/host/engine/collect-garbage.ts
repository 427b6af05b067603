// One full garbage collection, soon. A server (or a database thread) waiting for its first client allocates nothing,
// so V8 never collects what start-up left behind: PGlite's copies of the database while loading it, 10-60 MB per
// database. `--expose-gc` set at run time (a flag of the whole process, whichever thread sets it) only gives new vm
// contexts a gc(); the globals of the process's threads stay as they were.

import v8 from 'node:v8'
import vm from 'node:vm'

/** This thread's gc(), from a context of its own made once. */
let collect: (() => void) | null = null

export function collectGarbageSoon(): void {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  setImmediate(collect)
}
