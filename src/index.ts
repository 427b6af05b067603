// Public API of pglite-dev-db. Everything else in src/ is internal.

export { startDevDb } from './host/dev-db.ts'
export type { DevDb, DevDbOptions } from './host/dev-db.ts'
export { applyMigrations } from './host/migrate.ts'
export { DevServerError, WireError, SqlState } from './errors.ts'
export type { DevServerErrorCode } from './errors.ts'
export { createLogger, lineSink } from './log.ts'
export type { Logger, LogLevel, LogRecord, LogSink } from './log.ts'
export { PGLiteSocketServer } from './socket/server.ts'
export { DEFAULT_MAX_CONNECTIONS, DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS, DEFAULT_MAX_COPY_BYTES } from './socket/options.ts'
export type { PGLiteSocketServerOptions } from './socket/server.ts'
