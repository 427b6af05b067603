// Postgres's table of settings (its GUC entries), reached through PGlite's exported find_option. The server changes
// an entry there, not a statement's text, so that every way of setting it (SET, set_config, ALTER ROLE, DATABASE or
// SYSTEM ... SET, a function's SET clause, a startup option) meets Postgres's own refusal.

/** What these need of PGlite's Emscripten module. */
export interface GucModule {
  wasmMemory: { buffer: ArrayBuffer }
  HEAPU8: Uint8Array
  _malloc(size: number): number
  _free(pointer: number): void
  _find_option(name: number, createPlaceholders: number, skipErrors: number, level: number): number
}

/** GucContext: set only by Postgres itself; a client's change fails with 55P02 "parameter ... cannot be changed". */
const PGC_INTERNAL = 0
const PGC_SUSET = 5
const PGC_USERSET = 6
/** An int setting's entry (struct config_int) has its variable, default, least and most within this many ints. */
const ENTRY_INTS = 32

/** The address of setting `name`'s entry (struct config_generic, its name first), or 0 if there is none. */
export function findSetting(mod: GucModule, name: string): number {
  const bytes = Buffer.from(`${name}\0`)
  const at = mod._malloc(bytes.length)
  mod.HEAPU8.set(bytes, at)
  try {
    return mod._find_option(at, 0, 1, 0)
  } finally {
    mod._free(at)
  }
}

/**
 * Settings that end the backend, which here is the database's one session, so every client of it: with
 * exit_on_error any ERROR ends it, and transaction_timeout ends it (FATAL 25P04) once a transaction has run that
 * long. On PostgreSQL either ends one client's connection. No client may turn exit_on_error on or off; a
 * transaction_timeout other than 0 is out of range (pg_dump sets 0, which stays allowed).
 */
export const SESSION_ENDING_SETTINGS = ['exit_on_error', 'transaction_timeout'] as const

/** Lock the settings of SESSION_ENDING_SETTINGS in `db` (a PGlite); false if one was not where expected. */
export function lockSessionEnders(db: unknown): boolean {
  const mod = moduleOf(db)
  if (!mod) return false
  const locked = lockSetting(mod, 'exit_on_error')
  return capIntSetting(mod, 'transaction_timeout', { least: 0, most: 2_147_483_647, cap: 0 }) && locked
}

/**
 * Makes `name` a setting no client can change. False if it was not where expected (another PGlite's layout): it
 * stays as it was.
 */
function lockSetting(mod: GucModule, name: string): boolean {
  const entry = findSetting(mod, name)
  if (entry === 0) return false
  const heap = new Int32Array(mod.wasmMemory.buffer)
  const context = heap[(entry >> 2) + 1]!
  if (readName(mod.HEAPU8, heap[entry >> 2]!, name.length) !== name) return false
  if (context !== PGC_USERSET && context !== PGC_SUSET && context !== PGC_INTERNAL) return false
  heap[(entry >> 2) + 1] = PGC_INTERNAL
  return true
}

/**
 * The most int setting `name` accepts becomes `cap`: a larger value is then refused as Postgres refuses any value out
 * of range (22023). Its default and least value must be `least`, and its most `most` (or `cap`, once capped). False if
 * the entry is not so (another PGlite's layout): it stays as it was.
 */
export function capIntSetting(
  mod: GucModule,
  name: string,
  range: { least: number; most: number; cap: number },
): boolean {
  const entry = findSetting(mod, name)
  const offset = intFieldsOffset(mod)
  if (entry === 0 || offset < 0) return false
  const heap = new Int32Array(mod.wasmMemory.buffer)
  const at = (entry >> 2) + offset
  if (
    heap[at] !== range.least ||
    heap[at + 1] !== range.least ||
    (heap[at + 2] !== range.most && heap[at + 2] !== range.cap)
  )
    return false
  heap[at + 2] = range.cap
  return true
}

/** max_stack_depth's default and least value (kB); its most is more (MAX_KILOBYTES, or less once capped). */
const STACK_DEPTH_LEAST = 100

/**
 * Where, in ints from an int setting's entry, its default value sits (then its least and most): found in
 * max_stack_depth's entry, whose values are unlike any of the general part before them; -1 if not found.
 */
function intFieldsOffset(mod: GucModule): number {
  const entry = findSetting(mod, 'max_stack_depth')
  if (entry === 0) return -1
  const heap = new Int32Array(mod.wasmMemory.buffer)
  for (let offset = 1; offset < ENTRY_INTS; offset++) {
    const i = (entry >> 2) + offset
    if (
      heap[i] === STACK_DEPTH_LEAST &&
      heap[i + 1] === STACK_DEPTH_LEAST &&
      heap[i - 1] !== 0 &&
      heap[i + 2]! > STACK_DEPTH_LEAST
    )
      return offset
  }
  return -1
}

/** The Emscripten module of a PGlite, if it has what these need. */
export function moduleOf(db: unknown): GucModule | null {
  const mod = (db as { mod?: Partial<GucModule> } | null)?.mod
  return mod?._find_option && mod._malloc && mod._free && mod.HEAPU8 && mod.wasmMemory ? (mod as GucModule) : null
}

function readName(heap: Uint8Array, at: number, length: number): string {
  if (at <= 0 || at + length >= heap.length || heap[at + length] !== 0) return ''
  return Buffer.from(heap.buffer, heap.byteOffset + at, length).toString('latin1')
}
