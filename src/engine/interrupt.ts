// Reaching into a database thread while its statement runs. The thread's event loop is busy in the call, so no
// message gets through; the inspector's does: Runtime.evaluate sent to a worker through the NodeWorker domain is
// delivered by a V8 interrupt and runs inside the executing WASM (no pause, no Debugger: enabling the Debugger would
// halve WASM's speed). One inspector session serves every database thread of the process.

import { Session } from 'node:inspector'

/** How long an evaluation may take before it counts as not delivered (the thread is stuck outside JS and WASM). */
const EVALUATE_DEADLINE_MS = 2000
const ATTACH_DEADLINE_MS = 5000

interface Pending {
  resolve(value: unknown): void
  timer: NodeJS.Timeout
}

class WorkerInspector {
  readonly #session = new Session()
  readonly #enabled: Promise<void>
  /** Inspector session of each attached worker, by thread id. */
  readonly #attached = new Map<string, string>()
  readonly #attachWaiters = new Map<string, () => void>()
  readonly #pending = new Map<number, Pending>()
  #nextId = 1

  constructor() {
    this.#session.connect()
    this.#session.on('NodeWorker.attachedToWorker', ({ params }) => {
      const threadId = params.workerInfo.workerId
      this.#attached.set(threadId, params.sessionId)
      this.#attachWaiters.get(threadId)?.()
    })
    this.#session.on('NodeWorker.detachedFromWorker', ({ params }) => {
      for (const [threadId, sessionId] of this.#attached)
        if (sessionId === params.sessionId) this.#attached.delete(threadId)
    })
    this.#session.on('NodeWorker.receivedMessageFromWorker', ({ params }) => {
      const message = JSON.parse(params.message) as { id?: number; result?: { result?: { value?: unknown } } }
      if (message.id === undefined) return
      const pending = this.#pending.get(message.id)
      if (!pending) return
      this.#pending.delete(message.id)
      clearTimeout(pending.timer)
      pending.resolve(message.result?.result?.value)
    })
    this.#enabled = new Promise((resolve, reject) => {
      this.#session.post('NodeWorker.enable', { waitForDebuggerOnStart: false }, (error) =>
        error ? reject(error) : resolve(),
      )
    })
  }

  /** Resolves once the worker of `threadId` is attached (workers attach as they start). */
  async attach(threadId: number): Promise<void> {
    await this.#enabled
    const key = String(threadId)
    if (this.#attached.has(key)) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#attachWaiters.delete(key)
        reject(new Error(`the inspector did not attach to database thread ${key} within ${ATTACH_DEADLINE_MS} ms`))
      }, ATTACH_DEADLINE_MS).unref()
      this.#attachWaiters.set(key, () => {
        clearTimeout(timer)
        this.#attachWaiters.delete(key)
        resolve()
      })
    })
  }

  /** Evaluate `expression` in the thread; its value, or undefined if it could not be delivered in time. */
  evaluate(threadId: number, expression: string): Promise<unknown> {
    const sessionId = this.#attached.get(String(threadId))
    if (sessionId === undefined) return Promise.resolve(undefined)
    const id = this.#nextId++
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        resolve(undefined)
      }, EVALUATE_DEADLINE_MS).unref()
      this.#pending.set(id, { resolve, timer })
      const message = JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression, returnByValue: true } })
      this.#session.post('NodeWorker.sendMessageToWorker', { sessionId, message }, (error) => {
        if (!error) return
        clearTimeout(timer)
        this.#pending.delete(id)
        resolve(undefined)
      })
    })
  }
}

let inspector: WorkerInspector | null = null

/** The process's inspector session for database threads, started on first use. */
export function workerInspector(): WorkerInspector {
  inspector ??= new WorkerInspector()
  return inspector
}

export type { WorkerInspector }
