// Advisory locks, per client, for one database. PGlite's one backend would hold every client's locks as its own
// (a second client's pg_try_advisory_lock returns true); here the server keeps who holds what, the session's
// functions (features/server-functions-session.ts) decide from it and report what they took and gave back, and a
// client whose pg_advisory_lock must wait waits here, without holding the session, until the lock is free.
// https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS

/** A lock as the session's functions name it: the key (`n` for a bigint, `a,b` for two ints) and the mode. */
export type LockMode = 'x' | 's'
export type LockLevel = 'session' | 'xact'

interface Hold {
  processId: number
  key: string
  mode: LockMode
  level: LockLevel
}

/** Why a wait for a lock ended without it. */
export class LockWaitError extends Error {
  constructor(
    readonly code: '40P01' | '55P03',
    message: string,
    readonly detail?: string,
  ) {
    super(message)
  }
}

interface Waiter {
  processId: number
  key: string
  mode: LockMode
  wake: () => void
}

export class AdvisoryLocks {
  /** Every lock held, one entry per acquisition (Postgres counts them: each must be released). */
  #holds: Hold[] = []
  readonly #waiters = new Set<Waiter>()

  get size(): number {
    return this.#holds.length
  }

  /** What the session is told: [key, holder, mode, level] for each acquisition. */
  snapshot(): Array<[string, number, LockMode, LockLevel]> {
    return this.#holds.map((h) => [h.key, h.processId, h.mode, h.level])
  }

  /** A client that holds `key` in a mode that conflicts with `mode`, other than `processId`; null if none. */
  holderAgainst(processId: number, key: string, mode: LockMode): number | null {
    for (const h of this.#holds)
      if (h.key === key && h.processId !== processId && (h.mode === 'x' || mode === 'x')) return h.processId
    return null
  }

  acquired(processId: number, key: string, mode: LockMode, level: LockLevel): void {
    this.#holds.push({ processId, key, mode, level })
  }

  /** One session-level acquisition of `key` in `mode` released. */
  released(processId: number, key: string, mode: LockMode): void {
    const at = this.#holds.findIndex(
      (h) => h.processId === processId && h.key === key && h.mode === mode && h.level === 'session',
    )
    if (at >= 0) this.#holds.splice(at, 1)
    this.#wake()
  }

  /** pg_advisory_unlock_all: the client's session-level locks. */
  releasedAll(processId: number): void {
    this.#drop((h) => h.processId === processId && h.level === 'session')
  }

  /** The client's transaction ended: its transaction-level locks go. */
  transactionEnded(processId: number): void {
    this.#drop((h) => h.processId === processId && h.level === 'xact')
  }

  /** The client is gone: all of its locks go, and so does any wait of its. */
  clientLeft(processId: number): void {
    this.#drop((h) => h.processId === processId)
  }

  /** Whether the client holds any lock of the transaction level (released when its transaction ends). */
  holdsTransactionLocks(processId: number): boolean {
    return this.#holds.some((h) => h.processId === processId && h.level === 'xact')
  }

  /**
   * Wait until no other client holds `key` in a conflicting mode. Ends in LockWaitError: 40P01 when the holders wait
   * for this client (a deadlock, which Postgres detects too), or as `stop` rejects (a cancel, a timeout).
   */
  async waitFor(processId: number, key: string, mode: LockMode, stop: Promise<never>): Promise<void> {
    for (;;) {
      const holder = this.holderAgainst(processId, key, mode)
      if (holder === null) return
      if (this.#waitsFor(holder, processId, new Set())) {
        throw new LockWaitError(
          '40P01',
          'deadlock detected',
          `Process ${processId} waits for advisory lock ${key}, held by process ${holder}, which waits for a lock process ${processId} holds.`,
        )
      }
      let wake!: () => void
      const woken = new Promise<void>((resolve) => (wake = resolve))
      const waiter: Waiter = { processId, key, mode, wake }
      this.#waiters.add(waiter)
      try {
        await Promise.race([woken, stop])
      } finally {
        this.#waiters.delete(waiter)
      }
    }
  }

  /** Whether `from` waits, directly or through others, for a lock `target` holds. */
  #waitsFor(from: number, target: number, seen: Set<number>): boolean {
    if (seen.has(from)) return false
    seen.add(from)
    for (const waiter of this.#waiters) {
      if (waiter.processId !== from) continue
      for (const h of this.#holds) {
        if (h.key !== waiter.key || h.processId === from || (h.mode !== 'x' && waiter.mode !== 'x')) continue
        if (h.processId === target || this.#waitsFor(h.processId, target, seen)) return true
      }
    }
    return false
  }

  #drop(which: (hold: Hold) => boolean): void {
    const before = this.#holds.length
    this.#holds = this.#holds.filter((h) => !which(h))
    if (this.#holds.length !== before) this.#wake()
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter.wake()
  }
}
