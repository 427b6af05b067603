// What the server's thread keeps of the call a database thread runs (calls.ts), and who waits for its end.

import type { DirectReply } from '../../socket/session/databases.ts'

export interface Running {
  id: number
  /** When the watchdog may look at Postgres's timer again for this call (performance.now()). */
  nextCheck: number
  /** Set after a cancel: the check that the call did end. */
  stuckCheck: NodeJS.Timeout | undefined
  /** Set after a cancel: its next sending (CANCEL_AGAIN_AFTER_MS). */
  cancelAgain: NodeJS.Timeout | undefined
  /** The pump is waiting for the client to read (the thread may be waiting for room, the statement paused). */
  heldByClient: boolean
  /** The reply goes straight to the client's socket (null: through the reply ring). */
  direct: DirectReply | null
  /** The thread waits for that client to read (Control.Blocked), as the watchdog last saw. */
  directBlocked: boolean
  /** Its end is wanted at once (a cancel, a client gone): no lazy wait (lazy-end.ts). */
  prompt: boolean
  /** Made when someone waits for its end (answeredEnd), with what settles it. */
  end: { seen: Promise<void>; resolve: () => void } | null
}

/** The call's end as the server's thread sees it (settled by calls.ts once it is over). */
export function endSeen(running: Running): Promise<void> {
  if (running.end === null) {
    let resolve!: () => void
    const seen = new Promise<void>((settle) => (resolve = settle))
    running.end = { seen, resolve }
  }
  return running.end.seen
}
