// The requests to a database thread besides protocol calls (its start, query, exec, dump, close): messages with an id,
// settled by the thread's replies. The worker is referenced only while one is out, like an in-process PGlite, which
// never keeps the process alive.

import type { Worker } from 'node:worker_threads'
import { decodeThreadError, type ThreadReply, type ThreadRequest } from './thread-messages.ts'
import { isPGliteFatal } from '../errors.ts'

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
type Call = { resolve(value: unknown): void; reject(error: Error): void }

export type Request = DistributiveOmit<ThreadRequest, 'id'>

export class ThreadRequests {
  readonly #worker: Worker
  /** Has the thread turn its event loop (it may be waiting for a protocol call) for a message. */
  readonly #turn: () => void
  /** A reply said PGlite died (isPGliteFatal): told before the request fails with it. */
  readonly #fatal: (error: Error) => void
  readonly #calls = new Map<number, Call>()
  #nextId = 1

  constructor(worker: Worker, turn: () => void, fatal: (error: Error) => void) {
    this.#worker = worker
    this.#turn = turn
    this.#fatal = fatal
    worker.on('message', (reply: ThreadReply) => this.#onReply(reply))
  }

  /** Requests out now. */
  get outstanding(): number {
    return this.#calls.size
  }

  /** The thread's start, answered as request 0. */
  started(): Promise<unknown> {
    return new Promise((resolve, reject) => this.#calls.set(0, { resolve, reject }))
  }

  send(request: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject })
      if (this.#calls.size === 1) this.#worker.ref()
      this.#worker.postMessage({ ...request, id } as ThreadRequest, transfer)
      this.#turn()
    })
  }

  /**
   * `request` answered within `ms`, or rejected with "`timeout` within `ms` ms": for a thread whose PGlite died, which
   * may not answer; it does not keep the process alive meanwhile.
   */
  async within(request: Request, ms: number, timeout: string): Promise<unknown> {
    const id = this.#nextId++
    let timer: NodeJS.Timeout | undefined
    try {
      return await new Promise((resolve, reject) => {
        this.#calls.set(id, { resolve, reject })
        timer = setTimeout(() => reject(new Error(`${timeout} within ${ms} ms`)), ms)
        this.#worker.postMessage({ ...request, id } as ThreadRequest)
        this.#turn()
      })
    } finally {
      clearTimeout(timer)
      this.#calls.delete(id)
    }
  }

  /** Every request out fails with `error` now. */
  failAll(error: Error): void {
    for (const [id, call] of this.#calls) {
      this.#calls.delete(id)
      call.reject(error)
    }
  }

  #onReply(reply: ThreadReply): void {
    const call = this.#calls.get(reply.id)
    if (!call) return
    if (reply.error) {
      const error = decodeThreadError(reply.error)
      this.#settle(reply.id)
      if (isPGliteFatal(error)) this.#fatal(error)
      call.reject(error)
    } else if (reply.done) {
      this.#settle(reply.id)
      call.resolve(reply.value)
    }
  }

  #settle(id: number): void {
    this.#calls.delete(id)
    if (this.#calls.size === 0) this.#worker.unref()
  }
}
