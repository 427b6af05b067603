// What makes a PGlite in a worker thread stoppable from outside, set up in that thread before PGlite starts: the
// deadline Postgres arms for its own timeouts (statement_timeout) published where the server's thread can read it,
// and, on globalThis, the two calls the server's thread makes into this one through the inspector while a statement
// runs (no message can reach a thread whose event loop is busy in a call): cancel the statement, or fire Postgres's
// timer.

import type { PGlite } from '@electric-sql/pglite'

/** The name of the object the server's thread calls into (see interrupt.ts). */
export const ENGINE_GLOBAL = '__pgliteDevDbEngine'

/**
 * Shared between the two threads: Int32 words (Control) and, at byte 8, the deadline of Postgres's timer (ms since
 * the epoch; 0: none armed, or it fired).
 */
export const CONTROL_BYTES = 52
export function controlViews(buffer: SharedArrayBuffer): { words: Int32Array; deadline: Float64Array } {
  return { words: new Int32Array(buffer, 0, CONTROL_BYTES / 4), deadline: new Float64Array(buffer, 8, 1) }
}
export const Control = {
  /** The id of the call PGlite is running (0: none; minus its id once it ended). */
  Current: 0,
  /** The id of the call whose reply waits for its client to read (written straight to its socket), or 0. */
  Blocked: 1,
  /** The id of a call whose client is gone: the rest of its reply goes nowhere. (Words 2 and 3 are the deadline.) */
  Abandoned: 4,
  /** With Abandoned: in a call of units, the unit whose client is gone (-1: the whole call). */
  AbandonedUnit: 5,
  /**
   * The id of the call whose last ReadyForQuery the thread is writing (or wrote) straight to its client: the client
   * may have its answer before the call ends (calls.ts answeredEnd).
   */
  Answered: 6,
  /** How many units were added to the call of units running now, or -1: it takes no more (more-units.ts). */
  MoreUnits: 7,
  /** In the call of units running now, the last unit whose answer the thread wrote straight to its client (or -1). */
  AnsweredUnit: 8,
  /** 1: the server's thread wants a wake-up at the next unit's end (more-units.ts readEndsOnTraffic). */
  UnitEndWanted: 9,
  /** 1 while the thread waits for one more unit (more-units.ts `next`): only then does adding one wake it. */
  Lingering: 10,
  /** When the server's thread wants the client's socket back from the thread that reads it (lent-reads.ts LendWord). */
  Lend: 11,
  /** 1 while one database alone ran calls lately: its thread may spin for the next call rather than sleep. */
  Alone: 12,
} as const

/**
 * A due timer fires only once the call has run this long: PGlite first disables the idle timeouts it armed when the
 * previous call ended (a client's own idle_in_transaction_session_timeout), whose handler would end the one backend.
 */
const FIRE_AFTER_CALL_START_MS = 5

interface WasmSide {
  /** The exports of PGlite's live WASM instance (it instantiates others, for initdb, beside it). */
  exports: Record<string, unknown> | null
}

/**
 * Before PGlite is created in this thread: its WASM instance's `_setitimer_js` import is replaced, so that Postgres's
 * timer is recorded in `control` instead of set as a JS timer here. A JS timer could only fire between calls (a call
 * holds the thread), where the timeouts Postgres would fire are idle ones whose handler is FATAL for the one session:
 * the server has its own idle timeouts. During a call, the server's thread fires the timer at its deadline
 * (fireTimer below), which is how statement_timeout works.
 */
export function interceptTimers(control: SharedArrayBuffer): WasmSide {
  const { deadline } = controlViews(control)
  const side: WasmSide = { exports: null }
  // The global WebAssembly, which this project's libs (ES2023, no DOM) do not declare as a value.
  const wasmGlobal = (
    globalThis as unknown as {
      WebAssembly: {
        instantiate: (source: unknown, imports?: Record<string, Record<string, unknown>>) => Promise<unknown>
      }
    }
  ).WebAssembly
  const instantiate = wasmGlobal.instantiate.bind(wasmGlobal)
  wasmGlobal.instantiate = async (source, imports) => {
    const env = imports?.env
    // PGlite's own module has a plain import object; an extension's (a side module) resolves its imports through a
    // Proxy, left as it is.
    if (env && Object.hasOwn(env, '_setitimer_js')) {
      imports = {
        ...imports,
        env: {
          ...env,
          _setitimer_js: (which: number, ms: number): number => {
            if (which !== 0) return 0 // ITIMER_REAL is the only one Postgres uses
            deadline[0] = ms > 0 ? Date.now() + ms : 0
            return 0
          },
        },
      }
    }
    const result = (await instantiate(source, imports)) as {
      instance?: { exports: Record<string, unknown> }
      exports?: Record<string, unknown>
    }
    const exports = result.instance?.exports ?? result.exports
    // The live instance is the one whose memory PGlite keeps (checked once PGlite is open: bind()).
    if (exports && typeof exports._emscripten_timeout === 'function') candidates.push({ exports, memory: env?.memory })
    return result
  }
  const candidates: Array<{ exports: Record<string, unknown>; memory: unknown }> = []
  bindings.set(side, candidates)
  return side
}

