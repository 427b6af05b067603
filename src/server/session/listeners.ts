// Who listens where, for clients that share one session. PGlite's session listens on exactly the union of the
// clients' channels whenever it is at rest; a notification it raises goes to the members listening on its channel.

/** Who listens on each channel, and the channels departed members left that the session still listens on. */
export class Listeners<Member> {
  readonly #byChannel = new Map<string, Set<Member>>()
  /** Channels nobody listens on any more, which the session still does until the next owner at rest unlistens them. */
  readonly #abandoned = new Set<string>()

  get size(): number {
    return this.#byChannel.size
  }

  channels(): IterableIterator<string> {
    return this.#byChannel.keys()
  }

  has(channel: string): boolean {
    return this.#byChannel.has(channel)
  }

  membersOf(channel: string): ReadonlySet<Member> | undefined {
    return this.#byChannel.get(channel)
  }

  /** `member` listens on `channel` from now on. */
  listen(member: Member, channel: string): void {
    let members = this.#byChannel.get(channel)
    if (!members) this.#byChannel.set(channel, (members = new Set()))
    members.add(member)
  }

  /**
   * `member` no longer listens on `channel` (null: on any). Returns the channels nobody listens on any more; the
   * caller unlistens them now if it holds the session, or `abandon`s them to the next owner.
   */
  unlisten(member: Member, channel: string | null): string[] {
    const unneeded: string[] = []
    for (const name of channel === null ? [...this.#byChannel.keys()] : [channel]) {
      const members = this.#byChannel.get(name)
      if (!members?.delete(member) || members.size > 0) continue
      this.#byChannel.delete(name)
      unneeded.push(name)
    }
    return unneeded
  }

  abandon(channels: string[]): void {
    for (const channel of channels) this.#abandoned.add(channel)
  }

  get hasAbandoned(): boolean {
    return this.#abandoned.size > 0
  }

  /** The abandoned channels nobody listens on again since, to unlisten now; forgets them all. */
  takeAbandoned(): string[] {
    const unneeded = [...this.#abandoned].filter((channel) => !this.#byChannel.has(channel))
    this.#abandoned.clear()
    return unneeded
  }

  /** A fresh session listens nowhere: nothing is left to unlisten. */
  forgetAbandoned(): void {
    this.#abandoned.clear()
  }
}

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`

/** One simple Query that runs `verb` on each channel. */
export function listenSql(channels: Iterable<string>, verb: 'LISTEN' | 'UNLISTEN'): string {
  return [...channels].map((channel) => `${verb} ${ident(channel)}`).join('; ')
}
