// Replies a client does not read, kept on disk so that its statement can end and the session serve others: an
// unlinked file in the server's spill directory, appended to by a WriteStream and read back a piece at a time (the
// socket's 'drain' asks for the next) as the client reads. The server's spill as a whole is capped (SpillBudget); a client past the cap is cut off at a
// message boundary and told why (FATAL 53400), as one whose file cannot be written is (53100).

import { closeSync, createWriteStream, mkdirSync, openSync, read, unlinkSync, type WriteStream } from 'node:fs'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { SqlState, WireError } from '../../errors.ts'
import type { Logger } from '../../log.ts'
import { encodeErrorResponse } from '../protocol/backend-messages.ts'

/** Read back in pieces of this size; the WriteStream's buffer holds this much before the call is held back. */
const PIECE_BYTES = 256 * 1024

/** The disk a server's clients may fill with replies they have not read yet: every spill counts against `limit`. */
export class SpillBudget {
  used = 0
  #dirMade = false
  constructor(
    readonly limit: number,
    readonly dir: string,
  ) {}

  /** A new file of the server's, already unlinked: it is gone with its descriptor, even if the server dies. */
  openFile(): number {
    if (!this.#dirMade) {
      mkdirSync(this.dir, { recursive: true })
      this.#dirMade = true
    }
    const path = join(this.dir, `pglite-dev-db-replies-${process.pid}-${nextFile++}`)
    const fd = openSync(path, 'w+', 0o600)
    unlinkSync(path)
    return fd
  }
}
let nextFile = 1

/**
 * Where a stream of backend messages stands: body bytes left of the message in progress, or how much of a header
 * has passed. Read header by header (a DataRow's bytes are skipped, not looked at).
 */
export class Framing {
  #remaining = 0
  readonly #header = Buffer.alloc(5)
  #headerFill = 0

  get atBoundary(): boolean {
    return this.#remaining === 0 && this.#headerFill === 0
  }

  reset(): void {
    this.#remaining = 0
    this.#headerFill = 0
  }

  /** As the database's thread says (engine/direct-reply.ts framingAt): body bytes left, Int32 LE; header bytes. */
  set(payload: Uint8Array): void {
    this.#remaining = (payload[0]! | (payload[1]! << 8) | (payload[2]! << 16) | (payload[3]! << 24)) >>> 0
    this.#headerFill = payload.length - 4
    this.#header.set(payload.subarray(4))
  }

  /** Read `bytes`; returns the last offset in them (0 to their length) at which a message begins, or -1 if none. */
  feed(bytes: Uint8Array): number {
    let boundary = this.atBoundary ? 0 : -1
    let i = 0
    while (i < bytes.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, bytes.length - i)
        i += take
        this.#remaining -= take
        if (this.#remaining === 0) boundary = i
        continue
      }
      if (this.#headerFill === 0 && bytes.length - i >= 5) {
        this.#remaining = Math.max(
          0,
          ((bytes[i + 1]! << 24) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 8) | bytes[i + 4]!) - 4,
        )
        i += 5
      } else {
        this.#header[this.#headerFill++] = bytes[i++]!
        if (this.#headerFill < 5) continue
        this.#headerFill = 0
        this.#remaining = Math.max(0, this.#header.readInt32BE(1) - 4)
      }
      if (this.#remaining === 0) boundary = i
    }
    return boundary
  }
}

/** What a spill tells its connection. */
export interface SpillOwner {
  /** Everything kept was sent on: the connection writes to the socket itself again. */
  drained(): void
  /** The spill cut the client off (`error` is already queued for it, after the last whole message). */
  cutOff(error: WireError): void
}

/** One client's replies on disk, from the moment its socket stayed full until everything kept was sent on. */
export class ReplySpill {
  readonly #socket: Socket
  readonly #budget: SpillBudget
  readonly #framing: Framing
  readonly #owner: SpillOwner
  readonly #log: Logger
  readonly #fd: number
  readonly #out: WriteStream
  /** Bytes given to the file, known written, and sent on to the socket (offsets in the file). */
  #appended = 0
  #written = 0
  #sent = 0
  /** The last offset at which a message begins, among the bytes appended, and among those known written. */
  #boundary: number
  #writtenBoundary: number
  /** Nothing from here on reaches the client (past the cap, or a failed write): -1 while no cut. */
  #cut = -1
  /** After the cut: what the client is told last (its FATAL). */
  #after: Uint8Array | null = null
  #sending = false
  #awaitingDrain = false
  /** The wait for room in the file, shared by everyone who asks meanwhile (room()), and what ends it. */
  #roomWait: Promise<void> | null = null
  #roomDone: (() => void) | null = null
  #endAsked = false
  #disposed = false

  /** `framing`: where the bytes appended next stand in their messages (the connection's, shared). Throws if no file. */
  constructor(socket: Socket, budget: SpillBudget, framing: Framing, owner: SpillOwner, log: Logger) {
    this.#socket = socket
    this.#budget = budget
    this.#framing = framing
    this.#owner = owner
    this.#log = log
    // -1: the spill begins mid-message, and no message begins in it yet.
    this.#boundary = this.#writtenBoundary = framing.atBoundary ? 0 : -1
    this.#fd = budget.openFile()
    this.#out = createWriteStream('', { fd: this.#fd, start: 0, autoClose: false, highWaterMark: PIECE_BYTES })
    this.#out.on('error', (error) => this.#writeFailed(error))
    log.debug('keeping unread replies on disk', { dir: budget.dir })
  }

  /** Bytes kept, not yet sent on. */
  get pending(): number {
    return this.#appended - this.#sent
  }

