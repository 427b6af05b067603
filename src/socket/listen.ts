// LISTEN/NOTIFY for clients that share one session. PGlite's session listens on the union of the clients'
// channels; a NotificationResponse it emits goes to every client listening on that channel and to no other.
// Which client listens where is read from the LISTEN/UNLISTEN statements a client sends, and checked against
// pg_listening_channels() once its work is done (a LISTEN in a rolled-back transaction never took effect).

import { forEachFrame } from './frames.ts'
import { BackendCode, HEADER_LENGTH, encodeQuery } from './protocol.ts'

/** Marks tokens that are not names (literals, punctuation), so a quoted identifier "*" stays a name. */
const OTHER = '\u0000'

export type ListenCommand = { kind: 'listen'; channel: string } | { kind: 'unlisten'; channel: string | null }

/** Cheap test on a Query or Parse message before any parsing: does its text contain "listen" in any case? */
export function mayListen(bytes: Buffer, start: number, end: number): boolean {
  for (let i = bytes.indexOf(0x6e, start); i >= 0 && i < end; i = bytes.indexOf(0x6e, i + 1)) {
    // ...listen: look back from the final "n" (0x6e); LISTEN in capitals is checked below.
    if (i - 5 >= start && matchesWord(bytes, i - 5)) return true
  }
  for (let i = bytes.indexOf(0x4e, start); i >= 0 && i < end; i = bytes.indexOf(0x4e, i + 1)) {
    if (i - 5 >= start && matchesWord(bytes, i - 5)) return true
  }
  return false
}

const LISTEN = 'listen'

function matchesWord(bytes: Buffer, at: number): boolean {
  for (let k = 0; k < LISTEN.length; k++) if ((bytes[at + k]! | 0x20) !== LISTEN.charCodeAt(k)) return false
  return true
}

/**
 * The LISTEN and UNLISTEN statements in `sql`, in order, with channel names as Postgres folds them (unquoted
 * names to lower case). Comments, string literals, dollar quotes and quoted identifiers are skipped correctly,
 * so `select 'listen x'` is not a LISTEN.
 */
export function listenCommands(sql: string): ListenCommand[] {
  const commands: ListenCommand[] = []
  let statement: string[] = []
  const finish = () => {
    const [verb, second] = statement
    const isName = second !== undefined && !second.startsWith(OTHER)
    if (verb === 'listen' && isName) commands.push({ kind: 'listen', channel: second })
    else if (verb === 'unlisten' && (isName || second === `${OTHER}*`)) commands.push({ kind: 'unlisten', channel: isName ? second : null })
    statement = []
  }
  let i = 0
  const n = sql.length
  while (i < n) {
    const ch = sql[i]!
    const next = sql[i + 1]
    if (ch === ';') {
      finish()
      i++
    } else if (/\s/.test(ch)) {
      i++
    } else if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i)
      i = end < 0 ? n : end + 1
    } else if (ch === '/' && next === '*') {
      let depth = 1
      i += 2
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') (depth++, (i += 2))
        else if (sql[i] === '*' && sql[i + 1] === '/') (depth--, (i += 2))
        else i++
      }
    } else if (ch === "'" || ((ch === 'e' || ch === 'E') && next === "'")) {
      const escapes = ch !== "'"
      i += escapes ? 2 : 1
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2
        else if (sql[i] === "'") break
        else i++
      }
      i++
      statement.push(`${OTHER}'`)
    } else if (ch === '"') {
      let name = ''
      i++
      while (i < n) {
        if (sql[i] === '"' && sql[i + 1] === '"') (name += '"', (i += 2))
        else if (sql[i] === '"') break
        else name += sql[i++]
      }
      i++
      statement.push(name)
    } else if (ch === '$' && /^\$([A-Za-z_][A-Za-z_0-9]*)?\$/.test(sql.slice(i, i + 64))) {
      const tag = /^\$([A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i, i + 64))![0]
      const end = sql.indexOf(tag, i + tag.length)
      i = end < 0 ? n : end + tag.length
      statement.push(`${OTHER}$`)
    } else if (/[A-Za-z_\u0080-\uffff]/.test(ch)) {
      let word = ''
      while (i < n && /[A-Za-z_0-9$\u0080-\uffff]/.test(sql[i]!)) word += sql[i++]
      statement.push(word.toLowerCase())
    } else {
      statement.push(`${OTHER}${ch}`)
      i++
    }
  }
  finish()
  return commands
}

/** The SQL text of a Query or Parse message (whole message, header included). */
export function messageSql(bytes: Buffer, offset: number, end: number, isParse: boolean): string {
  let at = offset + HEADER_LENGTH
  if (isParse) at = bytes.indexOf(0, at) + 1
  const zero = bytes.indexOf(0, at)
  return bytes.toString('utf8', at, zero < 0 || zero > end ? end : zero)
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
