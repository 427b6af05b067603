// Turns at a database thread: one operation at a time (a protocol call, a query of the host's own), in the order
// asked, as PGlite's own lock gives them. Taking a free turn costs no promise of its own: the lock is on every query.

export class Turns {
  #taken = false
  readonly #waiting: Array<() => void> = []

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#taken) await new Promise<void>((resolve) => this.#waiting.push(resolve))
    else this.#taken = true
    try {
      return await fn()
    } finally {
      // The next in line gets the turn as it is (still taken), so nobody can slip in between.
      const next = this.#waiting.shift()
      if (next) next()
      else this.#taken = false
    }
  }
}