  /** The client's next bytes, in order after everything kept. */
  append(bytes: Uint8Array): void {
    if (this.#cut >= 0 || this.#disposed || bytes.length === 0) return
    const boundary = this.#framing.feed(bytes)
    const budget = this.#budget
    if (budget.used + bytes.length > budget.limit) {
      this.#cutAt(
        this.#boundary,
        new WireError(
          'FATAL',
          SqlState.ConfigurationLimitExceeded,
          `terminating connection: more than ${budget.limit} bytes of results wait on disk for clients that do not read them`,
        ),
      )
      return
    }
    budget.used += bytes.length
    const start = this.#appended
    this.#appended += bytes.length
    if (boundary >= 0) this.#boundary = start + boundary
    const end = this.#appended
    const endBoundary = this.#boundary
    this.#out.write(bytes, (error) => {
      if (error) return
      this.#written = end
      this.#writtenBoundary = endBoundary
      this.#send()
    })
  }

  /** The stream is at a message boundary (a call ended). */
  atBoundary(): void {
    this.#framing.reset()
    if (this.#cut < 0) this.#boundary = this.#appended
  }

  /** Null while the file takes bytes as fast as they come; else a promise of room (the call waits meanwhile). */
  room(): Promise<void> | null {
    const out = this.#out
    if (!out.writableNeedDrain || this.#cut >= 0 || this.#disposed) return null
    // One wait, however many ask at once: each of its own would add listeners to the stream past Node's warning.
    this.#roomWait ??= new Promise<void>((resolve) => {
      const done = (): void => {
        out.off('drain', done)
        out.off('close', done)
        out.off('error', done)
        this.#socket.off('close', done)
        this.#roomWait = this.#roomDone = null
        resolve()
      }
      this.#roomDone = done
      out.on('drain', done)
      out.on('close', done)
      // A failed write never drains (the stream is not destroyed: autoClose is off), and the client is cut off there.
      out.on('error', done)
      this.#socket.on('close', done)
    })
    return this.#roomWait
  }

  /** End the socket once everything kept (up to a cut, and its FATAL) is sent. */
  end(): void {
    this.#endAsked = true
    this.#send()
  }

  /** Maybe done: everything kept was sent, and the connection may write to the socket again (see SpillOwner.drained). */
  poke(): void {
    this.#send()
  }

  /** Done, or the socket is gone: the file goes, and its bytes leave the budget. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    // Ending the stream holds back its 'drain' (and it never closes: autoClose is off): a wait for room ends here.
    this.#roomDone?.()
    this.#budget.used -= this.#appended - this.#sent
    this.#sent = this.#appended
    // The descriptor is closed here, once the writes given to the stream and a read in flight are done with it (the
    // stream's own destroy would close it under them).
    this.#out.end(() => {
      this.#writerDone = true
      this.#closeFd()
    })
  }

  #writerDone = false
  #fdClosed = false
  #closeFd(): void {
    if (this.#fdClosed || this.#sending || !this.#writerDone) return
    this.#fdClosed = true
    try {
      closeSync(this.#fd)
    } catch (error) {
      this.#log.warn('could not close the file of unread replies', { error })
    }
  }

  #cutAt(offset: number, error: WireError): void {
    // With no whole message kept, the client's last one stays cut short: as Postgres, which sends nothing mid-message
    // (ProcessClientWriteInterrupt), it only sees the connection close.
    this.#cut = Math.max(0, offset)
    this.#after = offset < 0 ? null : encodeErrorResponse(error.severity, error.sqlstate, error.message)
    this.#log.warn('client cut off: unread replies', { sqlstate: error.sqlstate, kept: this.#appended, cut: offset })
    this.#owner.cutOff(error)
    this.#send()
  }

  #writeFailed(error: Error): void {
    if (this.#disposed || this.#cut >= 0) return
    const code = (error as NodeJS.ErrnoException).code
    const sqlstate = code === 'ENOSPC' || code === 'EDQUOT' ? SqlState.DiskFull : SqlState.InternalError
    this.#cutAt(
      this.#writtenBoundary,
      new WireError('FATAL', sqlstate, `could not write to file in "${this.#budget.dir}": ${error.message}`),
    )
  }

  /** Send on what is written, a piece at a time as the socket takes it; then the FATAL after a cut; then done. */
  #send(): void {
    if (this.#sending || this.#disposed) return
    const socket = this.#socket
    if (socket.destroyed) return
    const limit = this.#cut >= 0 ? Math.min(this.#cut, this.#written) : this.#written
    if (this.#sent < limit) {
      if (socket.writableNeedDrain) {
        if (!this.#awaitingDrain) {
          this.#awaitingDrain = true
          socket.once('drain', () => {
            this.#awaitingDrain = false
            this.#send()
          })
        }
        return
      }
      this.#sending = true
      const length = Math.min(PIECE_BYTES, limit - this.#sent)
      read(this.#fd, Buffer.allocUnsafe(length), 0, length, this.#sent, (error, count, piece) => {
        this.#sending = false
        if (this.#disposed) return this.#closeFd()
        if (error || count === 0) {
          this.#log.warn('could not read back unread replies', { error })
          socket.destroy()
          return
        }
        this.#budget.used -= count
        this.#sent += count
        socket.write(count === length ? piece : piece.subarray(0, count))
        this.#send()
      })
      return
    }
    if (this.#cut >= 0) {
      // Everything up to the cut was sent (or is lost with a failed write): the FATAL, then the end.
      if (this.#written < this.#cut) return
      const after = this.#after
      this.#after = null
      if (after) socket.write(after)
      socket.end()
      return
    }
    if (this.#sent < this.#appended) return
    if (this.#endAsked) socket.end()
    this.#owner.drained()
  }
}
