// What a client's backend is to the rest of its connection, and what it needs of the connection. With real sessions
// (a backend per client) Backend is the one interface to implement again; shared-backend.ts implements it over the
// one shared session.

import type { ClientTimeout } from './settings.ts'
import type { LockWait, FunctionsClient } from './server-functions.ts'
import type { RideEnd } from '../session/rider.ts'
import type { SessionMember, SharedSession } from '../session/session.ts'

/** What the client's wait is told of its unit (connection/session-wait.ts). */
export interface RideHooks {
  begin(): void
  end(ran: boolean): void
}

/** What a backend uses of its client's output (output.ts ClientOutput). */
export interface ReplyOutput {
  /**
   * Null while few of the client's replies wait unread; else a promise of its reading them (or going away). A
   * database that can wait (one in a worker thread) holds the rest of the statement's output back meanwhile.
   */
  waitForReader(): Promise<void> | null
  /** The client stopped reading its replies (the socket's buffer is full). */
  readonly blocked: boolean
  /** Hold small writes while a call streams its output, then send them together. */
  cork(): void
  uncork(): void
  /** The client's socket, if a reply may be written straight to it now (nothing of ours waits to go before), else -1. */
  directFd(): number
  /** A reply goes straight to the socket until endDirect(): the server's own writes wait, and the socket stays open. */
  beginDirect(): void
  endDirect(): void
  /** The client stopped reading a reply written straight to it (true), or read again (false). */
  directBlocked(isBlocked: boolean): void
  /** The rest of a reply being written straight to it comes unread from here on (DirectReply.diverted). */
  diverted(framing: Uint8Array): void
  /** The rest of a reply being written straight to it comes through the server from a message boundary on. */
  relayed(): void
  /** The database's thread reads the socket until endLend (engine/lent-reads.ts); false if it cannot now. */
  lendReading(): boolean
  /** From the lent socket (DirectReply.handBack): bytes the thread read and did not run, which Node reads first. */
  lentUnread(bytes: Buffer): void
  /** From the lent socket: the last unit the thread ran, as the client sent it. */
  lentRan(lastUnit: Buffer): void
  /** The socket is back: Node reads first what the thread handed back unrun. */
  endLend(): void
}

/** The connection a backend answers to. */
export interface BackendClient extends SessionMember, FunctionsClient {
  /** Send bytes to the client (PGlite's replies and the server's own messages alike). */
  write(bytes: Uint8Array): void
  /** How the client's replies reach its socket (output.ts ClientOutput). */
  readonly output: ReplyOutput
  /** The rest of a reply being written straight to it comes through here, unread (DirectReply.raw). */
  raw(bytes: Uint8Array): void | Promise<void>
  /** The client's batches read and waiting to run after the one running. */
  readonly queuedBatches: number
  /** The client has left and nothing more of it waits to run (Connection.#left): what runs now is its last. */
  readonly left: boolean
}

/**
 * What the rest of a connection uses of its client's backend. With real sessions (a backend per client) this is the
 * one interface to implement again; ClientBackend implements it over the one shared session.
 */
export interface Backend {
  readonly session: SharedSession
  readonly client: BackendClient
  readonly isOwner: boolean
  /** Nothing of the client is open: no transaction, pipeline or COPY. */
  readonly atRest: boolean
  readonly pipelineOpen: boolean
  /** An error came in the open pipeline: PGlite skips the client's messages until its Sync. */
  readonly errorPending: boolean
  /** The transaction status the client was last told ('I' while it holds nothing). */
  readonly txStatus: number
  tookSession(): Promise<void>
  /**
   * `functions`: ServerFunctions bits of the messages (what they call that answers per backend). `last`: nothing of
   * the client's batch follows them, so its socket may be lent after them (engine/lent-reads.ts).
   */
  run(bytes: Uint8Array, functions?: number, last?: boolean): Promise<void>
  /** Stop the client's statement running now (its CancelRequest): 57014. False if none was running. */
  cancelRunning(): Promise<boolean>
  capture(bytes: Uint8Array, asClient?: boolean, functions?: number): Promise<Buffer>
  /** The advisory lock the last call had to wait for (pg_advisory_lock of a lock another client holds), taken. */
  takeLockWait(): LockWait | null
  /** The client's lock_timeout (ms; 0: none), which bounds its waits for a lock. */
  readonly lockTimeoutMs: number
  /** The client's statement_timeout and idle timeouts (ms; 0: none), which the server enforces (settings.ts). */
  timeoutMs(setting: ClientTimeout): number
  /** Replies of the client's that changed a setting so far: a new count means a new SET. */
  readonly settingsChanged: number
  /** A SET in the client's open block may have changed its idle-in-transaction timeout: read it again. */
  readTimeoutInBlock(): Promise<void>
  runUnread(bytes: Uint8Array): Promise<void>
  /**
   * Run one complete unit (a Query, or messages ending in Sync) in a call combined with other clients' units
   * (session/combined-calls.ts), if this client can ride: resolves how it ended ('not-run': run it as usual).
   * `hooks.begin` when its unit begins to run, `hooks.end` when it ended (`ran` false: stopped before it began).
   */
  ride(bytes: Buffer, hooks: RideHooks, last: boolean): Promise<RideEnd>
  /** This client needs nothing done in the session before its next unit (see ClientBackend.canRide). */
  readonly canRide: boolean
  /** `last`: the unit was the last of the client's batch (see releaseSession). */
  release(last?: boolean): Promise<void>
  /** The client is gone while its call runs: a reply written straight to it stops there. */
  abandonReply(): void
  forgetChanges(mask: number): void
  settingsDiscarded(): void
  leftSettingsBehind(): void
  /** Something the server does for the client in the session failed: logged, and told the client as a WARNING. */
  warn(what: string, error: Buffer): void
}
