// The client's socket: the events a connection follows on it, what its errors mean, and TLS over it (Node's
// TLSSocket, once SSLRequest was answered 'S', or at once when the client's first bytes began a handshake: direct).

import type { Socket } from 'node:net'
import { TLSSocket, type SecureContext } from 'node:tls'
import { SqlState, WireError, isDisconnectError } from '../../errors.ts'
import type { Logger } from '../../log.ts'

const NO_ALPN = new WireError(
  'FATAL',
  SqlState.ProtocolViolation,
  'received direct SSL connection request without ALPN protocol negotiation extension',
  { logOnly: true },
)

/**
 * Follow `socket`: its bytes go to `onData`; its end (the client's FIN: the server's sockets are half-open) or close
 * ends the connection (`close`), and so does an error (logged), through `failed`: a reset loses what the client sent
 * that the server has not begun (see Connection.#left).
 */
export function follow(
  socket: Socket,
  onData: (chunk: Buffer) => void,
  close: () => void,
  failed: () => void,
  log: Logger,
): void {
  socket.on('data', onData)
  socket.on('end', close)
  socket.on('error', (error) => {
    logSocketError(error, log)
    failed()
  })
  socket.on('close', close)
}

/** A socket error closes the connection without a word: the log says what it was. */
function logSocketError(error: Error, log: Logger): void {
  const code = (error as NodeJS.ErrnoException).code
  if (isDisconnectError(error)) log.debug('client disconnected', { code })
  // The client's TLS said no (it refused the certificate, or spoke something else after SSLRequest): it says why.
  else if (code?.startsWith('ERR_SSL_')) log.debug('TLS handshake failed', { code })
  else log.warn('socket error', { error })
}

/** The TLS socket over `plain`, the handshake first (`direct`: its first bytes, read already). ALPN: postgresql. */
export function tlsOver(plain: Socket, context: SecureContext, direct: Buffer | undefined): TLSSocket {
  // TLSSocket reads what the plain socket holds unread first (paused, so that it is not emitted to nobody before).
  if (direct) {
    plain.pause()
    plain.unshift(direct)
  }
  return new TLSSocket(plain, { isServer: true, secureContext: context, ALPNProtocols: ['postgresql'] })
}

/** A direct handshake must ask for ALPN postgresql: `fail` once it is done without. */
export function requireAlpn(secure: TLSSocket, fail: (error: WireError) => void): void {
  secure.once('secure', () => {
    // Postgres logs it and closes without a word (it could be any TLS client).
    if (secure.alpnProtocol !== 'postgresql') fail(NO_ALPN)
  })
}
