// Public API of pglite-dev-db. Everything else in src/ is internal.

// PGlite's typings name the Emscripten globals without depending on their package; this brings them (see docs/PACKAGE.md).
/// <reference types="emscripten" preserve="true" />
// These declarations and PGlite's name Node's (Buffer, node:net, NodeJS): TypeScript 6 and later load no @types
// package unasked, so the entry asks for the user's @types/node itself (see docs/PACKAGE.md).
/// <reference types="node" preserve="true" />
// The root also carries every export of stock @electric-sql/pglite-socket (PGLiteSocketServer, PGLiteSocketHandler,
// the constants), so that an npm override can put this package in its place (see docs/pglite-socket.md).

export { startDevDb } from './databases/dev-db.ts'
export type { DevDb, DevDbOptions } from './databases/dev-db.ts'
export { applyMigrations } from './databases/migrate.ts'
export { DevServerError, WireError, SqlState } from './errors.ts'
export type { DevServerErrorCode } from './errors.ts'
export { createLogger, lineSink } from './log.ts'
export type { Logger, LogLevel, LogRecord, LogSink } from './log.ts'
export { DEFAULT_MAX_COPY_BYTES } from './server/options.ts'
export {
  PGLiteSocketServer,
  PGLiteSocketHandler,
  PATCHED_BY,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
  CONNECTION_QUEUE_TIMEOUT,
  SSL_REQUEST_CODE,
  SSL_REQUEST_LENGTH,
  CANCEL_REQUEST_CODE,
  CANCEL_REQUEST_LENGTH,
} from './server/index.ts'
export type { PGLiteSocketServerOptions, PGLiteSocketHandlerOptions } from './server/index.ts'
