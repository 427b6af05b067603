// A PGlite in its own worker thread, behind the part of PGlite's interface that the server, the migrations and
// startDevDb use. Several databases then run on several cores, and the thread serving the sockets never runs Postgres.

import { Worker } from 'node:worker_threads'
import type { Results } from '@electric-sql/pglite'
import type {
  CrossingQueryOptions,
  CrossingResults,
  ThreadExecOptions,
  ThreadInit,
  ThreadPGliteOptions,
  ThreadQueryOptions,
} from './thread-messages.ts'
import { ProtocolCalls, type OutputSink } from './calls.ts'
import { Turns } from './turns.ts'
import { ThreadRequests, type Request } from './thread-requests.ts'
import { runTransaction, type DbThreadTransaction, type TransactionStatements } from './thread-transaction.ts'
import { bootstrap, pgliteWasm, sharedFsBundle } from './thread-bootstrap.ts'
import { workerInspector } from './interrupt.ts'
import { ringBuffer, type UnitTarget } from './ring.ts'
import { CONTROL_BYTES, Control, controlViews } from './stoppable.ts'
import { reclaimLend } from './lent-reads.ts'
import type { EngineImage } from './image.ts'
import { isPGliteFatal } from '../errors.ts'
import { ENGINE_THREAD_STACK_MB } from './stack-depth.ts'
import type { StreamCall, UnitsDirect } from '../server/session/databases.ts'

export type { ThreadExecOptions, ThreadPGliteOptions, ThreadQueryOptions } from './thread-messages.ts'

export interface DbThreadOptions extends ThreadPGliteOptions {
  /** A data dir tarball to start from, as PGlite's `loadDataDir`. */
  loadDataDir?: Blob
  /** Extensions to load, by the names `--extensions` takes (see extensions.ts). */
  extensions?: readonly string[]
  /** Start from a booted instance's image (image.ts) instead of booting; or 'take' this one's, once started (`image`). */
  image?: EngineImage | 'take'
}

/** Saving a dead database's files (rescueFiles) may take this long. */
const RESCUE_DEADLINE_MS = 10_000
/** A close that takes longer than this is given up on: the thread is terminated and close() rejects. */
const CLOSE_DEADLINE_MS = 60_000

/** Ring sizes: requests (COPY data comes in several frames when larger) and replies (large results stream through). */
const REQUEST_RING_BYTES = 1 << 20
const REPLY_RING_BYTES = 1 << 20

export class DbThread {
  /** Resolved: `create()` returns only once PGlite is ready. */
  readonly waitReady: Promise<void> = Promise.resolve()
  /** Created with `image: 'take'`: this instance's image as it started, or why it could not be taken. */
  image: EngineImage | Error | null = null
  /** Started from another instance's image rather than booted. */
  fromImage = false
  readonly #worker: Worker
  /** Protocol calls, through the rings. */
  readonly #protocol: ProtocolCalls
  /** The other requests (query, exec, dump, close), by id, through messages. */
  readonly #requests: ThreadRequests
  readonly #lock = new Turns()
  #callsMade = 0
  /** The call control words it shares with the thread (stoppable.ts Control). */
  #words: Int32Array | null = null
  /** Set once PGlite (or its thread) died; every later call fails with it at once. */
  #dead: Error | null = null
  /** What the thread threw before it exited, kept as the exit error's cause. */
  #threadError: unknown = null
  #closing: Promise<void> | null = null
  #closed = false
  /** Node reported the thread's exit. */
  #exited = false
  /** end() was called: the thread is being terminated, nothing more is asked of it. */
  #ended = false

