// The workloads of test/wire/concurrency-*.test.ts against real PostgreSQL (test/oracles.ts starts 15 and 18 for the
// run and sets PG_ORACLE_URL and PG_ORACLE_18_URL): every scenario that needs no particular server setting must pass there, so
// each check is known to test the right thing, on the version PGlite is as well as on Debian's.
import { describe, test } from 'vitest'
import { interleavingScenarios } from '../../harness/scenarios/index.ts'
import { countingStrayRejections } from '../../harness/scenarios/outcome.ts'
import { expectAllOk } from '../helpers/concurrency-cases.ts'

const oracles = [
  ['postgres 15 oracle (PG_ORACLE_URL)', process.env.PG_ORACLE_URL],
  ['postgres 18 oracle (PG_ORACLE_18_URL)', process.env.PG_ORACLE_18_URL],
] as const
for (const [label, oracleUrl] of oracles) {
  describe.runIf(oracleUrl)(label, () => {
    for (const scenario of interleavingScenarios) {
      test(scenario.name, { timeout: 150_000 }, async () =>
        expectAllOk(await countingStrayRejections(() => scenario.run(oracleUrl!))),
      )
    }
  })
}
