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

/**
 * Settings that end the backend, which here is the database's one session, so every client of it. With
 * exit_on_error any ERROR ends it; transaction_timeout ends it (FATAL 25P04) once a transaction has run that long.
 * On PostgreSQL either ends one client's connection. Here no client may set them.
 */
export const SESSION_ENDING_SETTINGS = ['exit_on_error', 'transaction_timeout'] as const

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
 * Makes each of `names` a setting no client can change. False if one was not where expected (another PGlite's
 * layout, or no find_option): that one stays as it was.
 */
export function lockSettings(db: unknown, names: readonly string[]): boolean {
  const mod = (db as { mod?: Partial<GucModule> }).mod
  if (!mod?._find_option || !mod._malloc || !mod._free || !mod.HEAPU8 || !mod.wasmMemory) return false
  let locked = true
  for (const name of names) {
    const entry = findSetting(mod as GucModule, name)
    const heap = new Int32Array(mod.wasmMemory.buffer)
    const context = entry === 0 ? -1 : heap[(entry >> 2) + 1]!
    if (entry === 0 || readName(mod.HEAPU8, heap[entry >> 2]!, name.length) !== name || (context !== PGC_USERSET && context !== PGC_SUSET && context !== PGC_INTERNAL)) {
      locked = false
      continue
    }
    heap[(entry >> 2) + 1] = PGC_INTERNAL
  }
  return locked
}

function readName(heap: Uint8Array, at: number, length: number): string {
  if (at <= 0 || at + length >= heap.length || heap[at + length] !== 0) return ''
  return Buffer.from(heap.buffer, heap.byteOffset + at, length).toString('latin1')
}
