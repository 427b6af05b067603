// One unit of a client's riding in a combined call (session/combined-calls.ts Rider). A ride is made per unit, on the
// hot path, so it holds only its own fields; what it does with the client's backend goes through a RideContext that
// the backend makes once.

import type { Rider } from '../session/rider.ts'
import type { OutputSink } from '../session/databases.ts'
import type { SessionMember } from '../session/members.ts'
import type { RideHooks } from '../features/backend.ts'
import type { ClientState } from '../features/state.ts'

/** What a ride does with its client's backend (ClientBackend). */
export interface RideContext {
  readonly member: SessionMember
  readonly sink: OutputSink
  /** See Rider.settingsKey. */
  settingsKey(): string
  prepare(): Promise<void>
  /** The client's socket, its reply going straight there from now (see Rider.direct), or null. */
  openDirect(): { fd: number; relayFrom: number } | null
  /** The socket is the server's again. */
  closeDirect(): void
  summary(summary: Uint8Array): void
  blocked(isBlocked: boolean): void
  diverted(framing: Uint8Array): void
  raw(bytes: Uint8Array): void | Promise<void>
  /** The unit's output begins; `corked`: its replies are held for one send (not written straight to the client). */
  begin(corked: boolean): void
  /** The unit's output ended; `ran`: it ran (`unit` is what ran). */
  end(corked: boolean, ran: boolean, unit: Buffer): void
  readonly atRest: boolean
  quiet(last: boolean): boolean
  release(last: boolean): Promise<void>
}

export class UnitRide implements Rider {
  readonly member: SessionMember
  readonly unit: Buffer
  readonly sink: OutputSink
  readonly #context: RideContext
  readonly #hooks: RideHooks
  /** The unit is its client's last for now (see releasesQuietly). */
  readonly #last: boolean
  /** The unit's reply goes straight to the client (decided as the call goes: `direct`), until its end. */
  #direct = false

  constructor(context: RideContext, unit: Buffer, hooks: RideHooks, last: boolean) {
    this.member = context.member
    this.sink = context.sink
    this.unit = unit
    this.#context = context
    this.#hooks = hooks
    this.#last = last
  }

  get settingsKey(): string {
    return this.#context.settingsKey()
  }

  get atRest(): boolean {
    return this.#context.atRest
  }

  get quiet(): boolean {
    return this.#context.quiet(this.#last)
  }

  prepare(): Promise<void> {
    return this.#context.prepare()
  }

  direct(): { fd: number; relayFrom: number } | null {
    const target = this.#context.openDirect()
    if (target !== null) this.#direct = true
    return target
  }

  endDirect(): void {
    if (!this.#direct) return
    this.#direct = false
    this.#context.closeDirect()
  }

  summary(summary: Uint8Array): void {
    this.#context.summary(summary)
  }

  blocked(isBlocked: boolean): void {
    this.#context.blocked(isBlocked)
  }

  diverted(framing: Uint8Array): void {
    this.#context.diverted(framing)
  }

  raw(bytes: Uint8Array): void | Promise<void> {
    return this.#context.raw(bytes)
  }

  begin(): void {
    this.#hooks.begin()
    this.#context.begin(!this.#direct)
  }

  end(ran: boolean): void {
    const corked = !this.#direct
    this.endDirect()
    this.#context.end(corked, ran, this.unit)
    this.#hooks.end(ran)
  }

  settle(): Promise<void> {
    return this.#context.release(this.#last)
  }
}

/**
 * Whether a client's next unit can ride in a combined call: it needs nothing done in the session first (its startup
 * settings, statements to make again, temporary objects to name back) and no per-backend context.
 */
export function needsNothingOfSession(state: ClientState, startupPending: boolean): boolean {
  return (
    !startupPending &&
    !state.temp.mayMake &&
    !state.temp.revealed &&
    !state.temp.hasHidden &&
    !state.statements.hasUnmade &&
    state.listenCommands.length === 0 &&
    state.extensionsWanted.length === 0 &&
    !state.resetRequested &&
    state.signals.length === 0
  )
}
