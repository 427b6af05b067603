// What crosses between thread.ts and its worker besides protocol calls (those go through rings, ring.ts): the start,
// the other requests and their replies, and errors flattened so that the server's thread can rebuild the same kind of
// error PGlite threw (a DatabaseError with its fields, an ExitStatus that means "dead").

import { messages, type PGliteOptions, type QueryOptions, type Results } from '@electric-sql/pglite'
import type { EngineImage } from './image.ts'

/** The PGlite options that can cross to a thread (functions, modules and file systems cannot). */
export type ThreadPGliteOptions = Pick<
  PGliteOptions,
  'dataDir' | 'startParams' | 'initialMemory' | 'relaxedDurability' | 'username' | 'database' | 'debug'
>

/** Query options without the per-call parsers and serializers, which are functions. */
export type ThreadQueryOptions = Omit<QueryOptions, 'parsers' | 'serializers' | 'onNotice'>

/** exec() takes no blob here. */
export type ThreadExecOptions = Omit<ThreadQueryOptions, 'blob'>

/** Query options as they cross: a Blob for /dev/blob (COPY FROM) goes as its bytes. */
export type CrossingQueryOptions = Omit<ThreadQueryOptions, 'blob'> & { blob?: ArrayBuffer }

/** A query's Results as they cross back: what COPY TO '/dev/blob' wrote goes as its bytes. */
export type CrossingResults = Omit<Results, 'blob'> & { blob?: ArrayBuffer }

export interface ThreadInit {
  options: ThreadPGliteOptions
  /** PGlite's WASM, compiled once in the main thread: V8 shares the compiled code with every thread it is sent to. */
  wasm: Pick<PGliteOptions, 'pgliteWasmModule' | 'initdbWasmModule'>
  /** PGlite's bundle of files (pglite.data), read once in the main thread: every thread's copies of them are views of it. */
  fsBundle: SharedArrayBuffer
  /** A data dir tarball (PGlite's `loadDataDir`), transferred. */
  loadDataDir: ArrayBuffer | null
  /**
   * Start from this booted instance's image instead of booting (image.ts); or 'take': once started, reply with the
   * image of the new instance (the value of the start reply).
   */
  image?: EngineImage | 'take'
  /** Extensions to load, by the names `--extensions` takes (their bundles are imported in the thread). */
  extensions: readonly string[]
  /** Protocol calls cross in these rings (ring.ts): requests to the thread, replies back. */
  rings: { requests: SharedArrayBuffer; replies: SharedArrayBuffer }
  /** The running call and Postgres's armed timer (stoppable.ts). */
  control: SharedArrayBuffer
}

/** The other calls: few, and not on the per-query path. */
export type ThreadRequest =
  | { op: 'query'; id: number; sql: string; params?: unknown[]; options?: CrossingQueryOptions }
  | { op: 'exec'; id: number; sql: string; options?: ThreadExecOptions }
  | { op: 'dumpDataDir'; id: number; compression?: 'auto' | 'gzip' | 'none' }
  | { op: 'close'; id: number }

/**
 * The end of a call that is not a frame: its value, or its error (for a protocol call too, after the output it
 * made). Id 0 is start-up: `done` once PGlite is ready, or the error that kept it from opening.
 */
export interface ThreadReply {
  id: number
  done?: true
  value?: unknown
  error?: ThreadError
}

export interface ThreadError {
  /** A Postgres error (PGlite's DatabaseError, whose `name` is the protocol message name 'error'), or anything else. */
  isDatabaseError: boolean
  name: string
  message: string
  stack: string | undefined
  /** The error's own fields with plain values: a DatabaseError's code, severity, detail...; an ExitStatus's status. */
  fields: Record<string, string | number | boolean | null>
}

export function encodeThreadError(error: unknown): ThreadError {
  if (typeof error !== 'object' || error === null)
    return { isDatabaseError: false, name: 'Error', message: String(error), stack: undefined, fields: {} }
  const { name, message, stack } = error as { name?: unknown; message?: unknown; stack?: unknown }
  const fields: ThreadError['fields'] = {}
  for (const [key, value] of Object.entries(error)) {
    if (key === 'name' || key === 'message' || key === 'stack') continue
    if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      fields[key] = value
  }
  return {
    isDatabaseError: error instanceof messages.DatabaseError,
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : String(error),
    stack: typeof stack === 'string' ? stack : undefined,
    fields,
  }
}

/**
 * The error as the main thread would have seen it from an in-process PGlite: a Postgres error is PGlite's
 * DatabaseError (instanceof works, `code` and the other fields are there); anything else keeps its name, so
 * `isPGliteFatal` still recognises an ExitStatus or a RuntimeError. The stack is the worker's, where it happened.
 */
export function decodeThreadError(encoded: ThreadError): Error {
  const error = encoded.isDatabaseError
    ? new messages.DatabaseError(encoded.message, Number(encoded.fields.length ?? 0), 'error')
    : new Error(encoded.message)
  Object.assign(error, encoded.fields, { name: encoded.name })
  if (encoded.stack !== undefined) error.stack = `${encoded.stack}\n    at <the database thread>`
  return error
}
