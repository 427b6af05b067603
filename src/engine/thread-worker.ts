// The worker side of thread.ts: one PGlite in this thread. Protocol calls arrive through a ring, run one at a time in
// arrival order, and their output goes back through another as it is produced, waiting while the server's thread has
// not read it (backpressure). The other requests (query, exec, dump, close) come as messages, between calls.

import { parentPort, workerData } from 'node:worker_threads'
import type { PGlite } from '@electric-sql/pglite'
import {
  encodeThreadError,
  type CrossingResults,
  type ThreadInit,
  type ThreadReply,
  type ThreadRequest,
} from './thread-messages.ts'
import { loadExtensions } from './extensions.ts'
import { isPGliteFatal } from '../errors.ts'
import { TarballBlob, openPGlite, sharedBundleBlob } from './pglite.ts'
import { collectGarbageSoon, collectWhenIdle, noteBusy } from './collect-garbage.ts'
import { ByteRing, FrameEnd, decodeUnits, type DecodedUnit } from './ring.ts'
import { MoreUnits } from './more-units.ts'
import { lendOf, serveLend, type LendEnd, type ThreadLend } from './lent-reads.ts'
import { Control, controlViews, exposeStopping, interceptTimers, type CallHooks } from './stoppable.ts'
import type { EngineImage } from './image.ts'
import { takeImage, watchInstances } from './take-image.ts'
import { capStackDepth } from './stack-depth.ts'
import { CallOutput } from './thread-output.ts'
import { ReportedSettings } from '../server/protocol/repeated-reports.ts'
import { ImageFS, ImageNodeFS, copyBundleFilesOnWrite } from './start-from-image.ts'

/**
 * After a call that left a transaction block open, the thread looks this long (ms) for the next call before it sleeps:
 * only that client's next statement can run, and it is usually one round trip away (pgbench's TPC-B, an ORM's
 * transaction), so a sleep would add a wake-up to each statement of the block. It sleeps at once after other calls,
 * and while other databases work too (Control.Alone, test workers' databases): spinning there was measured to cost
 * more than the wake-up, since it takes a core that a client or another database's thread wants.
 */
const IN_TRANSACTION_LINGER_MS = 0.5
/**
 * Woken with no call to read (thread.ts `prewake`: a lone client's bytes arrived, and the server's thread is making
 * them a call), the thread looks this long (ms) for the call before it sleeps again.
 */
const PREWAKE_LOOK_MS = 0.2
/** Waiting for a call, the thread turns its event loop this often (for messages, and timers of its own). */
const IDLE_SLICE_MS = 50

const port = parentPort!
const init = workerData as ThreadInit
const requests = new ByteRing(init.rings.requests)
const replies = new ByteRing(init.rings.replies)
const { words } = controlViews(init.control)
const moreUnits = new MoreUnits(requests, words)
let dead: unknown = null
let closing = false
/** What the start left is not collected yet (serveCalls). */
let startGarbage = true
let ops: Promise<void> = Promise.resolve()
/** What this thread's PGlite reported last (repeated-reports.ts). */
const reported = new ReportedSettings()

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
  const fs =
    image && (dataDir ? new ImageNodeFS(dataDir, image, instances, setTimer) : new ImageFS(image, instances, setTimer))
  const from = fs ? { fs, initialMemory: image!.memoryBytes } : tarball ? { loadDataDir: new TarballBlob(tarball) } : {}
  const db = await openPGlite({
    ...options.options,
    ...options.wasm,
    fsBundle: sharedBundleBlob(options.fsBundle),
    ...from,
    extensions,
  })
  if (!copyBundleFilesOnWrite(db, options.fsBundle))
    process.emitWarning(
      "pglite-dev-db: PGlite's file system is out of reach: a write to its bundled files would reach every database",
    )
  return db
}

