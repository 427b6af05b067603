// Full garbage collections at quiet moments. A server (or a database thread) waiting for its first client allocates
// nothing, so V8 never collects what start-up left behind: PGlite's copies of the database while loading it, 10-60 MB
// per database. After a load the same holds: V8 keeps the heap the load grew (its young generation stays at its
// largest, about 32 MB more in the server's thread) until something allocates again. `--expose-gc` set at run time
// (a flag of the whole process, whichever thread sets it) only gives new vm contexts a gc(); the globals of the
// process's threads stay as they were.

import v8 from 'node:v8'
import vm from 'node:vm'

/** After work, a thread that has been idle this long collects once (and between this and twice this). */
export const COLLECT_WHEN_IDLE_MS = 5_000

/** This thread's gc(), from a context of its own made once. */
let collect: (() => void) | null = null
/** Whether this thread collects once idle after work (collectWhenIdle); off in a user's own process. */
let collectsWhenIdle = false
/** Work came since the idle check last looked. */
let busy = false
let idleCheck: NodeJS.Timeout | null = null

export function collectGarbageSoon(): void {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  setImmediate(collect)
}

/** From now on this thread collects once whenever it has been idle for COLLECT_WHEN_IDLE_MS after work (noteBusy). */
export function collectWhenIdle(): void {
  collectsWhenIdle = true
}

/** This thread did work (a call into a database): cheap enough for every call. */
export function noteBusy(): void {
  busy = true
  if (idleCheck === null && collectsWhenIdle) {
    idleCheck = setInterval(checkIdle, COLLECT_WHEN_IDLE_MS)
    idleCheck.unref()
  }
}

function checkIdle(): void {
  if (busy) {
    busy = false
    return
  }
  clearInterval(idleCheck!)
  idleCheck = null
  collectGarbageSoon()
}
