// startDevDb's options: what each means, its default (one table, with the server's own from server/options.ts),
// and the one validation that both startDevDb and the command's flags go through.

import { DevServerError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { SERVER_DEFAULTS } from '../server/options.ts'
import { MAX_TIMER_MS } from '../server/connection/connection-state.ts'
import { resolveExtensionNames } from '../engine/extensions.ts'
import { DEFAULT_PROGRESS_AFTER_MS } from './progress.ts'

/** The database clients reach when they name none (the URL's), and which cannot be dropped. */
export const MAIN_DATABASE = 'postgres'

export interface DevDbOptions {
  /** Address to listen on. Default 127.0.0.1. */
  host?: string
  /** Port to listen on. Default 0: a free port, read it back from `port` or `url`. */
  port?: number
  /** Keep the database in this directory between runs. Default: in memory, gone on close. */
  dataDir?: string
  /**
   * A drizzle-kit migrations folder, applied before clients are admitted; false applies none. Default: where
   * drizzle-kit puts them, as the command looks: the `out` of a drizzle.config.* in the working directory, else
   * ./drizzle, else ./migrations, the first that exists (none found: an empty database).
   */
  migrations?: string | false
  /** Clients past this many get FATAL 53300. Default 1000. */
  maxConnections?: number
  /** Default 60000; 0 disables. See PGLiteSocketServerOptions. */
  idleInTransactionTimeoutMs?: number
  /** Default 0 (never). */
  idleTimeoutMs?: number
  /** Default 120000; 0 waits without limit. See PGLiteSocketServerOptions. */
  queueTimeoutMs?: number
  /** Default 5000; 0 waits up to queueTimeoutMs. See PGLiteSocketServerOptions. */
  idleTransactionWaitMs?: number
  /** Every client must give this password (SCRAM-SHA-256, as Postgres checks it). Default: none. */
  password?: string
  /**
   * Replies that clients stop reading, outside a transaction block, wait in `<cacheDir>/replies` so the database goes
   * on; past this many bytes for all clients together, FATAL 53400. Default 1 GiB; 0 keeps none (the statement waits).
   */
  maxSpillBytes?: number
  /**
   * Also listen on a Unix socket in this directory, named as Postgres names it (`.s.PGSQL.<port>`), so
   * `psql -h DIR -p PORT` and `postgres://postgres@/postgres?host=DIR&port=PORT` find it. Default: none.
   */
  socketDir?: string
  /**
   * true: a client naming a database that does not exist gets a new one, made from the migrated template when it
   * first sends a query (a client that only connects and leaves, as pg_isready, makes none). false: it gets
   * FATAL 3D000 "database ... does not exist" at connect, as from Postgres; CREATE DATABASE still makes one. Default true.
   */
  createDatabaseOnConnect?: boolean
  /**
   * Answer clients that ask for TLS (libpq's default sslmode=prefer, sslmode=require, `ssl: true`) with TLS, using
   * `tlsCert`/`tlsKey` or a self-signed certificate for localhost kept in `cacheDir`; clients that do not ask are
   * served in the clear either way. false: SSLRequest is answered 'N' and sslmode=require fails. Default true.
   */
  tls?: boolean
  /** The certificate (PEM file) to offer instead of the self-signed one; with `tlsKey`. */
  tlsCert?: string
  /** The private key (PEM file, unencrypted) of `tlsCert`. */
  tlsKey?: string
  /** Default: warnings and errors on stderr. */
  logger?: Logger
  /**
   * Where migrated templates are kept (one per migrations content and PGlite version): a fresh data dir or an
   * in-memory start copies one instead of running initdb and the migrations. Default: node_modules/.cache/pglite-dev-db.
   */
  cacheDir?: string
  /** false: always initdb and migrate from scratch (no template). Default true. */
  template?: boolean
  /**
   * false: every database runs in the server's thread, where a running statement cannot be stopped and holds up
   * every socket. Default true: each database, the main one too, runs in a worker thread of its own.
   */
  databaseThreads?: boolean
  /**
   * false: V8 never optimizes Postgres's code (its WASM), which it otherwise does for each part the first queries use,
   * and optimizes JavaScript (PGlite's and the server's, again in each database's thread) later (Node 20 and 22).
   * Databases start on about half the CPU, which suits a short run (a CI job: spawn to green about a fifth sooner on
   * 2 cores); a CPU-heavy statement takes up to twice as long. It holds for the whole process (a V8 flag), from the
   * first database on. Default true; false in `pglite-dev-db/vitest`.
   */
  wasmOptimizer?: boolean
  /**
   * Extensions to load (`['vector', 'pgcrypto']`): PGlite ships them, but a database can CREATE EXTENSION only those
   * loaded at its start, and one that has them needs them loaded at every start. Part of the template's key.
   */
  extensions?: string[]
  /**
   * Start from this snapshot (`pglite-dev-db snapshot`) instead of the template: loaded in memory, or into `dataDir`,
   * which must not hold a database yet. Migrations newer than the snapshot still apply.
   */
  fromSnapshot?: string
  /**
   * New in-memory databases kept loaded ahead, so that a test worker's database is there when it first asks (each
   * holds about 50 MB): set it to your test runner's number of workers. They load after the server is up, one at a
   * time. Default 1.
   */
  spareDatabases?: number
  /** A start-up step running longer than this logs an info line naming it; 0: every step. Default 2000. */
  progressAfterMs?: number
  /**
   * Record every message each client sends and receives as JSON lines in this file (see PGLiteSocketServerOptions);
   * complete once `close()` resolves. Default: no trace.
   */
  trace?: string
}

/** Every default of startDevDb, in one place. */
export const DEV_DB_DEFAULTS = {
  maxConnections: SERVER_DEFAULTS.maxConnections,
  idleInTransactionTimeoutMs: SERVER_DEFAULTS.idleInTransactionTimeoutMs,
  idleTimeoutMs: SERVER_DEFAULTS.idleTimeoutMs,
  queueTimeoutMs: SERVER_DEFAULTS.queueTimeoutMs,
  idleTransactionWaitMs: SERVER_DEFAULTS.idleTransactionWaitMs,
  maxSpillBytes: SERVER_DEFAULTS.maxSpillBytes,
  host: '127.0.0.1',
  port: 0,
  template: true,
  databaseThreads: true,
  wasmOptimizer: true,
  createDatabaseOnConnect: true,
  tls: true,
  progressAfterMs: DEFAULT_PROGRESS_AFTER_MS,
  spareDatabases: 1,
} satisfies DevDbOptions

type Defaulted = keyof typeof DEV_DB_DEFAULTS
/** The options with every default filled in. */
export type ResolvedDevDbOptions = Omit<DevDbOptions, Defaulted> & { [K in Defaulted]: NonNullable<DevDbOptions[K]> }

/** Validate `options`, then fill in the defaults of those left out (or given as undefined). */
export function resolveDevDbOptions(options: DevDbOptions): ResolvedDevDbOptions {
  validateDevDbOptions(options)
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))
  return { ...DEV_DB_DEFAULTS, ...given }
}