/** Calls from the request ring, one at a time, until the database closes. */
async function serveCalls(pglite: PGlite, stopping: CallHooks): Promise<void> {
  const parts: Buffer[] = []
  const output = new CallOutput(pglite, replies, words, reported)
  let directFd = -1
  let clientReply = false
  let relayFrom = 0
  let lend: ThreadLend | null = null
  while (!closing) {
    let call: Call | null = null
    let turn = false
    requests.read((id, flags, payload) => {
      if (flags & FrameEnd.Turn) {
        turn = true
        return
      }
      if (flags & FrameEnd.Direct) {
        directFd = payload.readInt32LE(0)
        clientReply = true
        relayFrom = payload.readUInt32LE(4)
        lend = lendOf(payload)
        return
      }
      parts.push(payload)
      if ((flags & FrameEnd.Last) === 0) return
      call = {
        id,
        bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts),
        isUnits: (flags & FrameEnd.Units) !== 0,
        directFd,
        relayFrom,
        lend,
        clientReply,
      }
      parts.length = 0
      directFd = -1
      clientReply = false
      lend = null
      return false
    })
    if (call) {
      const inTransaction = await runCall(pglite, stopping, call, output)
      noteBusy()
      if (inTransaction && Atomics.load(words, Control.Alone) === 1)
        requests.spin(performance.now() + IN_TRANSACTION_LINGER_MS)
    } else {
      const message = turn || moreUnits.takeTurn()
      const slept = message ? null : sleepForCall()
      if (slept === 'frames') continue
      // What the start left is collected the first time no call came for a while: not before the first call, which
      // a client that asked for this new database waits for, nor just after a wake-up ahead of a call.
      if (slept === 'idle' && startGarbage) {
        startGarbage = false
        collectGarbageSoon()
      }
      // A message waits (it comes with a Turn), or no call came: let the event loop run (its timers too: the
      // collection once idle).
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
}

/** Sleep until a call's frames come ('frames'), a wake-up without one ('woken') or a while without anything ('idle'). */
function sleepForCall(): 'frames' | 'woken' | 'idle' {
  const woke = requests.sleep(IDLE_SLICE_MS)
  return woke === 'woken' && requests.spin(performance.now() + PREWAKE_LOOK_MS) ? 'frames' : woke
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
  /** The client's socket is lent to this thread after the call (lent-reads.ts). */
  lend: ThreadLend | null
  /** The reply is a client's, wherever it goes (CallOutput leaves PGlite's repeated reports out of it). */
  clientReply: boolean
}

/** Runs the call; true if it left a transaction block open. */
async function runCall(
  pglite: PGlite,
  stopping: CallHooks,
  { id, bytes, isUnits, directFd, relayFrom, lend, clientReply }: Call,
  output: CallOutput,
): Promise<boolean> {
  output.begin(id, isUnits ? -1 : directFd, relayFrom, clientReply)
  stopping.beforeCall(id)
  if (isUnits) moreUnits.begin()
  let failure: unknown = null
  // What the thread read from a lent socket: what it ran, what it did not (lent-reads.ts), told the server at the end.
  let lendEnd: LendEnd | null = null
  let unitIndex = 0
  try {
    // After a fatal error the next call into PGlite would spin this thread forever: answer without it.
    if (dead) throw dead
    if (isUnits) await runUnits(pglite, stopping, id, decodeUnits(bytes), output)
    else await pglite.execProtocolRawStream(bytes, output.options)
    if (output.sync) await pglite.syncToFs()
    if (lend && output.writesStraight && output.watch.leftQuiet && !dead) {
      // From here the call's units are numbered, and between two of them nothing cancels or fires (stoppable.ts).
      stopping.beforeUnit(id, 0)
      stopping.afterUnit(id)
      lendEnd = { unread: null, lastUnit: null, units: 0, unnamed: null }
      await serveLend(
        { fd: directFd, ...lend },
        words,
        () => requests.hasFrames,
        () => output.watch.leftInTransaction,
        async (unit) => {
          output.beginUnit(-1, directFd, relayFrom)
          output.watch.startUnit()
          stopping.beforeUnit(id, ++unitIndex)
          try {
            await pglite.execProtocolRawStream(unit, output.options)
            if (output.sync) await pglite.syncToFs()
          } finally {
            stopping.afterUnit(id)
          }
          return output.writesStraight && output.watch.leftQuiet
        },
        lendEnd,
      )
    }
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
  output.end(failure, inTransaction, lend !== null, lendEnd)
  return inTransaction
}

/**
 * Several clients' units (each a Query, or extended-protocol messages ending in Sync), each a call into PGlite of its
 * own, in one call from the server's thread: the crossing between threads is paid once for all. After each, an empty
 * Units frame tells the server's thread where its output ends. A unit that leaves the session other than it found it
 * (a transaction or pipeline open, a SET or LISTEN...) ends the call: the units after it are not run (the server runs
 * them as ordinary calls), so no unit ever runs in another client's transaction or settings.
 */
async function runUnits(
  pglite: PGlite,
  stopping: CallHooks,
  id: number,
  units: DecodedUnit[],
  output: CallOutput,
): Promise<void> {
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

async function serve(pglite: PGlite, request: ThreadRequest): Promise<void> {
  const { id } = request
  try {
    // A dead PGlite's files can still be saved (its Postgres is gone, not its file system): the rescue of an in-memory
    // database. Nothing else runs on it.
    if (dead && request.op !== 'dumpDataDir') throw dead
    switch (request.op) {
      case 'query': {
        const { blob, ...options } = request.options ?? {}
        const { blob: written, ...results } = await pglite.query<Record<string, unknown>>(
          request.sql,
          request.params,
          blob ? { ...options, blob: new Blob([blob]) } : options,
        )
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
        port.postMessage(
          {
            id,
            value: { bytes, name: dump instanceof File ? dump.name : null, type: dump.type },
            done: true,
          } satisfies ThreadReply,
          [bytes],
        )
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
  } finally {
    // PGlite's own query API reads the output itself: what it reported there went unseen.
    if (request.op === 'query' || request.op === 'exec') reported.forget()
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
  // Before an image is taken of it: a database started from the image has the cap already. Without the cap (another
  // PGlite's layout or exports) the database serves as before, and the server warns (databases/main-database.ts).
  try {
    capStackDepth(db)
  } catch {
    // Reported as above: max_stack_depth's range then reads uncapped.
  }
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
  // The tarball and PGlite's copies of it while loading: garbage an idle thread would keep (about 60 MB), collected
  // once the thread first waits for a call (serveCalls). After calls, what they left: a thread that waits for calls
  // allocates nothing, so V8 would keep it.
  collectWhenIdle()
  await serveCalls(db, stopping)
}
