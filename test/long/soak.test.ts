// The soak (scripts/soak.ts), short, in CI: node-postgres and postgres.js pools, savepoints, pipelines, COPY in and
// out, LISTEN/NOTIFY, named statements and clients cut off mid-transaction against one server, every answer
// checked. It must end with nothing unexpected, and every kind of operation must have run and been checked.
import { describe, expect, it, onTestFinished } from 'vitest'
import { formatReport, runSoak, type SoakReport } from '../../harness/soak/soak.ts'
import { copyTemplate, removeDataDir } from '../helpers/db.ts'
import { runSeed, withSeed } from '../../harness/seed.ts'

const SECONDS = 15
/** FUZZ_SEED replays a run's choices (each worker's sequence of operations); timing still varies. */
const seed = runSeed()
const FILE = 'test/long/soak.test.ts'

/** Every kind of operation the soak has; a short run that missed one checked less than it claims. */
const KINDS = [
  'audit',
  'kv.read',
  'kv.write',
  'kv.named',
  'tx.savepoint',
  'tx.transfer',
  'notify',
  'notify.tx',
  'js.read',
  'js.write',
  'js.pipeline',
  'js.tx-pipeline',
  'js.transfer',
  'js.notify',
  'named.calc',
  'named.get',
  'named.put',
  'named.reconnect',
  'copy.pg.autocommit',
  'copy.pg.commit',
  'copy.pg.rollback',
  'copy.js.autocommit',
  'copy.js.rollback',
  'copy.js.copy-fail',
  'disconnect.idle-in-transaction',
  'disconnect.statement-in-flight',
  'disconnect.js-ended',
  'disconnect.read',
  'disconnect.write',
  'listen.receive',
  'final.notifications',
  'final.connect',
  'final.audit',
  'final.keys',
  'final.copy',
]

function expectClean(report: SoakReport): void {
  console.log(formatReport(report))
  expect(report.tally.samples).toEqual([])
  expect(report.unexpected).toBe(0)
  const unchecked = KINDS.filter((kind) => !(report.tally.kinds[kind]?.ok ?? 0))
  expect(unchecked).toEqual([])
  // The provoked errors did happen (division by zero in savepoints and pipelines, the clients we cut off).
  expect(report.tally.errors['22012']?.expected).toBeGreaterThan(0)
  expect(report.tally.kinds['disconnect.idle-in-transaction']?.expectedErrors).toBeGreaterThan(0)
}

describe('soak', () => {
  it(
    `pglite-dev-db: ${SECONDS} s of mixed clients, every result as expected`,
    () =>
      withSeed(seed, FILE, async () => {
        const dataDir = await copyTemplate()
        onTestFinished(() => removeDataDir(dataDir))
        expectClean(await runSoak({ seconds: SECONDS, seed, dataDir, log: () => {} }))
      }),
    90_000,
  )

  // With PG_ORACLE_URL (a throwaway real PostgreSQL, as `.ci/run` starts): the checks themselves are right.
  const oracleUrl = process.env.PG_ORACLE_URL
  it.runIf(oracleUrl)(
    `real PostgreSQL (PG_ORACLE_URL): ${SECONDS} s, every result as expected`,
    () =>
      withSeed(seed, FILE, async () => {
        expectClean(await runSoak({ url: oracleUrl!, seconds: SECONDS, seed, log: () => {} }))
      }),
    90_000,
  )
})
