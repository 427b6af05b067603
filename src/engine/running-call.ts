// What the server's thread keeps of the call a database thread runs (calls.ts), and who waits for its end.

import type { DirectReply } from '../server/session/databases.ts'

export interface Running {
  id: number
  /** When the watchdog may look at Postgres's timer again for this call (performance.now()). */
  nextCheck: number
  /** Set after a cancel: the check that the call did end. */
  stuckCheck: NodeJS.Timeout | undefined
  /** Set after a cancel: its next sending (CANCEL_AGAIN_AFTER_MS). */
  cancelAgain: NodeJS.Timeout | undefined
  /** The pump is waiting for the client to read what came through the ring (the thread may wait for room meanwhile). */
  heldByClient: boolean
  /** The reply goes straight to the client's socket (null: through the reply ring). */
  direct: DirectReply | null
  /** The thread waits for that client to read (Control.Blocked), as the watchdog last saw. */
  directBlocked: boolean
  /** Its end is wanted at once (a cancel, a client gone): no lazy wait (lazy-end.ts). */
  prompt: boolean
  /** Made when someone waits for its end (answeredEnd), with what settles it. */
  end: { seen: Promise<void>; resolve: () => void } | null
  /** A call of several clients' units (CombinedCalls). */
  units: boolean
  /** A call of units that grows, its request written: units may be added to it (calls.ts runUnits, more-units.ts). */
  takesMore: boolean
  /** Made when someone waits for the reply ring's next read (answeredEnd, in a call of units). */
  read: { seen: Promise<void>; resolve: () => void } | null
  /** In a call of units: how many units' ends the server's thread has read. */
  unitEnds: number
}

/**
 * The call waits for its client to read, written straight to it or through the ring: its end may be far off, and it
 * takes no more units meanwhile. Two flags, since the watchdog and the pump each see one of the two ways.
 */
export function waitsForClient(running: Running): boolean {
  return running.heldByClient || running.directBlocked
}

/** The call's end as the server's thread sees it (settled by calls.ts once it is over). */
export function endSeen(running: Running): Promise<void> {
  running.end ??= settledLater()
  return running.end.seen
}

/** A call just sent; the watchdog first looks at it at `nextCheck` (performance.now()). */
export function newRunning(id: number, nextCheck: number, direct: DirectReply | null, units: boolean): Running {
  return {
    id,
    nextCheck,
    stuckCheck: undefined,
    cancelAgain: undefined,
    heldByClient: false,
    direct,
    directBlocked: false,
    prompt: units,
    end: null,
    units,
    takesMore: false,
    read: null,
    unitEnds: 0,
  }
}

/** The reply ring was read (or the call is over): whoever waited for that goes on. */
export function readDone(running: Running): void {
  running.read?.resolve()
  running.read = null
}

/** The next read of the call's reply ring, once done (readDone). */
export function readSeen(running: Running): Promise<void> {
  running.read ??= settledLater()
  return running.read.seen
}

function settledLater(): { seen: Promise<void>; resolve: () => void } {
  let resolve!: () => void
  const seen = new Promise<void>((settle) => (resolve = settle))
  return { seen, resolve }
}
