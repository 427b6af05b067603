// What a connection sends its client: every write goes through here, held for one send while a PGlite call streams
// its replies (cork), and, once more than OUTPUT_HIGH_WATER waits unread, a wait for the client to read before more
// of its work runs or more of a statement's output is taken (backpressure); or, for a statement outside a transaction
// block, the rest kept on disk (spill.ts) so that it ends and the session goes on. While the database's thread writes
// a reply straight to the socket (direct), the server's own writes wait, and the socket is not closed under it.

import type { Socket } from 'node:net'
import type { Logger } from '../../log.ts'
import { hexDump } from '../trace/hex-dump.ts'
import type { ConnectionTrace } from '../trace/trace.ts'
import type { WireError } from '../../errors.ts'
import type { ConnectionStates } from './connection-state.ts'
import { Framing, ReplySpill, type SpillBudget } from './spill.ts'
import { countSending, type TrafficSource } from './traffic.ts'

/**
 * Above this many bytes of replies not yet taken by the client, its next batch waits until the client reads
 * (backpressure): a client that stops reading holds at most this plus one batch's replies in our memory.
 */
const OUTPUT_HIGH_WATER = 1 << 20

/** What the output needs of its connection. */
export interface OutputConnection extends TrafficSource {
  readonly socket: Socket
  readonly states: ConnectionStates
  /** Put the connection in its resting state while it waits for its client to read. */
  settle(): void
  /** Where the server keeps replies its clients do not read (null: nowhere, they wait in the database). */
  readonly spillBudget: SpillBudget | null
  /** The client's statement runs outside a transaction block, so its replies may wait on disk instead. */
  readonly mayKeepReplies: boolean
  /** The spill cut the client off: its FATAL is queued already; close it. */
  cutOff(error: WireError): void
  /** Bytes read from the socket and not yet whole messages handed out. */
  readonly unreadBytes: number
  /** The database's thread ran the client's `unit` from its lent socket: its last statement now. */
  lentUnitRan(unit: Buffer): void
}

export class ClientOutput {
  readonly #connection: OutputConnection
  readonly #log: Logger
  readonly #trace: ConnectionTrace | null
  readonly #inspect: boolean
  /** Waiting for the client to read its replies before running (or sending) more of its work. */
  #blocked = false
  /** That wait, shared by everyone waiting on it. */
  #readerWait: Promise<void> | null = null
  /** Inside a PGlite call whose replies go out as one send (see cork()). */
  #corked = false
  /** A reply is being written straight to the socket by the database's thread (beginDirect). */
  #direct = false
  /** The socket's reading is the database's thread's (lendReading), and what it handed back unrun. */
  #lent = false
  readonly #unread: Buffer[] = []
  /** The client stopped reading a reply written straight to it (directBlocked). */
  #blockedByDirect = false
  /**
   * The thread stopped writing that reply to the socket, and sends the rest here (diverted): Node may close the socket
   * again, and our own writes still wait for the reply's end or a message we rewrite (relayed).
   */
  #diverted = false
  /** The server's writes that came meanwhile, sent once it ends; and an end() asked for then. */
  #held: Uint8Array[] = []
  #endHeld = false
  /** The socket handle whose close waits for a direct reply to end, and that close, if Node asked for it. */
  #guarded: SocketHandle | null = null
  #heldClose: (() => void) | null = null
  /** Where the bytes written so far stand in their messages (from the start of the call: a spill cuts at a boundary). */
  readonly #framing = new Framing()
  /** The client's replies kept on disk until it reads them; everything written goes after them meanwhile. */
  #spill: ReplySpill | null = null
  /** Waiting, between batches, for the spill to be sent on: its end. */
  #spillDone: (() => void) | null = null
  /** The socket whose close ends a spill (watched once). */
  #closeWatched: Socket | null = null

  constructor(connection: OutputConnection, log: Logger, trace: ConnectionTrace | null, inspect: boolean) {
    this.#connection = connection
    this.#log = log
    this.#trace = trace
    this.#inspect = inspect
  }

  /** The client is not reading its replies, so its next batch waits. */
  get blocked(): boolean {
    return this.#blocked
  }

  /** The socket's reading is its database thread's now (lendReading). */
  get lent(): boolean {
    return this.#lent
  }

