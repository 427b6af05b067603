// A connection's start: SSLRequest and GSSENCRequest answered, a CancelRequest passed on, the StartupMessage read
// and admitted, the password checked with SCRAM-SHA-256, and the database the client named opened. Everything up to
// the first ReadyForQuery. https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP

import { background } from '../../log.ts'
import { SqlState, WireError } from '../../errors.ts'
import { BackendCode, CODE_LENGTH, FrontendCode, HEADER_LENGTH, StartupCode, TxStatus } from '../protocol/codes.ts'
import {
  encodeBackendKeyData,
  encodeNegotiateProtocolVersion,
  encodeParameterStatus,
  encodeReadyForQuery,
} from '../protocol/backend-messages.ts'
import { forEachFrame, protocolViolation, type FrameReader, type Frames } from '../protocol/frames.ts'
import type { SecureContext } from 'node:tls'
import type { SharedSession } from '../session/session.ts'
import type { ConnectionHost, ServedConnection } from './host.ts'
import { MAX_AUTH_MESSAGE_LENGTH, ScramExchange } from './scram.ts'
import { cleanEncodingName } from '../features/database-encoding.ts'

const SSL_NOT_SUPPORTED = Buffer.from('N')
const SSL_SUPPORTED = Buffer.from('S')
/** The first byte of a TLS handshake record: a client that negotiates TLS directly (PostgreSQL 17's sslnegotiation=direct). */
const TLS_HANDSHAKE = 0x16

/** What the start-up needs of its connection. */
export interface StartingConnection extends ServedConnection {
  readonly startupParams: Map<string, string>
  write(bytes: Uint8Array): void
  /** End the connection without a word (a CancelRequest's connection); resolves once it is closed. */
  close(): Promise<void>
  /**
   * Continue over TLS with this context: after 'S' was written, or (`direct`: the handshake's first bytes, read
   * already) at once, where ALPN must name postgresql.
   */
  startTls(context: SecureContext, direct?: Buffer): void
  /** Something went wrong: a WireError reaches the client, anything else is logged and becomes XX000. */
  fail(error: unknown): void
  /**
   * The client is in, with its database's session: tell it so and read its messages from here on, starting with
   * `early`, messages it sent before it was admitted (none should). With `open`, the session is the main database's
   * until the client first sends a message that needs its own, which `open` then opens (or creates).
   */
  admitted(session: SharedSession, database: string, early: Frames | null, open?: () => Promise<SharedSession>): void
}

export class Startup {
  readonly #connection: StartingConnection
  readonly #host: ConnectionHost
  readonly #reader: FrameReader
  #phase: 'packets' | 'waiting' | 'authenticating' | 'opening' | 'refused' = 'packets'
  #scram: ScramExchange | null = null
  /**
   * The first SSLRequest is answered 'S' when the server has TLS, else 'N', and the first GSSENCRequest 'N';
   * Postgres treats a repeat as an unknown protocol.
   */
  #sslAnswered = false
  #gssAnswered = false

  constructor(connection: StartingConnection, host: ConnectionHost, reader: FrameReader) {
    this.#connection = connection
    this.#host = host
    this.#reader = reader
  }

  /** The largest Password message this phase accepts; -1 outside authentication, where it is not a valid message. */
  get maxPasswordLength(): number {
    return this.#scram ? MAX_AUTH_MESSAGE_LENGTH : -1
  }

