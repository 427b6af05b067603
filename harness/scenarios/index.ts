// The interleaving workloads that scripts/repro-interleave.ts runs against any URL (scenarios a–e).
// Scenarios that need a particular server config (idle-in-transaction, max-connections) are not in this list.
import { interleaveRawScenario } from './interleave-raw.ts'
import { pgLargeParamScenario } from './pg-large-param.ts'
import { pgPoolIsolationScenario, pgPoolMixedScenario } from './pg-pool-mixed.ts'
import { pgNamedStatementsScenario } from './pg-named-statements.ts'
import { pgSessionSettingsScenario } from './pg-session-settings.ts'
import { pgListenNotifyScenario } from './pg-listen-notify.ts'
import { pgDiscardAllScenario } from './pg-discard-all.ts'
import { copyInOutScenario } from './copy.ts'
import {
  backendAdvisoryScenario,
  backendCursorsScenario,
  backendIdentityScenario,
  backendTempScenario,
  pgjdbcScenario,
  psycopgScenario,
} from './foreign-clients.ts'
import { psqlScriptsScenario } from './psql.ts'
import { pgDumpRestoreScenario } from './pg-dump.ts'
import { drizzleKitToolScenario } from './drizzle-kit.ts'
import { driversScenario } from './drivers.ts'
import { pipelineErrorsScenario } from './pipeline-errors.ts'
import { pgbenchPreparedScenario, pgbenchScenario } from './pgbench.ts'
import { postgresJsParamsScenario } from './postgres-js-params.ts'
import { backendNodeScenario } from './backend-node.ts'
import type { Scenario } from './outcome.ts'

export const interleavingScenarios: Scenario[] = [
  interleaveRawScenario,
  postgresJsParamsScenario,
  pgLargeParamScenario,
  pgPoolMixedScenario,
  pgPoolIsolationScenario,
  pgbenchScenario,
  pgbenchPreparedScenario,
  pgNamedStatementsScenario,
  pgSessionSettingsScenario,
  pgListenNotifyScenario,
  pgDiscardAllScenario,
  copyInOutScenario,
  psycopgScenario,
  pgjdbcScenario,
  psqlScriptsScenario,
  pgDumpRestoreScenario,
  drizzleKitToolScenario,
  driversScenario,
  pipelineErrorsScenario,
  backendCursorsScenario,
  backendTempScenario,
  backendAdvisoryScenario,
  backendIdentityScenario,
  backendNodeScenario,
]
