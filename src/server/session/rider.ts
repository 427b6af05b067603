// What a combined call (combined-calls.ts) asks of each client whose unit rides in it, and how a ride ends.

import type { OutputSink } from './databases.ts'
import type { SessionMember } from './members.ts'

/** One client's unit, as the batch drives it. */
export interface Rider {
  readonly member: SessionMember
  /** Complete messages, ending with the one Query or Sync whose ReadyForQuery ends the unit. */
  readonly unit: Uint8Array
  /**
   * The settings (features/settings.ts key) the unit runs with, as they are now: a batch holds units of one key. It can
   * change while the unit waits (an ALTER DATABASE ... SET makes a new client's unknown until its first turn).
   */
  readonly settingsKey: string
  /** Before the call, for the batch's first rider: give the session its settings, as taking the session would. */
  prepare(): Promise<void>
  /**
   * As the call goes: where the unit's reply may be written straight to the client (its socket, RelayFrom bits), or
   * null; from then until end() or endDirect() the client's socket is the database thread's to write to.
   */
  direct(): { fd: number; relayFrom: number } | null
  /** What the part of the unit's reply written straight to the client said (after begin()). */
  summary(summary: Uint8Array): void
  /** The client stopped reading that reply (true), or read again. */
  blocked(isBlocked: boolean): void
  /** The rest of that reply comes through the server after all (DirectReply.diverted, raw). */
  diverted(framing: Uint8Array): void
  raw(bytes: Uint8Array): void | Promise<void>
  /** The call is over and the unit never ended (it did not run): its socket is the server's again. */
  endDirect(): void
  /** The unit's output begins (or it ended without any): the session is this client's while it runs. */
  begin(): void
  /** The unit's output, as it streams. */
  readonly sink: OutputSink
  /** The unit's output ended; `ran` false: it was stopped before it began (skip, cancel) and did not run. */
  end(ran: boolean): void
  /** After end(): nothing of the client is open in the session. */
  readonly atRest: boolean
  /** After end(): its release needs nothing of the session (no statement of the server's): it may settle at once. */
  readonly quiet: boolean
  /** After the call, in order: what the unit changed in the session is recorded (the client releasing it). */
  settle(): Promise<void>
}

/**
 * How a ride ended: the unit ran; it ran and left its client holding the session; it did not run (the client runs it
 * as an ordinary call); or it was stopped before it began and the call ended before reaching it (the client answers
 * it as refused work: it must never run).
 */
export type RideEnd = 'ran' | 'holds' | 'not-run' | 'stopped'
