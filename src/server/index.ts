// Entry of the patched @electric-sql/pglite-socket: the stock export names, our behaviour.

// PGlite's typings name the Emscripten globals without depending on their package; this brings them (see docs/PACKAGE.md).
/// <reference types="emscripten" preserve="true" />
// These declarations and PGlite's name Node's (Buffer, node:net, NodeJS): TypeScript 6 and later load no @types
// package unasked, so the entry asks for the user's @types/node itself (see docs/PACKAGE.md).
/// <reference types="node" preserve="true" />

export { PGLiteSocketServer } from './server.ts'
export { DEFAULT_MAX_CONNECTIONS, DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS } from './options.ts'
export type { PGLiteSocketServerOptions } from './server.ts'
export { PGLiteSocketHandler } from './handler.ts'
export type { PGLiteSocketHandlerOptions } from './handler.ts'
export { StartupCode } from './protocol/codes.ts'

/** Present only in the patched package: lets a test (or a user) tell the fixed server from the stock one. */
export const PATCHED_BY = 'pglite-dev-db'

/** Stock constants, kept for compatibility. */
export const CONNECTION_QUEUE_TIMEOUT = 60000
export const SSL_REQUEST_CODE = 80877103
export const SSL_REQUEST_LENGTH = 8
export const CANCEL_REQUEST_CODE = 80877102
export const CANCEL_REQUEST_LENGTH = 16
