// pg_terminate_backend called by one client on another: the client ended stops at once, and is told once the
// caller's answer is out, as Postgres answers the caller before the backend it signaled is gone (a pool can release
// the connection it ended first).

/** The answers a client owes to the clients it ended, by their pid. */
export class TerminateAnswers {
  readonly #answers = new Map<number, { promise: Promise<void>; resolve: () => void }>()

  /** Resolves once this client's answer to pg_terminate_backend(processId) is out. */
  answerTo(processId: number): Promise<void> {
    let answer = this.#answers.get(processId)
    if (!answer) {
      let resolve!: () => void
      const promise = new Promise<void>((done) => (resolve = done))
      this.#answers.set(processId, (answer = { promise, resolve }))
    }
    return answer.promise
  }

  /**
   * This client's call that told pg_terminate_backend(processId) has ended: its answer is written (streamed, or
   * captured and written in this tick), and the client it ended may be told now.
   */
  answered(processId: number): void {
    const answer = this.#answers.get(processId)
    if (!answer) return
    this.#answers.delete(processId)
    setImmediate(answer.resolve)
  }

  /** This client is going away: the clients it ended wait for no answer. */
  releaseAll(): void {
    for (const answer of this.#answers.values()) answer.resolve()
    this.#answers.clear()
  }
}
