// One path for every takeover, where the server acts in a client's message's place: COPY FROM STDIN
// (features/copy-in.ts), CREATE/DROP DATABASE and the reset (features/database-commands.ts), DISCARD and DEALLOCATE
// ALL (features/discard.ts).

import { startCopy } from '../features/copy-in.ts'
import { bindDatabaseCommand, queryDatabaseCommand, taggedExecute } from '../features/database-commands.ts'
import { discardForClient, executeDiscard, queryWithStandIns } from '../features/discard.ts'
import type { Takeover } from './messages.ts'
import type { CopyIn } from '../features/copy-in.ts'
import type { NextRead, Turn } from '../features/turn.ts'
import { TxStatus } from '../protocol/codes.ts'

/** How the client's next messages are read after a takeover: as the data of a COPY FROM STDIN, or as NextRead says. */
export type TakeoverEnd = CopyIn | NextRead

/** The server acts in the message's place; what it returns says how the client's next messages are read. */
export async function takeOver(turn: Turn, takeover: Exclude<Takeover, { kind: 'terminate' }>): Promise<TakeoverEnd> {
  // After an error in an open pipeline Postgres ignores every message until Sync, and in a failed transaction block
  // it refuses every statement (25P02): PGlite does either, given the message, and nothing is carried out.
  const { backend } = turn
  if (backend.errorPending || backend.txStatus === TxStatus.Failed) {
    await turn.run(takeover.frame)
    return null
  }
  switch (takeover.kind) {
    case 'copy-in':
      return startCopy(turn, takeover.copy, takeover.frame, takeover.viaQuery)
    case 'database-command':
      if (takeover.via === 'bind') return bindDatabaseCommand(turn, takeover.command, takeover.frame)
      await queryDatabaseCommand(turn, takeover.command, takeover.frame)
      return null
    case 'tagged-execute':
      await taggedExecute(turn, takeover.command, takeover.frame)
      return null
    case 'discard':
      if (takeover.via === 'execute') return executeDiscard(turn, takeover.command, takeover.frame)
      await discardForClient(turn, takeover.command, takeover.frame)
      return null
    case 'query-with-stand-ins':
      await queryWithStandIns(turn, takeover.standIns, takeover.functions, takeover.frame)
      return null
  }
}
