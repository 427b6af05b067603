// An exception that leaves Postgres's main loop other than as Postgres's own longjmp, such as V8's stack overflow on
// deep recursion (engine/stack-depth.ts), ends the call as a fatal error: PGlite's loop would swallow it and go on
// with a broken backend, and the client would wait for an answer that never comes.

interface MainLoopModule {
  _PostgresMainLoopOnce(): void
  _PostgresSendReadyForQueryIfNecessary(): void
  _pgl_pq_flush(): void
  stackRestore(pointer: number): void
}

const watched = new WeakSet<object>()

/** Watch `db`'s calls (a PGlite; anything else, such as a database thread, is left alone). Nothing runs after one. */
export function surfaceLostErrors(db: object): void {
  const mod = (db as unknown as { mod?: Partial<MainLoopModule> }).mod
  const longjmp = (db as unknown as { POSTGRES_MAIN_LONGJMP?: unknown }).POSTGRES_MAIN_LONGJMP
  if (watched.has(db) || !mod || longjmp === undefined) return
  const { _PostgresMainLoopOnce: loopOnce, _PostgresSendReadyForQueryIfNecessary: ready, _pgl_pq_flush: flush } = mod
  const { stackRestore } = mod
  if (!loopOnce || !ready || !flush || !stackRestore) return
  watched.add(db)
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
  const reason = cause instanceof Error ? cause.message : String(cause)
  return Object.assign(new Error(`the database's backend failed: ${reason}`, { cause }), { name: 'ExitStatus' })
}
