// One path for every takeover, where the server acts in a client's message's place: COPY FROM STDIN (copy-in.ts),
// CREATE/DROP DATABASE and the reset (database-commands.ts), DISCARD and DEALLOCATE ALL (discard-all.ts).

import { startCopy } from './copy-in.ts'
import { bindDatabaseCommand, queryDatabaseCommand, taggedExecute } from './database-commands.ts'
import { discardForClient, executeDiscard, queryWithStandIns } from './discard-all.ts'
import type { Takeover } from './messages.ts'
import type { TakeoverEnd, Turn } from './turn.ts'

/** The server acts in the message's place; what it returns says how the client's next messages are read. */
export async function takeOver(turn: Turn, takeover: Exclude<Takeover, { kind: 'terminate' }>): Promise<TakeoverEnd> {
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