  /** Start a thread (its needs got at once) and open PGlite in it; rejects with PGlite's own error if it cannot. */
  static async create(options: DbThreadOptions = {}): Promise<DbThread> {
    const { loadDataDir, ...rest } = options
    const [tarball, wasm, fsBundle, code] = await Promise.all([
      loadDataDir ? loadDataDir.arrayBuffer() : null,
      pgliteWasm(),
      sharedFsBundle(),
      bootstrap(),
    ])
    const { extensions = [], ...pgliteOptions } = rest
    const rings = { requests: ringBuffer(REQUEST_RING_BYTES), replies: ringBuffer(REPLY_RING_BYTES) }
    const control = new SharedArrayBuffer(CONTROL_BYTES)
    const { image, ...startOptions } = pgliteOptions
    const init: ThreadInit = {
      options: startOptions,
      wasm,
      fsBundle,
      loadDataDir: tarball,
      extensions,
      rings,
      control,
      ...(image ? { image } : {}),
    }
    const inspector = workerInspector()
    const worker = new Worker(code, {
      eval: true,
      workerData: init,
      transferList: tarball ? [tarball] : [],
      name: 'pglite-dev-db database',
      resourceLimits: { stackSizeMb: ENGINE_THREAD_STACK_MB },
    })
    const thread = new DbThread(worker, new ProtocolCalls(rings, control, worker.threadId))
    thread.#words = controlViews(control).words
    thread.fromImage = typeof image === 'object'
    const started = thread.#requests.started()
    try {
      const [value] = await Promise.all([started, inspector.attach(worker.threadId)])
      const taken = value as { image: EngineImage } | { imageError: string } | null
      if (taken) thread.image = 'image' in taken ? taken.image : new Error(taken.imageError)
    } catch (error) {
      await worker.terminate()
      throw error
    }
    worker.unref()
    return thread
  }

