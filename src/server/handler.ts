// Stock-compatible PGLiteSocketHandler: serve one already-accepted socket. Prefer PGLiteSocketServer; this exists
// so code written against the stock export keeps compiling. It shares the session scheduler of its PGlite instance.

import type { PGlite } from '@electric-sql/pglite'
import type { Socket } from 'node:net'
import { createLogger, type Logger } from '../log.ts'
import { Connection } from './connection/connection.ts'
import { sessionFor } from './session/session.ts'
import { connectionOptions } from './options.ts'

export interface PGLiteSocketHandlerOptions {
  /** The PGlite instance to serve (the stock option `queryQueue` is not needed: the queue lives with the instance) */
  db: PGlite
  /** Whether to close the socket when detached (default: false) */
  closeOnDetach?: boolean
  /** Log frames as hex dumps (trace level) */
  inspect?: boolean
  /** Log connection events (debug level) */
  debug?: boolean
  /** Idle timeout in ms (0 to disable, default: 0) */
  idleTimeout?: number
  idleInTransactionTimeoutMs?: number
  logger?: Logger
}

let nextHandlerId = 1

export class PGLiteSocketHandler extends EventTarget {
  readonly #options: PGLiteSocketHandlerOptions
  readonly #id = nextHandlerId++
  #connection: Connection | null = null

  constructor(options: PGLiteSocketHandlerOptions) {
    super()
    this.#options = options
  }

  get handlerId(): number {
    return this.#id
  }

  get isAttached(): boolean {
    return this.#connection !== null
  }

  /**
   * Serve `socket`. From a server made with `allowHalfOpen: true` (as PGLiteSocketServer's are), a client that closes
   * its end after sending work still gets the replies; otherwise Node closes the socket at once and they are dropped.
   */
  async attach(socket: Socket): Promise<PGLiteSocketHandler> {
    if (this.#connection) throw new Error('Socket already attached')
    const { db } = this.#options
    const session = sessionFor(db)
    await db.waitReady
    await session.startupPrefix()
    const log =
      this.#options.logger ??
      createLogger({ level: this.#options.inspect ? 'trace' : this.#options.debug ? 'debug' : 'warn' })
    this.#connection = new Connection(socket, {
      session,
      databases: null,
      openSession: () => Promise.resolve(session),
      log,
      options: connectionOptions({
        idleTimeoutMs: this.#options.idleTimeout,
        idleInTransactionTimeoutMs: this.#options.idleInTransactionTimeoutMs,
        inspect: this.#options.inspect,
      }),
      admit: () => null,
      cancel: () => {},
      clients: () => (this.#connection ? [this.#connection] : []),
      closed: () => {
        this.#connection = null
        this.dispatchEvent(new CustomEvent('close'))
      },
    })
    return this
  }

  /** Roll back what the client left open and close its socket. */
  async detach(): Promise<PGLiteSocketHandler> {
    await this.#connection?.close()
    return this
  }
}
