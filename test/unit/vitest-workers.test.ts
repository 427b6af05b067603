// pglite-dev-db/vitest loads a spare database per Vitest worker: the count is worked out as Vitest works out its own.
import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { workersOf } from '../../src/runners/workers.ts'

describe('the number of Vitest workers a globalSetup sees', () => {
  const cores = availableParallelism()

  it("is the project's maxWorkers, else the root's", () => {
    expect(workersOf({ config: { maxWorkers: 3 }, vitest: { config: { maxWorkers: 5 } } })).toBe(3)
    expect(workersOf({ config: {}, vitest: { config: { maxWorkers: 5 } } })).toBe(5)
  })

  it('is a share of the cores for a percentage', () => {
    expect(workersOf({ config: { maxWorkers: '100%' } })).toBe(cores)
    expect(workersOf({ config: { maxWorkers: '1%' } })).toBe(1)
  })

  it("is Vitest's default when nobody set it: every core but one, half of them in watch mode", () => {
    expect(workersOf({ config: {}, vitest: { config: {} } })).toBe(Math.max(1, cores - 1))
    expect(workersOf({ config: {}, vitest: { config: { watch: true } } })).toBe(Math.max(1, Math.floor(cores / 2)))
    expect(workersOf(undefined)).toBe(Math.max(1, cores - 1))
  })
})
