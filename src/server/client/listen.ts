// LISTEN/NOTIFY, per client: which channels a client's statements listen on or stop listening on, read from its SQL
// and checked against pg_listening_channels() once its work is done (a LISTEN in a rolled-back transaction never
// took effect). session/listeners.ts keeps who listens where; the server routes each notification by its channel.

import { HEADER_LENGTH } from '../protocol/codes.ts'
import { encodeQuery } from '../protocol/frontend.ts'
import { isName, statements } from '../sql/tokens.ts'

export type ListenCommand = { kind: 'listen'; channel: string } | { kind: 'unlisten'; channel: string | null }

/**
 * The LISTEN and UNLISTEN statements in `sql`, in order, with channel names as Postgres folds them (unquoted
 * names to lower case). Literals, comments and dollar quotes are skipped, so `select 'listen x'` is not a LISTEN.
 */
export function listenCommands(sql: string): ListenCommand[] {
  const commands: ListenCommand[] = []
  for (const [verb, second] of statements(sql)) {
    if (verb?.kind !== 'word') continue
    if (verb.text === 'listen' && isName(second)) commands.push({ kind: 'listen', channel: second.text })
    else if (verb.text === 'unlisten' && isName(second)) commands.push({ kind: 'unlisten', channel: second.text })
    else if (verb.text === 'unlisten' && second?.text === '*') commands.push({ kind: 'unlisten', channel: null })
  }
  return commands
}

export const LISTENING_CHANNELS_QUERY = encodeQuery('SELECT pg_catalog.pg_listening_channels()')

/** The channel of a NotificationResponse (whole message): after the header and the int32 process id. */
export function notificationChannel(message: Buffer): string {
  const start = HEADER_LENGTH + 4
  return message.toString('utf8', start, message.indexOf(0, start))
}
