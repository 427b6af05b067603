// The worker side of thread.ts: one PGlite in this thread. Protocol calls arrive through a ring, run one at a time in
// arrival order, and their output goes back through another as it is produced, waiting while the server's thread has
// not read it (backpressure). The other requests (query, exec, dump, close) come as messages, between calls.

import { parentPort, workerData } from 'node:worker_threads'
import type { PGlite } from '@electric-sql/pglite'
import { encodeThreadError, type CrossingResults, type ThreadInit, type ThreadReply, type ThreadRequest } from './thread-messages.ts'
import { loadExtensions } from './extensions.ts'
import { isPGliteFatal } from '../errors.ts'
import { TarballBlob, openPGlite, sharedBundleBlob } from './pglite.ts'
import { collectGarbageSoon, collectWhenIdle, noteBusy } from './collect-garbage.ts'
import { OutputWatch, type Framing } from './output-watch.ts'
import { ByteRing, FrameEnd, decodeUnits, type DecodedUnit } from './ring.ts'
import { MoreUnits, unitAnswered, unitEndWanted } from './more-units.ts'
import { RELAY_CODES, framingAt, isAbandoned, writeToClient } from './direct-reply.ts'
import { Control, controlViews, exposeStopping, interceptTimers, type CallHooks } from './stoppable.ts'
import type { EngineImage } from './image.ts'
import { needsSyncToFs } from '../server/session/databases.ts'
import { takeImage, watchInstances } from './take-image.ts'
import { ImageFS, ImageNodeFS, copyBundleFilesOnWrite } from './start-from-image.ts'

/** Wake the server's thread after this many bytes of output, and at the end of each call. */
const WAKE_EVERY_BYTES = 32 * 1024
/**
 * After a call that left a transaction block open, the thread looks this long (ms) for the next call before it sleeps:
 * only that client's next statement can run, and it is usually one round trip away (pgbench's TPC-B, an ORM's
 * transaction), so a sleep would add a wake-up to each statement of the block. After other calls it sleeps at once:
 * spinning there was measured to cost more than the wake-up, and again with one client under load.
 */
const IN_TRANSACTION_LINGER_MS = 0.5
/** Waiting for a call, the thread turns its event loop this often (for messages, and timers of its own). */
const IDLE_SLICE_MS = 50

const port = parentPort!
/** The payload of a Units frame: whether the unit ran, or was skipped (stopped before it began). */
const UNIT_RAN = new Uint8Array([0])
const UNIT_SKIPPED = new Uint8Array([1])
const init = workerData as ThreadInit
const requests = new ByteRing(init.rings.requests)
const replies = new ByteRing(init.rings.replies)
const { words } = controlViews(init.control)
const moreUnits = new MoreUnits(requests, words)
let dead: unknown = null
let closing = false
let ops: Promise<void> = Promise.resolve()

/**
 * PGlite as `init` describes it: from a tarball, a data dir, or a booted instance's image. Nothing here keeps the
 * tarball once PGlite has loaded it (workerData is not kept).
 */
async function open(options: ThreadInit): Promise<PGlite> {
  const { extensions } = await loadExtensions(options.extensions)
  const tarball = options.loadDataDir
  options.loadDataDir = null
  const image = typeof options.image === 'object' ? options.image : null
  const dataDir = options.options.dataDir
  const setTimer = (deadline: number): void => {
    controlViews(options.control).deadline[0] = deadline
  }
  const fs = image && (dataDir ? new ImageNodeFS(dataDir, image, instances, setTimer) : new ImageFS(image, instances, setTimer))
  const from = fs ? { fs, initialMemory: image!.memoryBytes } : tarball ? { loadDataDir: new TarballBlob(tarball) } : {}
  const db = await openPGlite({ ...options.options, ...options.wasm, fsBundle: sharedBundleBlob(options.fsBundle), ...from, extensions })
  if (!copyBundleFilesOnWrite(db, options.fsBundle)) process.emitWarning('pglite-dev-db: PGlite\'s file system is out of reach: a write to its bundled files would reach every database')
  return db
}

