// A database given to the server as a promise: its session stands in for it until it resolves, so that clients can
// connect (and wait in their start-up) while it opens.

import type { PGlite } from '@electric-sql/pglite'
import { sessionFor, type SharedSession } from './session.ts'
import type { SessionDb } from './databases.ts'

/**
 * A database given as a promise stands in its session until it resolves: nothing runs there before (clients wait
 * in their start-up), and then the session is the database's. One per promise, so servers given it share it.
 */
const pendingSessions = new WeakMap<Promise<PGlite | SessionDb>, { session: SharedSession; opened: Promise<void> }>()

function pending(promise: Promise<PGlite | SessionDb>): { session: SharedSession; opened: Promise<void> } {
  let entry = pendingSessions.get(promise)
  if (!entry) {
    const session = sessionFor(new NotOpenYet())
    entry = { session, opened: promise.then((db) => session.replaceDb(db)) }
    pendingSessions.set(promise, entry)
  }
  return entry
}

export function sessionOfPending(promise: Promise<PGlite | SessionDb>): SharedSession {
  return pending(promise).session
}

export function openedSession(promise: Promise<PGlite | SessionDb>): Promise<void> {
  return pending(promise).opened
}

/** The database of a session whose database is still opening. Never called: no client is let in before it opens. */
class NotOpenYet implements SessionDb {
  readonly waitReady = new Promise<void>(() => {})
  runExclusive(): Promise<never> {
    return Promise.reject(new Error('the database is not open yet'))
  }
  execProtocolRaw(): Promise<never> {
    return this.runExclusive()
  }
  execProtocolRawStream(): Promise<never> {
    return this.runExclusive()
  }
}