const bindings = new WeakMap<WasmSide, Array<{ exports: Record<string, unknown>; memory: unknown }>>()

/** Postgres's globals in PGlite's module that a cancel sets. */
interface PGliteModule {
  HEAPU8: Uint8Array
  wasmMemory: { buffer: ArrayBuffer }
  _QueryCancelPending: number
  _InterruptPending: number
  _MyLatch: number
}

/** Around each call: which one runs (Control.Current) and since when; in a call of units, which unit runs. */
export interface CallHooks {
  beforeCall(id: number): void
  /** Unit `unit` of the call is about to run: false if it must not (it was stopped before it began). */
  beforeUnit(id: number, unit: number): boolean
  /** The unit ended: a cancel aimed at it must not reach the next. */
  afterUnit(id: number): void
  afterCall(id: number): void
}

/**
 * PGlite is open: expose the calls the server's thread makes into this one. Each checks that the call it was aimed at
 * is still the one running; a late one does nothing (and a flag set as a call ends is cleared by `afterCall`).
 */
export function exposeStopping(db: PGlite, side: WasmSide, control: SharedArrayBuffer): CallHooks {
  const { words, deadline } = controlViews(control)
  let callStarted = 0
  const mod = (db as unknown as { mod: PGliteModule }).mod
  side.exports = bindings.get(side)?.find((candidate) => candidate.memory === mod.wasmMemory)?.exports ?? null
  let stoppedCall = 0
  const isRunning = (id: number): boolean => id > 0 && Atomics.load(words, Control.Current) === id
  // PGlite's pg_sleep (WaitLatch) spins on the clock and only returns early for a set latch.
  const setLatch = (): void => {
    const heap = new Int32Array(mod.wasmMemory.buffer)
    const latch = heap[mod._MyLatch >> 2]!
    if (latch !== 0) heap[latch >> 2] = 1
  }
  /**
   * In a call of units: the unit that began last (-1 before the first), whether it still runs (a cancel for it after
   * it ended must not reach the next unit), and the units stopped before they began (not run).
   */
  let currentUnit = -1
  let unitRunning = false
  const skipped = new Set<number>()
  // Between two units of a call nothing runs: a cancel would reach the next, and a due timer is an idle one.
  const betweenUnits = (): boolean => currentUnit >= 0 && !unitRunning
  const clearFlags = (): void => {
    mod.HEAPU8[mod._QueryCancelPending] = 0
    mod.HEAPU8[mod._InterruptPending] = 0
  }
  const engine = {
    /**
     * Cancel the statement running in call `id` ('canceled'); in a call of units, unit `unit`'s: one that has not
     * begun is not run ('skipped', the server answers its client); '' if it ended or no such call runs.
     */
    cancel(id: number, unit = -1): 'canceled' | 'skipped' | '' {
      if (!isRunning(id) || (unit < 0 && betweenUnits())) return ''
      if (unit > currentUnit) return engine.skip(id, unit) ? 'skipped' : ''
      if (unit >= 0 && (unit < currentUnit || !unitRunning)) return ''
      stoppedCall = id
      mod.HEAPU8[mod._QueryCancelPending] = 1
      mod.HEAPU8[mod._InterruptPending] = 1
      setLatch()
      return 'canceled'
    },
    /** Unit `unit` of call `id`, if it has not begun, is not run (its client is answered by the server). */
    skip(id: number, unit: number): boolean {
      if (!isRunning(id) || unit <= currentUnit) return false
      skipped.add(unit)
      return true
    },
    /** Postgres's timer is due: run its handler now, as the JS timer would have (Postgres checks which timeout). */
    fireTimer(id: number): boolean {
      const timeout = side.exports?._emscripten_timeout as ((which: number, now: number) => void) | undefined
      if (!isRunning(id) || betweenUnits() || !timeout || performance.now() - callStarted < FIRE_AFTER_CALL_START_MS)
        return false
      stoppedCall = id
      // Fired: the handler arms the timer again (through _setitimer_js) if a timeout is still to come.
      deadline[0] = 0
      timeout(0, performance.now())
      setLatch()
      return true
    },
  }
  ;(globalThis as Record<string, unknown>)[ENGINE_GLOBAL] = engine
  return {
    beforeCall(id: number): void {
      callStarted = performance.now()
      currentUnit = -1
      unitRunning = false
      Atomics.store(words, Control.Current, id)
      Atomics.notify(words, Control.Current)
    },
    beforeUnit(_id: number, unit: number): boolean {
      // Each unit is a call into PGlite of its own (see FIRE_AFTER_CALL_START_MS).
      callStarted = performance.now()
      currentUnit = unit
      unitRunning = !skipped.delete(unit)
      return unitRunning
    },
    afterUnit(id: number): void {
      unitRunning = false
      if (stoppedCall !== id) return
      stoppedCall = 0
      clearFlags()
    },
    afterCall(id: number): void {
      // Minus the id: the call ended (the server's thread tells a call not begun yet from one that is over).
      Atomics.store(words, Control.Current, -id)
      Atomics.notify(words, Control.Current)
      skipped.clear()
      if (stoppedCall !== id) return
      stoppedCall = 0
      clearFlags()
    },
  }
}
