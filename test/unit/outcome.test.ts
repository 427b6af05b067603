// countingStrayRejections: a rejection no caller holds (postgres.js's array-type lookup on connect) is counted in the
// scenario that provoked it, and never reaches vitest as an unhandled error of the run.
import { describe, expect, it } from 'vitest'
import { attempt, countingStrayRejections, createTally, verdictOf } from '../../harness/scenarios/outcome.ts'

/** What postgres.js does in fetchArrayTypes: a query's failure in a promise that no one awaits. */
function strayServerError(): void {
  const error = Object.assign(new Error('bind message supplies 0 parameters, but prepared statement "" requires 2'), {
    code: '08P01',
  })
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- the unhandled rejection under test
  Promise.reject(error)
}

describe('countingStrayRejections', () => {
  it('counts a stray rejection during the run as a failed request of that run', async () => {
    const outcome = await countingStrayRejections(async () => {
      const tally = createTally()
      await attempt(tally, async () => true)
      strayServerError()
      // The scenario goes on past the turn in which Node reports the rejection.
      await new Promise((resolve) => setImmediate(resolve))
      await attempt(tally, async () => true)
      return verdictOf(tally)
    })
    expect(outcome).toMatchObject({
      kind: 'error',
      sqlstate: '08P01',
      tally: { queries: 3, ok: 2, errors: { '08P01': 1 } },
    })
  })

  it("counts one made in the run's last turn too", async () => {
    const outcome = await countingStrayRejections(async () => {
      strayServerError()
      return verdictOf(createTally())
    })
    expect(outcome.tally).toMatchObject({ queries: 1, ok: 0, errors: { '08P01': 1 } })
  })

  it('leaves a run without one as it was', async () => {
    const tally = createTally()
    await attempt(tally, async () => true)
    const outcome = await countingStrayRejections(async () => verdictOf(tally, { note: 1 }))
    expect(outcome).toEqual({ kind: 'ok', tally, details: { note: 1 } })
  })
})
