// Seeded randomness for the fuzz and load tests: one seed per run, taken from FUZZ_SEED or drawn fresh, and named in
// every failure so the run can be replayed (`FUZZ_SEED=<seed> npx vitest run test/<file>`). Same seed, same inputs;
// only the timing of concurrent clients varies between runs.

export interface Rng {
  /** A float in [0, 1). */
  next(): number
  /** An integer in [min, max]. */
  int(min: number, max: number): number
  pick<T>(items: readonly T[]): T
  chance(p: number): boolean
  bytes(length: number): Buffer
  /** An independent stream for worker `index`: its draws do not depend on how often other workers drew. */
  fork(index: number): Rng
}

/** mulberry32: 32 bits of state, fine for choosing inputs (not for cryptography). */
export function createRng(seed: number): Rng {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  const rng: Rng = {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => {
      if (items.length === 0) throw new Error('pick from an empty list')
      return items[Math.floor(next() * items.length)]!
    },
    chance: (p) => next() < p,
    bytes: (length) => {
      const out = Buffer.allocUnsafe(length)
      for (let i = 0; i < length; i++) out[i] = Math.floor(next() * 256)
      return out
    },
    fork: (index) => createRng(Math.imul((seed ^ 0x9e3779b9) >>> 0, index + 1) ^ Math.imul(index + 1, 0x85ebca6b)),
  }
  return rng
}

/** FUZZ_SEED when set (a decimal or 0x number), else a fresh random seed. */
export function runSeed(): number {
  const configured = process.env.FUZZ_SEED
  if (configured === undefined || configured === '') return Math.floor(Math.random() * 2 ** 32)
  const seed = Number(configured)
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)
    throw new Error(`FUZZ_SEED must be an integer in [0, 2^32), got ${configured}`)
  return seed
}

/** Runs `body`; a failure's message is prefixed with the seed and how to replay it (the stack and diff are kept). */
export async function withSeed<T>(seed: number, file: string, body: () => Promise<T> | T): Promise<T> {
  try {
    return await body()
  } catch (error) {
    const hint = `[FUZZ_SEED=${seed}; replay: FUZZ_SEED=${seed} npx vitest run ${file}] `
    if (error instanceof Error) {
      error.message = hint + error.message
      throw error
    }
    throw new Error(hint + String(error), { cause: error })
  }
}
