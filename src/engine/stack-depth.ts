// Deep recursion in Postgres (a recursive function, deeply nested jsonb, a long chain of operators) ends as on a
// server: in "stack depth limit exceeded" (54001), the session intact. Postgres's check measures its stack in WASM
// memory, but each level also takes many times as much of the native stack of the thread running it; V8's stack
// overflow would come first (server/session/pglite-guards.ts: then the database is lost, as after a crash).

import { capIntSetting, moduleOf } from '../server/session/guc.ts'

/**
 * A database thread's stack (Worker resourceLimits; on Linux reserved, and used only as deep as a recursion goes).
 * Measured: a thread started after another database's recursion took between 16 and 24 MB to reach 250kB in jsonb
 * nested 100,000 deep (test/wire/deep-recursion.test.ts), more than the first thread to recurse, so this leaves room.
 */
export const ENGINE_THREAD_STACK_MB = 64
/**
 * Postgres's max_stack_depth for every database: about the recursion depth PostgreSQL's 2MB allows natively (a
 * recursive SQL function: 7,900 levels here, 7,263 on PostgreSQL 15).
 */
export const MAX_STACK_DEPTH = '250kB'
/** MAX_STACK_DEPTH in kB, also the most a client may set: more would let the thread's stack overflow first. */
export const MAX_STACK_DEPTH_KB = Number.parseInt(MAX_STACK_DEPTH, 10)

/** max_stack_depth's default and least value, and its most before the cap (MAX_KILOBYTES on 32-bit WASM). */
const BOOT_AND_MIN_KB = 100
const POSTGRES_MAX_KB = 2_097_151

/**
 * A client could raise max_stack_depth (SET, set_config, ALTER ROLE ... SET, a function's SET clause) and recurse until
 * the thread's stack overflows, which ends the database for every client. So the most Postgres accepts for it becomes
 * MAX_STACK_DEPTH (server/session/guc.ts capIntSetting). False if the entry was not found (another PGlite's layout:
 * test/wire/deep-recursion.test.ts then fails).
 */
export function capStackDepth(db: unknown): boolean {
  const mod = moduleOf(db)
  return (
    mod !== null &&
    capIntSetting(mod, 'max_stack_depth', { least: BOOT_AND_MIN_KB, most: POSTGRES_MAX_KB, cap: MAX_STACK_DEPTH_KB })
  )
}
