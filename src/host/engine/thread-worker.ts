// The worker side of db-thread.ts: one PGlite in this thread, running requests one at a time in arrival order and
// sending protocol output back as it is produced, in few messages of transferred buffers.

import { parentPort, workerData } from 'node:worker_threads'
import { PGlite } from '@electric-sql/pglite'
import { FRAME_HEADER_BYTES, FrameFlag, encodeThreadError, readFrameHeader, writeFrameHeader, type CrossingResults, type ThreadInit, type ThreadReply, type ThreadRequest } from './thread-messages.ts'
import { loadExtensions } from '../extensions.ts'
import { isPGliteFatal } from '../../errors.ts'
import { openPGlite } from './pglite.ts'
import { collectGarbageSoon } from './collect-garbage.ts'

/**
 * Output is copied out of PGlite's memory (its chunks are views that the next write reuses) and posted in buffers
 * of up to this many bytes, or when the call ends. Postgres flushes every 8 kB: a large result crosses in 256 kB
 * messages, a small one in a buffer of its exact size on the one message that ends the call. (A 1 MB result cost
 * the main thread plus this one about 40% less CPU in 256 kB messages than in 64 kB ones.)
 */
const POST_BYTES = 256 * 1024

const port = parentPort!
let dead: unknown = null
let queue: Promise<void> = Promise.resolve()

const db = await open(workerData as ThreadInit).then(
  (created) => created,
  (error: unknown) => {
    port.postMessage({ id: 0, error: encodeThreadError(error) } satisfies ThreadReply)
    return null
  },
)
if (db) {
  port.on('message', (request: ArrayBuffer | ThreadRequest) => {
    // One at a time: PGlite's raw calls take no lock of their own.
    queue = queue.then(() => (request instanceof ArrayBuffer ? runProtocol(db, request) : serve(db, request)))
  })
  port.postMessage({ id: 0, done: true } satisfies ThreadReply)
  // The tarball and PGlite's copies of it while loading: garbage an idle thread would keep (about 60 MB).
  collectGarbageSoon()
}

/** PGlite as `init` describes it. Nothing here keeps the tarball once PGlite has loaded it (workerData is not kept). */
async function open(init: ThreadInit): Promise<PGlite> {
  const { extensions } = await loadExtensions(init.extensions)
  const tarball = init.loadDataDir
  init.loadDataDir = null
  return openPGlite({ ...init.options, ...init.wasm, ...(tarball ? { loadDataDir: new Blob([tarball]) } : {}), extensions })
}

async function runProtocol(db: PGlite, request: ArrayBuffer): Promise<void> {
  const [id = 0, flags = 0, length = 0] = readFrameHeader(request)
  const output = new OutputFrames(id)
  try {
    // After a fatal error the next call into PGlite would spin this thread forever (NOTES §4): answer without it.
    if (dead) throw dead
    const message = new Uint8Array(request, FRAME_HEADER_BYTES, length)
    await db.execProtocolRawStream(message, { onRawData: output.onRawData, syncToFs: (flags & FrameFlag.NoSyncToFs) === 0 })
    output.end()
  } catch (error) {
    if (isPGliteFatal(error)) dead ??= error
    // Output made before the failure still goes first, as it would have in the main thread.
    output.flush(0)
    port.postMessage({ id, error: encodeThreadError(error) } satisfies ThreadReply)
  }
}

/** One call's output as frames: the first chunk in a buffer of its size, later ones gathered into POST_BYTES buffers. */
class OutputFrames {
  readonly #id: number
  #buffer: Uint8Array<ArrayBuffer> | null = null
  #used = 0

  constructor(id: number) {
    this.#id = id
  }

  readonly onRawData = (chunk: Uint8Array): void => {
    const buffer = this.#buffer
    if (buffer && this.#used + chunk.length <= buffer.length - FRAME_HEADER_BYTES) {
      buffer.set(chunk, FRAME_HEADER_BYTES + this.#used)
      this.#used += chunk.length
      return
    }
    if (buffer && this.#used + chunk.length <= POST_BYTES) {
      // More than one chunk: from now on gather them.
      const gathered = allocate(FRAME_HEADER_BYTES + POST_BYTES)
      gathered.set(buffer.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + this.#used), FRAME_HEADER_BYTES)
      this.#buffer = gathered
    } else {
      if (buffer) this.flush(0)
      this.#buffer = allocate(FRAME_HEADER_BYTES + (buffer ? Math.max(POST_BYTES, chunk.length) : chunk.length))
    }
    this.#buffer.set(chunk, FRAME_HEADER_BYTES + this.#used)
    this.#used += chunk.length
  }

  /** Post what is gathered (nothing if empty, unless it ends the call). */
  flush(flags: number): void {
    const buffer = this.#buffer?.buffer ?? (flags === 0 ? null : new ArrayBuffer(FRAME_HEADER_BYTES))
    this.#buffer = null
    if (!buffer) return
    writeFrameHeader(buffer, this.#id, flags, this.#used)
    this.#used = 0
    port.postMessage(buffer, [buffer])
  }

  end(): void {
    this.flush(FrameFlag.Done)
  }
}

async function serve(db: PGlite, request: ThreadRequest): Promise<void> {
  const { id } = request
  try {
    if (dead) throw dead
    switch (request.op) {
      case 'query': {
        const { blob, ...options } = request.options ?? {}
        const { blob: written, ...results } = await db.query<Record<string, unknown>>(request.sql, request.params, blob ? { ...options, blob: new Blob([blob]) } : options)
        const bytes = written ? await written.arrayBuffer() : null
        const value: CrossingResults = bytes ? { ...results, blob: bytes } : results
        port.postMessage({ id, value, done: true } satisfies ThreadReply, bytes ? [bytes] : [])
        return
      }
      case 'exec':
        return reply(id, await db.exec(request.sql, request.options))
      case 'dumpDataDir': {
        const dump = await db.dumpDataDir(request.compression)
        const bytes = await dump.arrayBuffer()
        port.postMessage({ id, value: { bytes, name: dump instanceof File ? dump.name : null, type: dump.type }, done: true } satisfies ThreadReply, [bytes])
        return
      }
      case 'close':
        await db.close()
        return reply(id, null)
    }
  } catch (error) {
    if (isPGliteFatal(error)) dead ??= error
    port.postMessage({ id, error: encodeThreadError(error) } satisfies ThreadReply)
  }
}

function reply(id: number, value: unknown): void {
  port.postMessage({ id, value, done: true } satisfies ThreadReply)
}

/** A buffer of its own (transferable), not zero-filled: every byte posted is written first. */
function allocate(bytes: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer)
}
