// Deep recursion in Postgres (a recursive function, deeply nested jsonb, a long chain of operators) ends as on a
// server: in "stack depth limit exceeded" (54001), the session intact. Postgres's check measures its stack in WASM
// memory, but each level also takes many times as much of the native stack of the thread running it; V8's stack
// overflow would come first (server/session/pglite-guards.ts: then the database is lost, as after a crash).

/**
 * A database thread's stack (Worker resourceLimits; reserved, not used until a recursion goes deep). The first thread
 * to recurse needs 30 to 40 times max_stack_depth; a thread started after that one's recursion took between 16 and
 * 24 MB to reach 250kB in jsonb nested 100,000 deep (test/wire/deep-recursion.test.ts), so this leaves room.
 */
export const ENGINE_THREAD_STACK_MB = 64
/**
 * Postgres's max_stack_depth for every database: about the recursion depth PostgreSQL's 2MB allows natively (a
 * recursive SQL function: 7,900 levels here, 7,263 on PostgreSQL 15).
 */
export const MAX_STACK_DEPTH = '250kB'