/** Spare databases at most: each holds about 50 MB. */
export const MAX_SPARE_DATABASES = 16

type Rule =
  | { kind: 'whole'; min: number; max: number }
  | { kind: 'boolean' }
  | { kind: 'text' }
  | { kind: 'textOrFalse' }
  | { kind: 'extensions' }
  | { kind: 'object' }

const WHOLE = (min: number, max = Number.MAX_SAFE_INTEGER): Rule => ({ kind: 'whole', min, max })
const TEXT: Rule = { kind: 'text' }
const BOOLEAN: Rule = { kind: 'boolean' }

/** What each option may be. An option missing here is unknown. */
const RULES: Readonly<Record<keyof DevDbOptions, Rule>> = {
  host: TEXT,
  port: WHOLE(0, 65535),
  dataDir: TEXT,
  migrations: { kind: 'textOrFalse' },
  maxConnections: WHOLE(1),
  idleInTransactionTimeoutMs: WHOLE(0, MAX_TIMER_MS),
  idleTimeoutMs: WHOLE(0, MAX_TIMER_MS),
  queueTimeoutMs: WHOLE(0, MAX_TIMER_MS),
  idleTransactionWaitMs: WHOLE(0, MAX_TIMER_MS),
  maxSpillBytes: WHOLE(0),
  password: TEXT,
  socketDir: TEXT,
  logger: { kind: 'object' },
  cacheDir: TEXT,
  template: BOOLEAN,
  databaseThreads: BOOLEAN,
  wasmOptimizer: BOOLEAN,
  createDatabaseOnConnect: BOOLEAN,
  tls: BOOLEAN,
  tlsCert: TEXT,
  tlsKey: TEXT,
  extensions: { kind: 'extensions' },
  fromSnapshot: TEXT,
  progressAfterMs: WHOLE(0, MAX_TIMER_MS),
  spareDatabases: WHOLE(0, MAX_SPARE_DATABASES),
  trace: TEXT,
}

/**
 * Mistakes in the options are ERR_CONFIG before anything opens. `describe` names an option in the message: the
 * API's name by default, the command's flag when the command checks its flags.
 */
export function validateDevDbOptions(
  options: DevDbOptions,
  describe: (option: string) => string = (option) => `startDevDb: option '${option}'`,
): void {
  const fail = (option: string, problem: string): never => {
    throw new DevServerError('ERR_CONFIG', `${describe(option)} ${problem}`)
  }
  if (options.tlsCert !== undefined && options.tlsKey === undefined)
    fail('tlsCert', 'needs the key too (tlsKey, --tls-key)')
  if (options.tlsKey !== undefined && options.tlsCert === undefined)
    fail('tlsKey', 'needs the certificate too (tlsCert, --tls-cert)')
  if (options.tls === false && options.tlsCert !== undefined)
    fail('tlsCert', 'is given, but TLS is off (tls: false, --no-tls)')
  for (const [option, value] of Object.entries(options) as Array<[keyof DevDbOptions, unknown]>) {
    const rule = Object.hasOwn(RULES, option) ? RULES[option] : undefined
    if (rule === undefined) fail(option, 'is unknown')
    if (value === undefined) continue
    switch (rule!.kind) {
      case 'whole':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < rule!.min || value > rule!.max)
          fail(option, `must be a whole number from ${rule!.min} to ${rule!.max}, got ${String(value)}`)
        break
      case 'boolean':
        if (typeof value !== 'boolean') fail(option, 'must be true or false')
        break
      case 'text':
        if (typeof value !== 'string' || value === '') fail(option, 'must be a non-empty string')
        break
      case 'textOrFalse':
        if (value !== false && (typeof value !== 'string' || value === ''))
          fail(option, 'must be a non-empty string or false')
        break
      case 'extensions':
        if (!Array.isArray(value) || !value.every((name) => typeof name === 'string'))
          fail(option, 'must be an array of extension names')
        try {
          resolveExtensionNames(value as string[])
        } catch (error) {
          fail(option, `names ${(error as Error).message}`)
        }
        break
      case 'object':
        if (typeof value !== 'object' || value === null) fail(option, 'must be an object')
        break
    }
  }
}