  /** Everything the client receives goes through here: PGlite's replies and the server's own messages. */
  write(bytes: Uint8Array): void {
    if (this.#direct) {
      this.#held.push(bytes)
      return
    }
    if (this.#inspect) this.#log.trace('to client', { dump: hexDump(bytes) })
    const socket = this.#connection.socket
    if (!socket.writable) return
    this.#trace?.out(bytes)
    if (this.#spill) {
      this.#spill.append(bytes)
      return
    }
    this.#framing.feed(bytes)
    socket.write(bytes)
  }

  /** End the socket once what was written is sent (after a direct reply in progress, and what is on disk). */
  end(): void {
    if (this.#direct) this.#endHeld = true
    else if (this.#spill) this.#spill.end()
    else this.#connection.socket.end()
  }

  /**
   * The database's thread stopped writing the reply straight to the socket (it stayed full): the rest comes to raw(),
   * from where `framing` says in its messages.
   */
  diverted(framing: Uint8Array): void {
    this.#framing.set(framing)
    this.#diverted = true
    // Nothing writes to the descriptor any more: a close Node asked for meanwhile may happen.
    const close = this.#heldClose
    this.#heldClose = null
    close?.()
  }

  /** The rest of a reply that was going straight to the socket: after what the thread wrote, before anything held. */
  raw(bytes: Uint8Array): void | Promise<void> {
    const socket = this.#connection.socket
    if (!socket.writable) return
    if (this.#spill) this.#spill.append(bytes)
    else {
      this.#framing.feed(bytes)
      socket.write(bytes)
    }
    return this.waitForReader() ?? undefined
  }

  /**
   * The socket's descriptor, if the database's thread may write a reply straight to it now: a plain socket (TLS is
   * this thread's to encrypt), nothing of ours waiting to go before the reply, no trace or hex dump to make of it.
   */
  directFd(): number {
    if (this.#inspect || this.#trace !== null || this.#readerWait !== null || this.#spill !== null) return -1
    const socket = this.#connection.socket as Socket & { encrypted?: boolean; _handle?: SocketHandle | null }
    if (socket.encrypted === true || !socket.writable || socket.writableLength > 0) return -1
    const fd = socket._handle?.fd
    return typeof fd === 'number' && fd >= 0 ? fd : -1
  }

  /**
   * A reply goes straight to the socket from now until endDirect(): our writes wait, and Node's close of the socket
   * (the client went away meanwhile) waits too, so the descriptor the thread writes to stays this client's.
   */
  beginDirect(): void {
    this.#direct = true
    this.#diverted = false
    if (!this.#spill) this.#framing.reset()
    const handle = (this.#connection.socket as Socket & { _handle?: SocketHandle | null })._handle
    if (handle && this.#guarded !== handle) {
      this.#guarded = handle
      const close = handle.close
      handle.close = (...args: unknown[]): unknown => {
        if (!this.#direct || this.#diverted) return close.apply(handle, args)
        this.#heldClose = () => void close.apply(handle, args)
        return undefined
      }
    }
  }

  endDirect(): void {
    this.#direct = false
    this.#diverted = false
    if (this.#blockedByDirect) this.directBlocked(false)
    // The reply written (or kept) so far ends with a whole message: what was held goes after it.
    if (this.#spill) this.#spill.atBoundary()
    else this.#framing.reset()
    const held = this.#held
    if (held.length > 0) {
      this.#held = []
      for (const bytes of held) this.write(bytes)
    }
    if (this.#endHeld) {
      this.#endHeld = false
      this.end()
    }
    const close = this.#heldClose
    this.#heldClose = null
    close?.()
    this.#spill?.poke()
  }

  /**
   * The socket's reading goes to the database's thread until endLend (engine/lent-reads.ts): Node reads nothing of it
   * meanwhile (its stream asks for nothing, its handle stops). False if that cannot be now: bytes read and not taken,
   * or a socket that is paused, ending or not a plain one.
   */
  lendReading(): boolean {
    const socket = this.#connection.socket as LendableSocket
    const handle = socket._handle
    if (this.#lent || typeof handle?.readStop !== 'function' || this.#connection.unreadBytes > 0) return false
    if (socket.readableLength > 0 || socket.isPaused() || !socket.readable) return false
    // As Node's own stop of a read: a handle that fails it is a socket gone bad.
    if (handle.readStop() !== 0) return false
    socket.pause()
    socket._read = readNothing
    handle.reading = false
    this.#lent = true
    return true
  }

  lentUnread(bytes: Buffer): void {
    this.#unread.push(bytes)
  }

  lentRan(lastUnit: Buffer): void {
    // The client's last statement, as pg_stat_activity shows it; and the client is sending.
    this.#connection.lentUnitRan(lastUnit)
    countSending(this.#connection)
  }

  /** The socket is back from the database's thread: Node reads first what the thread read and did not run. */
  endLend(): void {
    if (!this.#lent) return
    this.#lent = false
    const unread = this.#unread.splice(0)
    const socket = this.#connection.socket as LendableSocket
    delete (socket as Partial<LendableSocket>)._read
    if (socket.destroyed) return
    if (unread.length > 0) socket.unshift(unread.length === 1 ? unread[0] : Buffer.concat(unread))
    // The stream may count a read of the handle's as under way (it asks again only once that one delivered): the
    // handle starts reading again itself, as Node's own start of a read does.
    const handle = socket._handle
    if (handle && !handle.reading) {
      handle.reading = true
      // As Node's own start of a read: a handle that fails it is a socket gone bad, which would never read again.
      if (handle.readStart?.() !== 0) return void socket.destroy()
    }
    socket.resume()
  }

  /**
   * The database's thread stopped writing the reply straight to the socket, or to raw() after a diversion, at a
   * message boundary (a message the server rewrites came): the rest comes through write(), after what was held, and
   * waits for the client as any does.
   */
  relayed(): void {
    if (this.#direct) this.endDirect()
  }

  /** The client stopped reading a reply written straight to it (true), or read again (false): as waitForReader. */
  directBlocked(isBlocked: boolean): void {
    const { states } = this.#connection
    if (isBlocked) {
      this.#log.debug('client not reading; waiting for it', { direct: true })
      this.#blocked = this.#blockedByDirect = true
      this.#connection.settle()
    } else if (this.#blockedByDirect) {
      this.#blockedByDirect = false
      if (this.#readerWait !== null) return
      this.#blocked = false
      if (states.isServing) states.enter('active')
    }
  }

  /** Hold writes for one send until uncork() (one PGlite call's replies); never while waiting for the client to read. */
  cork(): void {
    this.#corked = true
    if (this.#spill) return
    this.#framing.reset()
    if (!this.#readerWait) this.#connection.socket.cork()
  }

  uncork(): void {
    this.#corked = false
    const socket = this.#connection.socket
    while (socket.writableCorked > 0) socket.uncork()
    this.#spill?.poke()
  }

  /**
   * Null while few of the client's replies wait unread; else a promise of its reading them (or going away). For a
   * call's output (not `beforeBatch`) whose statement runs outside a transaction block, the rest is kept on disk
   * instead (the promise then only waits for the file to take it); the client's next batch waits until it has read
   * it all.
   */
  waitForReader(beforeBatch = false): Promise<void> | null {
    const spill = this.#spill
    if (spill) return beforeBatch ? this.#waitForSpill() : spill.room()
    if (this.#readerWait) return this.#readerWait
    const { socket, states } = this.#connection
    if (socket.writableLength <= OUTPUT_HIGH_WATER) return null
    if (!beforeBatch && this.#connection.mayKeepReplies && this.#startSpill()) return null
    const wasActive = states.current === 'active'
    // Writes held back for one send (cork) must go now, or the client could never read them. The call may end
    // before the client reads (PGlite in this thread does not wait for its output): cork again only if still inside it.
    while (socket.writableCorked > 0) socket.uncork()
    this.#readerWait = this.#drained().finally(() => {
      this.#readerWait = null
      if (this.#corked && socket.writableCorked === 0) socket.cork()
      if (wasActive) states.enter('active')
    })
    return this.#readerWait
  }

  /** Keep what comes next on disk (spill.ts); false if the server keeps nothing there, or the file cannot be made. */
  #startSpill(): boolean {
    const { socket, spillBudget } = this.#connection
    if (spillBudget === null || spillBudget.limit === 0) return false
    try {
      this.#spill = new ReplySpill(
        socket,
        spillBudget,
        this.#framing,
        { drained: () => this.#endSpill(), cutOff: (error) => this.#connection.cutOff(error) },
        this.#log,
      )
    } catch (error) {
      this.#log.warn('could not keep unread replies on disk; the statement waits for the client instead', { error })
      return false
    }
    while (socket.writableCorked > 0) socket.uncork()
    if (this.#closeWatched !== socket) {
      this.#closeWatched = socket
      socket.once('close', () => this.#endSpill())
    }
    return true
  }

  /** Everything kept was sent on (or the client went): what comes next goes to the socket again. */
  #endSpill(): void {
    const spill = this.#spill
    if (!spill) return
    this.#spill = null
    spill.dispose()
    const done = this.#spillDone
    this.#spillDone = null
    done?.()
    if (this.#corked) this.#connection.socket.cork()
  }

  /** Between batches: until everything kept on disk was sent on (or the client went). */
  #waitForSpill(): Promise<void> {
    if (this.#readerWait) return this.#readerWait
    const { states } = this.#connection
    this.#blocked = true
    this.#log.debug('client not reading; its replies wait on disk', { pending: this.#spill?.pending })
    this.#connection.settle()
    this.#readerWait = new Promise<void>((resolve) => (this.#spillDone = resolve)).finally(() => {
      this.#readerWait = null
      this.#blocked = false
      if (states.isServing) states.enter('active')
    })
    this.#spill?.poke()
    return this.#readerWait
  }

  /**
   * Wait until the client has read its replies (or gone). A session holder that stops reading is reaped by the
   * idle-in-transaction timer as any stalled holder is; a client at rest holds nothing while it waits.
   */
  async #drained(): Promise<void> {
    const socket = this.#connection.socket
    this.#blocked = true
    this.#log.debug('client not reading; waiting for it', { pending: socket.writableLength })
    this.#connection.settle()
    try {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done)
          socket.off('close', done)
          resolve()
        }
        socket.on('drain', done)
        socket.on('close', done)
      })
    } finally {
      this.#blocked = false
    }
  }
}

/** What Node's socket keeps of libuv's handle, as far as a direct reply needs it. */
interface SocketHandle {
  readonly fd?: number
  close: (...args: unknown[]) => unknown
  reading?: boolean
  readStop?: () => number
  readStart?: () => number
}

type LendableSocket = Socket & { _handle?: SocketHandle | null; _read: (size: number) => void }
const readNothing = (): void => {}
