// Error types: host errors for programmatic callers and the CLI, wire errors for Postgres clients.

export type DevServerErrorCode =
  'ERR_CONFIG' | 'ERR_DATA_DIR_LOCKED' | 'ERR_MIGRATION' | 'ERR_LISTEN' | 'ERR_PGLITE' | 'ERR_PATCH_MISSING'

/** An error raised to the host program (API caller or CLI), never sent to a Postgres client. */
export class DevServerError extends Error {
  readonly code: DevServerErrorCode
  constructor(code: DevServerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DevServerError'
    this.code = code
  }
}

/** Real SQLSTATEs we send ourselves, with Postgres's own wording where there is one. */
export const SqlState = {
  TooManyConnections: '53300',
  AdminShutdown: '57P01',
  CannotConnectNow: '57P03',
  QueryCanceled: '57014',
  LockNotAvailable: '55P03',
  DeadlockDetected: '40P01',
  IdleInTransactionSessionTimeout: '25P03',
  IdleSessionTimeout: '57P05',
  ProtocolViolation: '08P01',
  InvalidPassword: '28P01',
  InvalidAuthorizationSpecification: '28000',
  FeatureNotSupported: '0A000',
  InvalidSqlStatementName: '26000',
  DuplicatePreparedStatement: '42P05',
  ProgramLimitExceeded: '54000',
  OutOfMemory: '53200',
  DiskFull: '53100',
  ConfigurationLimitExceeded: '53400',
  InternalError: 'XX000',
  DuplicateDatabase: '42P04',
  InvalidCatalogName: '3D000',
  ObjectInUse: '55006',
  ActiveSqlTransaction: '25001',
  InvalidParameterValue: '22023',
  UndefinedObject: '42704',
  SyntaxError: '42601',
  InvalidObjectDefinition: '42P17',
} as const
export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState]

export type Severity = 'ERROR' | 'FATAL'

/**
 * An error that reaches a Postgres client as an ErrorResponse. FATAL closes that client's connection. `logOnly`: the
 * connection is closed without a word, as Postgres does for a COMMERROR (bytes that are no protocol at all).
 */
export class WireError extends Error {
  readonly sqlstate: SqlStateCode
  readonly severity: Severity
  readonly logOnly: boolean
  /** Postgres's DETAIL and HINT fields, if any. */
  readonly detail: string | undefined
  readonly hint: string | undefined
  /** Postgres's POSITION field: where in the statement's text (1-based, in characters) the error is. */
  readonly position: number | undefined
  constructor(
    severity: Severity,
    sqlstate: SqlStateCode,
    message: string,
    options?: { cause?: unknown; logOnly?: boolean; detail?: string; hint?: string; position?: number },
  ) {
    super(message, options)
    this.name = 'WireError'
    this.severity = severity
    this.sqlstate = sqlstate
    this.logOnly = options?.logOnly ?? false
    this.detail = options?.detail
    this.hint = options?.hint
    this.position = options?.position
  }
}

/** Socket errors that mean "the client went away", classified by code, never by message text. */
const DISCONNECT_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
])

export function isDisconnectError(error: unknown): boolean {
  return error instanceof Error && DISCONNECT_CODES.has((error as NodeJS.ErrnoException).code ?? '')
}

/** PGlite's WASM runtime threw something that leaves the instance unusable. */
export function isPGliteFatal(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const name = (error as { name?: unknown }).name
  return name === 'ExitStatus' || name === 'RuntimeError' // WebAssembly.RuntimeError's name too
}