  /** Read what the client sent so far. Throws a WireError (FATAL) that refuses it. */
  read(): void {
    if (this.#phase === 'packets') this.#readPackets()
    if (this.#phase === 'authenticating') this.#readAuthentication()
  }

  #readPackets(): void {
    const tls = this.#host.options.tls
    if (tls && !this.#sslAnswered && this.#reader.firstByte === TLS_HANDSHAKE) {
      // TLS from the first byte, with no SSLRequest: Postgres 17 and later take it (a server without TLS reads it as a
      // startup packet of an invalid length, as Postgres 15 does).
      this.#sslAnswered = true
      this.#connection.startTls(tls, this.#reader.takeBuffered())
      return
    }
    let packet: Buffer | null
    while (this.#phase === 'packets' && (packet = this.#reader.readStartupPacket()) !== null) {
      const code = packet.readInt32BE(4)
      if (code === StartupCode.SSLRequest || code === StartupCode.GSSENCRequest) {
        if (packet.length !== 8) throw protocolViolation('invalid length of startup packet')
        const isSsl = code === StartupCode.SSLRequest
        if (isSsl ? !this.#sslAnswered : !this.#gssAnswered) {
          if (isSsl) this.#sslAnswered = true
          else this.#gssAnswered = true
          if (isSsl && tls) {
            // The client speaks TLS only after reading 'S': bytes already here were sent in the clear, and would be
            // taken as if they came through TLS (Postgres refuses them too, since CVE-2021-23214).
            if (this.#reader.buffered > 0) throw protocolViolation('received unencrypted data after SSL request')
            this.#connection.write(SSL_SUPPORTED)
            this.#connection.startTls(tls)
            continue
          }
          this.#connection.write(SSL_NOT_SUPPORTED)
          continue
        }
      }
      if (code === StartupCode.CancelRequest) {
        if (packet.length !== 16)
          throw new WireError('FATAL', SqlState.ProtocolViolation, 'invalid length of startup packet', {
            logOnly: true,
          })
        this.#host.cancel(packet.readInt32BE(8), packet.readInt32BE(12))
        this.#phase = 'refused'
        background(this.#connection.close(), 'close after a CancelRequest', this.#host.log)
        return
      }
      this.#startupMessage(packet, code)
    }
  }

  #startupMessage(packet: Buffer, version: number): void {
    const major = version >>> 16
    const minor = version & 0xffff
    if (major !== 3) {
      throw new WireError(
        'FATAL',
        SqlState.FeatureNotSupported,
        `unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`,
      )
    }
    const params = this.#connection.startupParams
    const unrecognized: string[] = []
    const body = packet.subarray(8)
    let offset = 0
    while (offset < body.length && body[offset] !== 0) {
      const nameEnd = body.indexOf(0, offset)
      const valueEnd = nameEnd < 0 ? -1 : body.indexOf(0, nameEnd + 1)
      if (valueEnd < 0) throw protocolViolation('invalid startup packet layout: expected terminator as last byte')
      const name = body.toString('utf8', offset, nameEnd)
      if (name.startsWith('_pq_.')) unrecognized.push(name)
      else params.set(name, body.toString('utf8', nameEnd + 1, valueEnd))
      offset = valueEnd + 1
    }
    if (offset !== body.length - 1)
      throw protocolViolation('invalid startup packet layout: expected terminator as last byte')
    if (!params.get('user'))
      throw new WireError(
        'FATAL',
        SqlState.InvalidAuthorizationSpecification,
        'no PostgreSQL user name specified in startup packet',
      )
    refuseUnservedEncoding(params.get('client_encoding'))
    const refusal = this.#host.admit(this.#connection)
    if (refusal) {
      this.#phase = 'refused'
      void this.#connection.terminate(refusal)
      return
    }
    if (this.#host.session.startupPrefixNow) this.#letIn(minor, unrecognized)
    else this.#waitForServer(minor, unrecognized)
  }

  /**
   * The server is still starting (its database opening, migrations running): the client waits, as a client of
   * Postgres waits for its backend to start, and goes on once it has started, or gets the error that ended the start.
   */
  #waitForServer(minor: number, unrecognized: string[]): void {
    this.#phase = 'waiting'
    const started =
      this.#host.started?.() ??
      Promise.resolve(new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up'))
    started
      .then((refusal) => {
        if (refusal) throw refusal
        this.#letIn(minor, unrecognized)
      })
      .catch((error: unknown) => this.#connection.fail(error))
  }

  #letIn(minor: number, unrecognized: string[]): void {
    // A newer 3.x minor or `_pq_.` options: say we speak 3.0 and which options we ignored; the client carries on.
    if (minor > 0 || unrecognized.length > 0) this.#connection.write(encodeNegotiateProtocolVersion(0, unrecognized))
    this.#reader.startTyped()
    const secret = this.#host.options.password
    if (secret) {
      this.#scram = new ScramExchange(secret)
      this.#phase = 'authenticating'
      this.#connection.write(ScramExchange.request())
      return
    }
    this.#openDatabase(null)
  }

  /** SASLInitialResponse, then SASLResponse: any other message, or a wrong proof, ends the connection. */
  #readAuthentication(): void {
    const frames = this.#reader.readFrames()
    if (!frames) return
    const { bytes } = frames
    let offset = 0
    while (offset < bytes.length) {
      const code = bytes[offset]!
      const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
      if (code !== FrontendCode.Password) throw protocolViolation(`expected SASL response, got message type ${code}`)
      const step = this.#scram!.respond(bytes.subarray(offset + HEADER_LENGTH, end))
      if (!step.ok) {
        if (step.protocolViolation) throw protocolViolation(step.reason)
        const user = this.#connection.startupParams.get('user') ?? ''
        this.#host.log.info('authentication failed', {
          conn: this.#connection.processId,
          user,
          reason: step.reason,
          sqlstate: SqlState.InvalidPassword,
        })
        throw new WireError('FATAL', SqlState.InvalidPassword, `password authentication failed for user "${user}"`)
      }
      this.#connection.write(step.reply)
      offset = end
      if (!step.done) continue
      this.#scram = null
      // Messages sent in the same read as the last SASL response (none should be) run once the client is in.
      const early =
        offset < bytes.length ? { bytes: bytes.subarray(offset), count: countFrames(bytes.subarray(offset)) } : null
      this.#openDatabase(early)
      return
    }
  }

