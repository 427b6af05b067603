// LISTEN/NOTIFY per client, on one shared session. Which channels a client's statements listen on or stop listening
// on is read from its SQL and checked against pg_listening_channels() once its work is done (a LISTEN in a
// rolled-back transaction never took effect); the session is then made to listen on exactly the channels somebody
// listens on (session/listeners.ts keeps who listens where), and a notification reaches every client listening on its
// channel.

import { HEADER_LENGTH } from '../protocol/codes.ts'
import { encodeQuery } from '../protocol/frontend-messages.ts'
import { isName, statements } from '../sql/tokens.ts'
import type { Logger } from '../../log.ts'
import { firstColumn } from '../protocol/backend-messages.ts'
import { listenSql } from '../session/listeners.ts'
import type { SessionMember, SharedSession } from '../session/session.ts'

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

/** What LISTEN/NOTIFY needs of a client's backend (ClientBackend). */
export interface ListeningBackend {
  readonly session: SharedSession
  readonly client: SessionMember
  /** Run the server's own statements in the session and return PGlite's whole reply. */
  capture(bytes: Uint8Array): Promise<Buffer>
}

/**
 * The client ran LISTEN, UNLISTEN or DISCARD (`commands`, from its statements): record where it listens now, from
 * its statements checked against what the session listens on, and make the session listen on exactly the channels
 * somebody listens on.
 */
export async function reconcileListening(
  backend: ListeningBackend,
  commands: readonly ListenCommand[],
  log: Logger,
): Promise<void> {
  const { client } = backend
  const { listeners } = backend.session
  const now = new Set(firstColumn(await backend.capture(LISTENING_CHANNELS_QUERY)))
  const unneeded: string[] = []
  for (const command of commands) {
    if (command.kind === 'listen') {
      if (now.has(command.channel)) listeners.listen(client, command.channel)
    } else {
      unneeded.push(...listeners.unlisten(client, command.channel))
    }
  }
  // Listening nobody accounts for is this client's (a LISTEN inside a function or DO block).
  for (const channel of now) if (!listeners.has(channel)) listeners.listen(client, channel)
  // Its UNLISTEN or DISCARD ALL also stopped the session listening where others still listen: listen again.
  const lost = [...listeners.channels()].filter((channel) => !now.has(channel))
  if (lost.length > 0) await backend.capture(encodeQuery(listenSql(lost, 'LISTEN')))
  if (unneeded.length > 0) log.debug('unlistened', { channels: unneeded.join(',') })
}

/**
 * A NotificationResponse from PGlite, raised by the client's NOTIFY: every other client listening on the channel
 * gets it now; the client keeps it in its reply (returned) if it listens there too, or is about to (`commands`). The
 * process id is the client's, as Postgres names the notifying backend.
 */
export function routeNotification(
  { client, session }: ListeningBackend,
  commands: readonly ListenCommand[],
  message: Buffer,
): Buffer | null {
  message.writeInt32BE(client.processId, HEADER_LENGTH)
  const channel = notificationChannel(message)
  const members = session.listeners.membersOf(channel)
  if (members) for (const member of members) if (member !== client) member.notify(message)
  const listensHere = members?.has(client) || commands.some((c) => c.kind === 'listen' && c.channel === channel)
  return listensHere ? message : null
}