/** Calls from the request ring, one at a time, until the database closes. */
async function serveCalls(pglite: PGlite, stopping: CallHooks): Promise<void> {
  const parts: Buffer[] = []
  const output = new Output(pglite)
  let directFd = -1
  let relayFrom = 0
  while (!closing) {
    let call: Call | null = null
    let turn = false
    requests.read((id, flags, payload) => {
      if (flags & FrameEnd.Turn) {
        turn = true
        return
      }
      if (flags & FrameEnd.Direct) {
        directFd = payload.readUInt32LE(0)
        relayFrom = payload.readUInt32LE(4)
        return
      }
      parts.push(payload)
      if ((flags & FrameEnd.Last) === 0) return
      call = { id, bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts), isUnits: (flags & FrameEnd.Units) !== 0, directFd, relayFrom }
      parts.length = 0
      directFd = -1
      return false
    })
    if (call) {
      const inTransaction = await runCall(pglite, stopping, call, output)
      noteBusy()
      if (inTransaction) requests.spin(performance.now() + IN_TRANSACTION_LINGER_MS)
    } else if (turn || moreUnits.takeTurn() || !requests.sleep(IDLE_SLICE_MS)) {
      // A message waits (it comes with a Turn), or nothing happened for a while: let the event loop run (its timers
      // too: the collection once idle).
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
}

interface Call {
  id: number
  bytes: Buffer
  /** Several clients' units (ring.ts encodeUnits), run one after another (runUnits). */
  isUnits: boolean
  /** The client's socket, when the reply goes straight there (direct-reply.ts); else -1. */
  directFd: number
  /** RelayFrom bits: the messages from which on the reply goes through the ring after all. */
  relayFrom: number
}

/** Runs the call; true if it left a transaction block open. */
async function runCall(pglite: PGlite, stopping: CallHooks, { id, bytes, isUnits, directFd, relayFrom }: Call, output: Output): Promise<boolean> {
  output.begin(id, isUnits ? -1 : directFd, relayFrom)
  stopping.beforeCall(id)
  if (isUnits) moreUnits.begin()
  let failure: unknown = null
  try {
    // After a fatal error the next call into PGlite would spin this thread forever: answer without it.
    if (dead) throw dead
    if (isUnits) await runUnits(pglite, stopping, id, decodeUnits(bytes), output)
    else await pglite.execProtocolRawStream(bytes, output.options)
    if (output.sync) await pglite.syncToFs()
  } catch (error) {
    failure = error
  } finally {
    // Units added and not run (the call ended early, or failed) go back to their clients, as the rest of the call's.
    if (isUnits) failure ??= moreUnits.close(id)
    stopping.afterCall(id)
  }
  if (output.watch.fatal && !failure) {
    // PGlite answered FATAL or PANIC and carries on as if it could: its backend has ended.
    failure = Object.assign(new Error(`the database's backend ended: ${output.watch.fatal}`), { name: 'ExitStatus' })
  }
  if (failure !== null && isPGliteFatal(failure)) dead ??= failure
  const inTransaction = output.watch.leftInTransaction
  output.end(failure, inTransaction)
  return inTransaction
}

/**
 * Several clients' units (each a Query, or extended-protocol messages ending in Sync), each a call into PGlite of its
 * own, in one call from the server's thread: the crossing between threads is paid once for all. After each, an empty
 * Units frame tells the server's thread where its output ends. A unit that leaves the session other than it found it
 * (a transaction or pipeline open, a SET or LISTEN...) ends the call: the units after it are not run (the server runs
 * them as ordinary calls), so no unit ever runs in another client's transaction or settings.
 */
async function runUnits(pglite: PGlite, stopping: CallHooks, id: number, units: DecodedUnit[], output: Output): Promise<void> {
  const { watch } = output
  // Having run every unit it has, the call takes those the server added meanwhile (more-units.ts), or ends.
  for (let unit = 0; unit < units.length || moreUnits.next(id, units); unit++) {
    const { unit: bytes, fd, relayFrom } = units[unit]!
    watch.startUnit()
    output.beginUnit(unit, fd, relayFrom)
    let run: boolean
    try {
      // A unit stopped before it began (its client canceled it, or it waited too long) is not run: the server answers.
      run = stopping.beforeUnit(id, unit)
      if (run) await pglite.execProtocolRawStream(bytes, output.options)
    } finally {
      stopping.afterUnit(id)
    }
    output.unitEnd(run)
    if (!watch.leftAtRest) return
  }
}

/**
 * One call's output (one object, used again for each call): straight to the client's socket when the call says so,
 * up to the first message the server must rewrite; otherwise, and from there on, into the reply ring, every chunk
 * copied in as it comes, waiting for room when the ring is full.
 */
class Output {
  readonly watch = new OutputWatch()
  #id = 0
  /** In a call of units, the unit running (-1: a call of one). */
  #unit = -1
  readonly #mod: { _pq_buffer_remaining_data(): number }
  #unannounced = 0
  /** The client's socket while the reply goes straight there; -1 once (or if) it goes through the ring. */
  #fd = -1
  #relayCodes: ReadonlySet<number> | null = null
  /** The client's socket refused the reply, or the server gave up on it: the rest goes nowhere. */
  #gone = false
  /** Output of this call went through the ring: its end must wake the server's thread to pass it on. */
  #relayed = false
  /** The client's socket stopped taking the reply: the rest goes through the ring unread (FrameEnd.Raw). */
  #raw = false
  /** Where the stream stood in its messages before the chunk being written (for framingAt). */
  readonly #before: Framing = { remaining: 0, headerFill: 0, header: Buffer.alloc(5) }

  /** PGlite's file system needs a sync after each call (needsSyncToFs): then after the call, not after each unit. */
  readonly sync: boolean
  /** What each unit is run with: output here, the sync left to the call. */
  readonly options: { onRawData: (chunk: Uint8Array) => void; syncToFs: false }

  constructor(pglite: PGlite) {
    this.#mod = (pglite as unknown as { mod: { _pq_buffer_remaining_data(): number } }).mod
    this.sync = needsSyncToFs(pglite)
    this.options = { onRawData: this.onRawData, syncToFs: false }
  }

  begin(id: number, fd: number, relayFrom: number): void {
    this.#id = id
    this.#unit = -1
    this.#unannounced = 0
    this.#relayed = false
    this.#direct(fd, relayFrom)
    this.watch.startCall()
  }

  /** A unit of a call of units begins; its reply goes where its client's does. */
  beginUnit(unit: number, fd: number, relayFrom: number): void {
    this.#unit = unit
    this.#direct(fd, relayFrom)
  }

  #direct(fd: number, relayFrom: number): void {
    this.#fd = fd
    this.#relayCodes = RELAY_CODES[relayFrom & 7] ?? null
    this.#gone = false
    this.#raw = false
  }

  readonly onRawData = (chunk: Uint8Array): void => {
    if (this.#fd >= 0) {
      if (!this.#raw) this.watch.framingInto(this.#before)
      const stop = this.watch.feed(chunk, this.#relayCodes)
      const direct = stop < 0 ? chunk : chunk.subarray(0, stop)
      // Postgres reports a backend idle before it sends ReadyForQuery: what the server shows of the client may wait.
      if (stop < 0 && this.watch.atReadyForQuery && this.#mod._pq_buffer_remaining_data() === 0) {
        Atomics.store(words, Control.Answered, this.#id)
        unitAnswered(words, this.#unit)
      }
      if (!this.#gone && direct.length > 0) this.#toClient(direct)
      if (stop < 0 || this.#gone) {
        if (stop >= 0) this.watch.feed(chunk.subarray(stop))
        return
      }
      // A message the server rewrites: it and the rest go through the ring, after what the part written said.
      this.#fd = -1
      this.#write(FrameEnd.Direct, this.watch.summary())
      chunk = chunk.subarray(stop)
    }
    this.watch.feed(chunk)
    this.#relayed = true
    this.#write(0, chunk)
    this.#unannounced += chunk.length
    // A unit answered while Postgres holds more of the call's messages (a pipeline of several): its client gets the
    // answer now, as Postgres sends it at ReadyForQuery (postgres.js may cancel the next query it piped).
    if (this.#unannounced >= WAKE_EVERY_BYTES || (this.watch.atReadyForQuery && this.#mod._pq_buffer_remaining_data() > 0)) {
      this.#unannounced = 0
      replies.wakeForOutput()
    }
  }

  /** Bytes of a reply that goes straight to the client: to its socket, or, once that stopped taking them, the ring. */
  #toClient(bytes: Uint8Array): void {
    if (this.#raw) {
      if (isAbandoned(words, this.#id, this.#unit)) this.#gone = true
      else this.#writeRaw(bytes)
      return
    }
    const written = writeToClient(words, this.#id, this.#unit, this.#fd, bytes)
    if (written < 0) this.#gone = true
    else if (written < bytes.length) {
      // The client stopped reading: the server's thread takes the rest, and keeps it for the client meanwhile. What the
      // reply said so far goes first (a ReadyForQuery saying a block is open makes the server wait for the client).
      this.#raw = true
      this.#write(FrameEnd.Direct, this.watch.summary())
      this.#write(FrameEnd.Raw | FrameEnd.Direct, framingAt(this.#before, bytes, written))
      this.#writeRaw(bytes.subarray(written))
    }
  }

  #writeRaw(bytes: Uint8Array): void {
    // Every frame says Raw (#write marks only a payload's last).
    const max = replies.maxPayload
    this.#relayed = true
    for (let at = 0; at < bytes.length; at += max) this.#write(FrameEnd.Raw, bytes.subarray(at, at + max))
    this.#unannounced += bytes.length
    if (this.#unannounced >= WAKE_EVERY_BYTES) {
      this.#unannounced = 0
      replies.wakeForOutput()
    }
  }

  /**
   * One unit of a call of units ended (runUnits). Unless the client has its reply already (written straight to it),
   * the server's thread is woken if it sleeps, to send the reply while the next unit runs.
   */
  unitEnd(ran: boolean): void {
    const direct = this.#fd >= 0
    if (direct) this.#write(FrameEnd.Direct, this.watch.summary())
    this.#write(FrameEnd.Units, ran ? UNIT_RAN : UNIT_SKIPPED)
    this.#fd = -1
    // The server's thread asked for this end (a client it answered may have sent its next unit already).
    const wanted = unitEndWanted(words)
    if (direct && !wanted) return
    this.#unannounced = 0
    replies.wakeForOutput()
  }

  /**
   * The last frame: empty, or the error the call failed with; it says whether a transaction block is left open. A
   * reply written straight to the client is summed up before it (what the server would have read there).
   */
  end(failure: unknown, inTransaction: boolean): void {
    if (this.#fd >= 0) this.#write(FrameEnd.Direct, this.watch.summary())
    const payload = failure === null ? new Uint8Array(0) : Buffer.from(JSON.stringify(encodeThreadError(failure)))
    this.#write(FrameEnd.Last | (failure === null ? 0 : FrameEnd.Error) | (inTransaction ? FrameEnd.InTransaction : 0), payload)
    // The end of a reply written straight to its client need not wake a server's thread that waits lazily for it,
    // unless the call failed (its client is owed the error).
    if (this.#relayed || failure !== null) replies.wakeForOutput()
    else replies.wake()
  }

  #write(flags: number, bytes: Uint8Array): void {
    const max = replies.maxPayload
    let offset = 0
    do {
      const piece = bytes.subarray(offset, Math.min(bytes.length, offset + max))
      const isLast = offset + piece.length === bytes.length
      while (!replies.tryWrite(this.#id, isLast ? flags : 0, piece)) {
        // Full: the server's thread has not read yet (its client is not reading, or it is busy). Wait for room.
        const tail = replies.tail
        replies.wakeForOutput()
        replies.waitForRoom(tail, 1000)
      }
      offset += piece.length
    } while (offset < bytes.length)
  }
}

async function serve(pglite: PGlite, request: ThreadRequest): Promise<void> {
  const { id } = request
  try {
    // A dead PGlite's files can still be saved (its Postgres is gone, not its file system): the rescue of an in-memory
    // database. Nothing else runs on it.
    if (dead && request.op !== 'dumpDataDir') throw dead
    switch (request.op) {
      case 'query': {
        const { blob, ...options } = request.options ?? {}
        const { blob: written, ...results } = await pglite.query<Record<string, unknown>>(request.sql, request.params, blob ? { ...options, blob: new Blob([blob]) } : options)
        const bytes = written ? await written.arrayBuffer() : null
        const value: CrossingResults = bytes ? { ...results, blob: bytes } : results
        port.postMessage({ id, value, done: true } satisfies ThreadReply, bytes ? [bytes] : [])
        return
      }
      case 'exec':
        return reply(id, await pglite.exec(request.sql, request.options))
      case 'dumpDataDir': {
        const dump = await pglite.dumpDataDir(request.compression)
        const bytes = await dump.arrayBuffer()
        port.postMessage({ id, value: { bytes, name: dump instanceof File ? dump.name : null, type: dump.type }, done: true } satisfies ThreadReply, [bytes])
        return
      }
      case 'close':
        closing = true
        await pglite.close()
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

// --- Start: after every declaration above (classes are not hoisted) ---

const wasm = interceptTimers(init.control)
const instances = watchInstances()
const db = await open(init).then(
  (created) => created,
  (error: unknown) => {
    port.postMessage({ id: 0, error: encodeThreadError(error) } satisfies ThreadReply)
    return null
  },
)
if (db) {
  const stopping = exposeStopping(db, wasm, init.control)
  port.on('message', (request: ThreadRequest) => {
    ops = ops.then(() => serve(db, request))
  })
  // Asked for, the new instance's image (before anything runs on it); not every start can be imaged (take-image.ts).
  let started: { image: EngineImage } | { imageError: string } | null = null
  if (init.image === 'take') {
    try {
      started = { image: takeImage(db, instances, controlViews(init.control).deadline[0]!) }
    } catch (error) {
      started = { imageError: (error as Error).message }
    }
  }
  init.image = undefined
  port.postMessage({ id: 0, done: true, value: started } satisfies ThreadReply)
  // The tarball and PGlite's copies of it while loading: garbage an idle thread would keep (about 60 MB). After calls,
  // what they left: a thread that waits for calls allocates nothing, so V8 would keep it.
  collectGarbageSoon()
  collectWhenIdle()
  await serveCalls(db, stopping)
}
