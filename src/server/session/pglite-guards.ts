// What would end PGlite's one session for every client, or leave a client without an answer, made into what a server
// does.
// An exception that leaves Postgres's main loop other than as Postgres's own longjmp, such as V8's stack overflow on
// deep recursion (engine/stack-depth.ts), ends the call as a fatal error: PGlite's loop would swallow it and go on
// with a broken backend, and the client would wait for an answer that never comes. A program Postgres asks to run
// (COPY ... PROGRAM) fails as a command that cannot run, where PGlite would throw from inside Postgres. The settings
// that end a backend cannot be turned on (guc.ts).

import { lockSessionEnders } from './guc.ts'

interface MainLoopModule {
  _PostgresMainLoopOnce(): void
  _PostgresSendReadyForQueryIfNecessary(): void
  _pgl_pq_flush(): void
  stackRestore(pointer: number): void
  ___errno_location(): number
  HEAPU8: Uint8Array
}

/** The only command PGlite runs itself (its answer is a file in its bundle). */
const LOCALES_COMMAND = 'locale -a'
/** ENOSYS as Emscripten numbers it: Postgres says "could not execute command ...: Function not implemented". */
const ENOSYS = 52

const guarded = new WeakSet<object>()

/** Guard `db` (a PGlite; anything else, such as a database thread, is left alone). */
export function guardPGlite(db: object): void {
  if (guarded.has(db)) return
  guarded.add(db)
  surfaceLostErrors(db)
  refusePrograms(db)
  lockSessionEnders(db)
}

/** Nothing runs in `db` after an exception its loop would have swallowed. */
function surfaceLostErrors(db: object): void {
  const mod = (db as unknown as { mod?: Partial<MainLoopModule> }).mod
  const longjmp = (db as unknown as { POSTGRES_MAIN_LONGJMP?: unknown }).POSTGRES_MAIN_LONGJMP
  if (!mod || longjmp === undefined) return
  const { _PostgresMainLoopOnce: loopOnce, _PostgresSendReadyForQueryIfNecessary: ready, _pgl_pq_flush: flush } = mod
  const { stackRestore } = mod
  if (!loopOnce || !ready || !flush || !stackRestore) return
  let lost: unknown = null
  let broken = false
  mod._PostgresMainLoopOnce = () => {
    if (broken) throw brokenBackend(lost)
    try {
      loopOnce()
    } catch (error) {
      if ((error as { status?: unknown } | null)?.status !== longjmp) [lost, broken] = [error, true]
      throw error
    }
  }
  // PGlite's loop restores the stack in its catch: thrown from there, the error leaves the loop.
  mod.stackRestore = (pointer) => {
    stackRestore(pointer)
    if (broken) throw brokenBackend(lost)
  }
  mod._PostgresSendReadyForQueryIfNecessary = () => {
    if (!broken) ready()
  }
  mod._pgl_pq_flush = () => {
    if (!broken) flush()
  }
}

/** Named as PGlite's own exit (ExitStatus): the instance is unusable, and the server treats it so. */
function brokenBackend(cause: unknown): Error {
  // Emscripten's ExitStatus (Postgres's exit after a FATAL) has a message but is no Error.
  const message = (cause as { message?: unknown } | null)?.message
  const reason = typeof message === 'string' ? message : String(cause)
  return Object.assign(new Error(`the database's backend failed: ${reason}`, { cause }), { name: 'ExitStatus' })
}

/** popen() of anything but PGlite's own command returns NULL with ENOSYS: Postgres reports it as an ERROR. */
function refusePrograms(db: object): void {
  const pglite = db as { handleExternalCmd?: (command: string, mode: string) => number; mod?: Partial<MainLoopModule> }
  const run = pglite.handleExternalCmd?.bind(db)
  const mod = pglite.mod
  if (!run || !mod?.___errno_location || !mod.HEAPU8) return
  pglite.handleExternalCmd = (command, mode) => {
    if (command.startsWith(LOCALES_COMMAND)) return run(command, mode)
    new DataView(mod.HEAPU8!.buffer).setInt32(mod.___errno_location!(), ENOSYS, true)
    return 0
  }
}