  /**
   * The client is who it says: let it in. Its database opens (or is created) only when it first sends a message that
   * needs it, so a client that connects and leaves (pg_isready, a pool's health check) opens nothing. Without
   * creation on connect, a name the catalog does not hold is refused now, as Postgres refuses it.
   */
  #openDatabase(early: Frames | null): void {
    this.#phase = 'opening'
    const params = this.#connection.startupParams
    const database = params.get('database') || params.get('user')!
    const databases = this.#host.databases
    if (!databases || database === databases.mainName) {
      this.#connection.admitted(this.#host.session, database, early)
      return
    }
    const open = (): Promise<SharedSession> =>
      this.#host.openSession(database).catch((error: unknown) => {
        if (error instanceof WireError) throw error
        this.#host.log.error('cannot open database', { database, error })
        throw new WireError(
          'FATAL',
          SqlState.InternalError,
          `cannot open database "${database}": ${(error as Error).message}`,
          { cause: error },
        )
      })
    const known = this.#host.options.createDatabaseOnConnect ? Promise.resolve(true) : databases.exists(database)
    known
      .then((exists) => {
        if (!exists) throw new WireError('FATAL', SqlState.InvalidCatalogName, `database "${database}" does not exist`)
        this.#connection.admitted(this.#host.session, database, early, open)
      })
      .catch((error: unknown) => this.#connection.fail(error))
  }
}

/**
 * What tells a client let into `session` that it is in: the server's parameters, its own application_name, its key,
 * and ReadyForQuery. Throws when the session takes no clients: it died, or it is still starting.
 */
export function startupReply(
  session: SharedSession,
  { startupParams, processId, secretKey }: ServedConnection,
): Buffer {
  if (session.dead) throw session.dead
  // Every database's sessions tell clients the same parameters at startup, so the main one's serve until it opens.
  const prefix = session.startupPrefixNow
  if (!prefix) throw new WireError('FATAL', SqlState.CannotConnectNow, 'the database system is starting up')
  // application_name is reported at startup with the client's own value, as Postgres does (the session gets it later),
  // in place of the session's (postgres.js keeps the first it is told).
  const name = startupParams.get('application_name')
  const parameters = name ? withParameter(prefix, 'application_name', applicationNameAsPostgresKeepsIt(name)) : [prefix]
  return Buffer.concat([...parameters, encodeBackendKeyData(processId, secretKey), encodeReadyForQuery(TxStatus.Idle)])
}

/** `messages` with the ParameterStatus of `name` given `value` (added at the end if there is none). */
function withParameter(messages: Buffer, name: string, value: string): Buffer[] {
  const status = encodeParameterStatus(name, value)
  const wanted = Buffer.from(`${name}\0`)
  let parts: Buffer[] | null = null
  forEachFrame(messages, (code, offset, length) => {
    if (
      code !== BackendCode.ParameterStatus ||
      !messages.subarray(offset + HEADER_LENGTH, offset + HEADER_LENGTH + wanted.length).equals(wanted)
    )
      return
    parts = [messages.subarray(0, offset), status, messages.subarray(offset + length)]
    return false
  })
  return parts ?? [messages, status]
}

/** Postgres (16 and later) keeps printable ASCII of application_name; every other byte becomes \xHH (pg_clean_ascii). */
function applicationNameAsPostgresKeepsIt(name: string): string {
  let out = ''
  for (const byte of Buffer.from(name))
    out += byte >= 0x20 && byte <= 0x7e ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`
  return out
}

function countFrames(bytes: Buffer): number {
  let count = 0
  forEachFrame(bytes, () => void count++)
  return count
}

/**
 * PGlite converts no text out of UTF8 (its conversion functions fail, and the database with them): a client asking
 * for another encoding (Windows' psql asks for WIN1252) is refused as Postgres refuses a conversion it lacks.
 */
function refuseUnservedEncoding(encoding: string | undefined): void {
  if (encoding === undefined || SERVED_ENCODINGS.has(cleanEncodingName(encoding))) return
  throw new WireError(
    'FATAL',
    SqlState.InvalidParameterValue,
    `invalid value for parameter "client_encoding": "${encoding}"`,
    {
      detail: `Conversion between ${encoding} and UTF8 is not supported: PGlite converts no text out of UTF8. Use UTF8 (PGCLIENTENCODING=UTF8).`,
    },
  )
}

/** UTF8 by its names, and SQL_ASCII (no conversion). */
const SERVED_ENCODINGS = new Set(['utf8', 'unicode', 'sqlascii'])
