// What one client's SQL sees of the server's clients and does to them: their rows in pg_stat_activity (its own among
// them), pg_cancel_backend and pg_terminate_backend of another (answered after the caller's answer: signals.ts).

import type { Socket } from 'node:net'
import { SqlState, WireError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { TxStatus } from '../protocol/codes.ts'
import type { ClientActivity } from '../features/server-functions-session.ts'
import { activityOf, type LastStatement } from './activity.ts'
import type { ServedConnection } from './host.ts'
import type { Membership } from './membership.ts'
import type { TerminateAnswers } from './signals.ts'
import type { ConnectionStates } from './connection-state.ts'

const ADMIN_SHUTDOWN = new WireError(
  'FATAL',
  SqlState.AdminShutdown,
  'terminating connection due to administrator command',
)

/** What a client's row in pg_stat_activity is read from. */
export interface ActivitySource {
  readonly processId: number
  readonly database: string
  readonly startupParams: ReadonlyMap<string, string>
  readonly applicationName: string
  readonly socket: Socket
  readonly states: ConnectionStates
  readonly blockedOnOutput: boolean
}

/** The client's whole row in pg_stat_activity. */
export function activityRow(
  client: ActivitySource,
  membership: Membership,
  statement: LastStatement,
  startedAt: string,
): ClientActivity {
  const { current, since } = client.states
  const batches = membership.batches
  return activityOf({
    processId: client.processId,
    database: client.database,
    user: client.startupParams.get('user') ?? 'postgres',
    applicationName: client.applicationName,
    clientAddress: client.socket.remoteAddress ?? null,
    clientPort: client.socket.remotePort ?? null,
    startedAt,
    state: current,
    since,
    idleInTransaction:
      current === 'holding' && batches?.idleInTransaction ? { aborted: membership.txStatus === TxStatus.Failed } : null,
    blockedOnOutput: client.blockedOnOutput,
    waitingForLock: batches?.wait.waitingForLock ?? false,
    statement,
  })
}

/** pg_cancel_backend or pg_terminate_backend of the client `processId` among `clients`; false if none has it. */
export function signalPeer(
  clients: ServedConnection[],
  processId: number,
  op: 'cancel' | 'terminate',
  answers: TerminateAnswers,
  log: Logger,
): boolean {
  const target = clients.find((client) => client.processId === processId)
  log.debug('signal from a function', { op, target: processId, matched: target !== undefined })
  if (!target) return false
  if (op === 'cancel') target.cancel()
  else void target.terminate(ADMIN_SHUTDOWN, answers.answerTo(processId))
  return true
}
