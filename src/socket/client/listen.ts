// LISTEN/NOTIFY for clients that share one session. PGlite's session listens on the union of the clients'
// channels; a NotificationResponse it emits goes to every client listening on that channel and to no other.
// Which client listens where is read from the LISTEN/UNLISTEN statements a client sends, and checked against
// pg_listening_channels() once its work is done (a LISTEN in a rolled-back transaction never took effect).

import { forEachFrame } from '../protocol/frames.ts'
import { BackendCode, HEADER_LENGTH, encodeQuery } from '../protocol/codes.ts'
import { isName, mentions, sqlBounds, statements } from '../sql/tokens.ts'

export type ListenCommand = { kind: 'listen'; channel: string } | { kind: 'unlisten'; channel: string | null }

/** Cheap test on a Query or Parse message before any parsing: does its text contain "listen" in any case? */
export function mayListen(bytes: Buffer, start: number, end: number): boolean {
  return mentions(bytes, start, end, LISTEN_WORDS)
}

const LISTEN_WORDS = ['listen']

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

/** The SQL text of a Query or Parse message (whole message, header included). */
export function messageSql(bytes: Buffer, offset: number, end: number, isParse: boolean): string {
  const text = sqlBounds(bytes, offset, end, isParse)
  return text ? bytes.toString('utf8', text[0], text[1]) : ''
}

export const LISTENING_CHANNELS_QUERY = encodeQuery('SELECT pg_catalog.pg_listening_channels()')

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`

export function listenQuery(channels: Iterable<string>, verb: 'LISTEN' | 'UNLISTEN'): Buffer {
  return encodeQuery([...channels].map((channel) => `${verb} ${ident(channel)}`).join('; '))
}

/** The channel of a NotificationResponse (whole message): after the header and the int32 process id. */
export function notificationChannel(message: Buffer): string {
  const start = HEADER_LENGTH + 4
  return message.toString('utf8', start, message.indexOf(0, start))
}

/** The rows of LISTENING_CHANNELS_QUERY's reply. */
export function readChannels(reply: Buffer): Set<string> {
  const channels = new Set<string>()
  forEachFrame(reply, (code, offset) => {
    if (code !== BackendCode.DataRow) return
    const length = reply.readInt32BE(offset + HEADER_LENGTH + 2)
    if (length >= 0) channels.add(reply.toString('utf8', offset + HEADER_LENGTH + 6, offset + HEADER_LENGTH + 6 + length))
  })
  return channels
}