  private constructor(worker: Worker, protocol: ProtocolCalls) {
    this.#worker = worker
    this.#protocol = protocol
    this.#requests = new ThreadRequests(
      worker,
      () => protocol.turn(),
      (error) => this.#die(error),
    )
    worker.on('error', (error) => (this.#threadError = error))
    worker.on('exit', (code) => {
      this.#exited = true
      if (this.#closed) return
      // The thread is gone with its PGlite: the same verdict as PGlite's own exit() (isPGliteFatal).
      const error = new Error(`the database thread exited (code ${code})`, { cause: this.#threadError ?? undefined })
      error.name = 'ExitStatus'
      this.#die(Object.assign(error, { status: code }))
    })
    worker.on('messageerror', (error) => this.#die(error))
    // The last resort for a statement that ignores its cancel: end the thread; the database's owner reopens it.
    protocol.onStuck = (ms) =>
      void this.end(
        new Error(`a statement did not stop within ${ms / 1000} s of its cancel; its database was restarted`),
      )
  }

  /**
   * End the thread now, PGlite and all, without closing it: what it had not written is lost, every commit it
   * acknowledged is in its data dir's files (PGlite writes each one through before answering). The database dies
   * with `reason` (onDeath). For a statement that cannot be stopped.
   */
  async end(reason: Error): Promise<void> {
    if (this.#dead || this.#closed) return
    reason.name = 'ExitStatus'
    this.#ended = true
    this.#die(reason)
    await this.#worker.terminate()
  }

  /** Wake the thread now if it sleeps, ahead of a call about to come: it looks for it briefly (thread-worker.ts). */
  prewake(): void {
    if (this.#dead === null && !this.#closed) this.#protocol.prewake()
  }

  /** Calls made into the database so far, protocol calls and requests alike: any may change its files (template-copies.ts). */
  get callsMade(): number {
    return this.#callsMade
  }

  get closed(): boolean {
    return this.#closed
  }

  /** The worker thread has ended (after `close()`, or when PGlite took it down). */
  get threadExited(): boolean {
    return this.#exited
  }

  /** Holds the lock that query/exec/transaction/dumpDataDir take, as PGlite's does; the raw calls take none. */
  runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#lock.run(fn)
  }

  /**
   * Runs `message` (complete frontend messages) as one call; `onRawData` gets the output as it is produced, and may
   * hold the rest back by returning a promise (the statement waits in its thread meanwhile).
   */
  execProtocolRawStream(message: Uint8Array, options: StreamCall): Promise<void> {
    return this.#protocolCall(() => this.#protocol.run(message, options))
  }

  /** This thread writes a call's reply straight to the client's socket when asked (direct-reply.ts). */
  readonly directReplies = true

  /** The client of the call running now (in a call of units, unit `unit`'s) is gone: the rest of its reply goes nowhere. */
  abandonDirectReply(unit?: number): void {
    this.#protocol.abandonDirectReply(unit)
  }

  /**
   * Several clients' units in one call (calls.ts runUnits): each runs as its own call into PGlite, their output to
   * `onRawData` in order with `onUnitEnd` after each; the call ends early after a unit that leaves the session open
   * or changed.
   */
  execProtocolUnits(
    units: readonly Uint8Array[],
    options: { onRawData: OutputSink; onUnitEnd: (skipped: boolean) => void; direct?: UnitsDirect | null },
  ): Promise<void> {
    return this.#protocolCall(() =>
      this.#protocol.runUnits(units, options.onRawData, options.onUnitEnd, options.direct ?? null),
    )
  }

  /** A protocol call keeps the process alive while it runs; a fatal failure is the database's death. */
  async #protocolCall(call: () => Promise<void>): Promise<void> {
    if (this.#dead) throw this.#dead
    this.#callsMade++
    if (this.#requests.outstanding === 0) this.#worker.ref()
    try {
      await call()
    } catch (error) {
      if (isPGliteFatal(error)) this.#die(error as Error)
      throw error
    } finally {
      if (this.#requests.outstanding === 0) this.#worker.unref()
    }
  }

  /**
   * Stop the statement running now, as a CancelRequest does in Postgres (57014). In a call of units, unit `unit`'s;
   * a unit that has not begun is not run ('skipped': its client must be answered). False if nothing was stopped.
   */
  cancel(unit?: number): Promise<'canceled' | 'skipped' | ''> {
    return this.#protocol.cancel(unit)
  }

  /**
   * The lent socket of the call running, taken back before the thread began to read it (lent-reads.ts reclaimLend).
   * Only once the call runs: before, its lend's word is not set yet.
   */
  reclaimLend(): boolean {
    const words = this.#words
    return words !== null && Atomics.load(words, Control.Current) > 0 && reclaimLend(words)
  }

  /** In the call of units running now, unit `unit` is not run if it has not begun (its client must be answered). */
  skipUnit(unit: number): Promise<boolean> {
    return this.#protocol.skip(unit)
  }

  /** One unit more for the call of units running now (more-units.ts); false if it takes none. */
  addUnit(unit: Uint8Array, target: UnitTarget | null): boolean {
    return this.#dead === null && this.#protocol.addUnit(unit, target)
  }

  async execProtocolRaw(message: Uint8Array, options: { syncToFs?: boolean } = {}): Promise<Uint8Array> {
    const chunks: Uint8Array[] = []
    await this.execProtocolRawStream(message, {
      ...options,
      onRawData: (chunk) => void chunks.push(chunk),
    })
    return Buffer.concat(chunks)
  }

  query<T>(sql: string, params?: unknown[], options?: ThreadQueryOptions): Promise<Results<T>> {
    return this.#lock.run(() => this.#query<T>(sql, params, options))
  }

  exec(sql: string, options?: ThreadExecOptions): Promise<Array<Results>> {
    return this.#lock.run(() => this.#exec(sql, options))
  }

  /**
   * BEGIN, the callback's statements, COMMIT (ROLLBACK if it throws). Unlike PGlite's, it holds the lock throughout,
   * so nothing else (a client's batch through runExclusive) runs inside the transaction.
   */
  transaction<T>(callback: (tx: DbThreadTransaction) => Promise<T>): Promise<T> {
    const statements: TransactionStatements = {
      query: (sql, params, options) => this.#query(sql, params, options),
      exec: (sql, options) => this.#exec(sql, options),
      dead: () => this.#dead !== null,
    }
    return this.#lock.run(() => runTransaction(statements, callback))
  }

  async dumpDataDir(compression?: 'auto' | 'gzip' | 'none'): Promise<File | Blob> {
    const dump = (await this.#lock.run(() =>
      this.#request({ op: 'dumpDataDir', ...(compression ? { compression } : {}) }),
    )) as {
      bytes: ArrayBuffer
      name: string | null
      type: string
    }
    return dump.name === null
      ? new Blob([new Uint8Array(dump.bytes)], { type: dump.type })
      : new File([new Uint8Array(dump.bytes)], dump.name, { type: dump.type })
  }

  /**
   * The files of a database that died while its thread lives on (PGlite answered FATAL or PANIC): what an in-memory
   * database can be reopened from, as after a crash. Null when the thread itself is gone.
   */
  async rescueFiles(): Promise<Blob | null> {
    if (this.#exited || this.#closed || this.#ended) return null
    const request = { op: 'dumpDataDir', compression: 'none' } as const
    const dump = (await this.#requests.within(request, RESCUE_DEADLINE_MS, 'the files were not saved')) as {
      bytes: ArrayBuffer
      type: string
    }
    return new Blob([new Uint8Array(dump.bytes)], { type: dump.type })
  }

  /**
   * Close PGlite (every commit on disk) and end the thread. A dead instance's thread is ended without asking it, and
   * one that does not close within `deadlineMs` (a statement that cannot be stopped holds it) is terminated: its
   * committed transactions are in its data dir's files, which the next open recovers. Idempotent.
   */
  close(deadlineMs = CLOSE_DEADLINE_MS): Promise<void> {
    this.#closing ??= this.#close(deadlineMs)
    return this.#closing
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #close(deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      if (this.#dead) return
      // Both settle to the error or null, so the loser of the race has nobody left to reject to.
      const closed = this.#request({ op: 'close' }).then(
        () => null,
        (error: unknown) => error,
      )
      const deadline = new Promise<Error>((resolve) => {
        timer = setTimeout(
          () => resolve(new Error(`PGlite did not close within ${deadlineMs} ms; its thread was terminated`)),
          deadlineMs,
        )
      })
      const failure = await Promise.race([closed, deadline])
      if (failure) throw failure
    } finally {
      clearTimeout(timer)
      this.#closed = true
      await this.#worker.terminate()
      this.#die(new Error('PGlite is closed'))
    }
  }

  /** A Blob for /dev/blob crosses as its bytes, and so does what COPY TO '/dev/blob' wrote. */
  async #query<T>(
    sql: string,
    params: unknown[] | undefined,
    options: ThreadQueryOptions | undefined,
  ): Promise<Results<T>> {
    const { blob, ...rest } = options ?? {}
    const crossing: CrossingQueryOptions | undefined = blob
      ? { ...rest, blob: await blob.arrayBuffer() }
      : options && rest
    const request = {
      op: 'query' as const,
      sql,
      ...(params ? { params } : {}),
      ...(crossing ? { options: crossing } : {}),
    }
    const { blob: written, ...results } = (await this.#request(
      request,
      crossing?.blob ? [crossing.blob] : [],
    )) as CrossingResults
    return (written ? { ...results, blob: new Blob([written]) } : results) as Results<T>
  }

  #exec(sql: string, options?: ThreadExecOptions): Promise<Array<Results>> {
    return this.#request({ op: 'exec', sql, ...(options ? { options } : {}) }) as Promise<Array<Results>>
  }

  #request(request: Request, transfer: ArrayBuffer[] = []): Promise<unknown> {
    this.#callsMade++
    if (this.#dead) return Promise.reject(this.#dead)
    return this.#requests.send(request, transfer)
  }

  /** Called once, when the database dies while open (not when it is closed). */
  onDeath: ((error: Error) => void) | null = null

  /** From now on every call fails with `error`; the ones in flight fail with it now. */
  #die(error: Error): void {
    const first = this.#dead === null
    this.#dead ??= error
    if (first && !this.#closed) this.onDeath?.(error)
    this.#protocol.fail(this.#dead)
    this.#requests.failAll(error)
    this.#worker.unref()
  }
}
