// LISTEN/NOTIFY for clients that share one session: after a client's LISTEN, UNLISTEN or DISCARD, where it listens is
// recorded and the session made to listen on exactly the channels somebody listens on; a notification its NOTIFY
// raised reaches every client listening on the channel. Which statements listen is read from the client's SQL
// (client/listen.ts); who listens where is session/listeners.ts.

import type { Logger } from '../../log.ts'
import { HEADER_LENGTH } from '../protocol/codes.ts'
import { firstColumn } from '../protocol/backend.ts'
import { encodeQuery } from '../protocol/frontend.ts'
import { listenSql } from '../session/listeners.ts'
import type { SessionMember, SharedSession } from '../session/session.ts'
import { LISTENING_CHANNELS_QUERY, notificationChannel, type ListenCommand } from '../client/listen.ts'

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
export async function reconcileListening(backend: ListeningBackend, commands: readonly ListenCommand[], log: Logger): Promise<void> {
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
export function routeNotification({ client, session }: ListeningBackend, commands: readonly ListenCommand[], message: Buffer): Buffer | null {
  message.writeInt32BE(client.processId, HEADER_LENGTH)
  const channel = notificationChannel(message)
  const members = session.listeners.membersOf(channel)
  if (members) for (const member of members) if (member !== client) member.notify(message)
  const listensHere = members?.has(client) || commands.some((c) => c.kind === 'listen' && c.channel === channel)
  return listensHere ? message : null
}
