// Wire-protocol vocabulary: message codes, startup codes, size limits, and the few backend messages we build ourselves.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

import { SqlState, type Severity, type SqlStateCode } from '../../errors.ts'

/** Message code (1 byte), then an int32 length that includes itself but NOT the code. */
export const CODE_LENGTH = 1
export const LEN_LENGTH = 4
export const HEADER_LENGTH = CODE_LENGTH + LEN_LENGTH

export const FrontendCode = {
  Bind: 0x42, // B
  Close: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  Describe: 0x44, // D
  Execute: 0x45, // E
  Flush: 0x48, // H
  FunctionCall: 0x46, // F
  Parse: 0x50, // P
  Password: 0x70, // p
  Query: 0x51, // Q
  Sync: 0x53, // S
  Terminate: 0x58, // X
} as const

export const BackendCode = {
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  BindComplete: 0x32, // 2
  CloseComplete: 0x33, // 3
  CommandComplete: 0x43, // C
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyInResponse: 0x47, // G
  CopyOutResponse: 0x48, // H
  CopyBothResponse: 0x57, // W
  DataRow: 0x44, // D
  EmptyQueryResponse: 0x49, // I
  ErrorResponse: 0x45, // E
  NegotiateProtocolVersion: 0x76, // v
  NoData: 0x6e, // n
  NoticeResponse: 0x4e, // N
  NotificationResponse: 0x41, // A
  ParameterDescription: 0x74, // t
  ParameterStatus: 0x53, // S
  ParseComplete: 0x31, // 1
  PortalSuspended: 0x73, // s
  ReadyForQuery: 0x5a, // Z
  RowDescription: 0x54, // T
} as const

export const TxStatus = {
  Idle: 0x49, // I
  InTransaction: 0x54, // T
  Failed: 0x45, // E
} as const

/** The int32 after the length in an untyped (startup-phase) packet. */
export const StartupCode = {
  Protocol3: 196608, // 3.0 = 3 << 16
  SSLRequest: 80877103,
  GSSENCRequest: 80877104,
  CancelRequest: 80877102,
} as const

/** Size limits from postgres.c / backend_startup.c: bigger is a protocol violation. */
export const MAX_STARTUP_PACKET_LENGTH = 10000
export const MAX_SMALL_MESSAGE_LENGTH = 10000
export const MAX_LARGE_MESSAGE_LENGTH = 0x3fffffff - 1 // 1 GB - 2

/**
 * The largest length field Postgres accepts for each message type after startup (postgres.c SocketBackend), or
 * -1 for a type its main loop rejects. PGlite must never see those: its FATAL would end the whole instance.
 */
export function maxMessageLength(code: number): number {
  switch (code) {
    case FrontendCode.Query:
    case FrontendCode.Parse:
    case FrontendCode.Bind:
    case FrontendCode.CopyData:
    case FrontendCode.FunctionCall:
      return MAX_LARGE_MESSAGE_LENGTH
    case FrontendCode.Close:
    case FrontendCode.Describe:
    case FrontendCode.Execute:
    case FrontendCode.Flush:
    case FrontendCode.Sync:
    case FrontendCode.Terminate:
    case FrontendCode.CopyDone:
    case FrontendCode.CopyFail:
      return MAX_SMALL_MESSAGE_LENGTH
    default:
      return -1 // unknown type
  }
}

function message(code: number, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength)
  buf[0] = code
  buf.writeInt32BE(LEN_LENGTH + bodyLength, 1)
  return buf
}

/** ErrorResponse (or NoticeResponse) with S, V, C, M fields; Postgres's field codes. */
export function encodeErrorResponse(severity: Severity | 'WARNING' | 'NOTICE', sqlstate: SqlStateCode | string, text: string, code: number = BackendCode.ErrorResponse): Buffer {
  const fields: Array<[string, string]> = [
    ['S', severity],
    ['V', severity],
    ['C', sqlstate],
    ['M', text],
  ]
  let length = 1
  for (const [, value] of fields) length += 1 + Buffer.byteLength(value) + 1
  const buf = message(code, length)
  let offset = HEADER_LENGTH
  for (const [field, value] of fields) {
    buf[offset++] = field.charCodeAt(0)
    offset += buf.write(value, offset)
    buf[offset++] = 0
  }
  buf[offset] = 0
  return buf
}

export function encodeReadyForQuery(status: number): Buffer {
  const buf = message(BackendCode.ReadyForQuery, 1)
  buf[HEADER_LENGTH] = status
  return buf
}

export function encodeAuthenticationOk(): Buffer {
  const buf = message(BackendCode.Authentication, 4)
  buf.writeInt32BE(0, HEADER_LENGTH)
  return buf
}

export function encodeBackendKeyData(processId: number, secretKey: number): Buffer {
  const buf = message(BackendCode.BackendKeyData, 8)
  buf.writeInt32BE(processId, HEADER_LENGTH)
  buf.writeInt32BE(secretKey, HEADER_LENGTH + 4)
  return buf
}

export function encodeParameterStatus(name: string, value: string): Buffer {
  const buf = message(BackendCode.ParameterStatus, Buffer.byteLength(name) + Buffer.byteLength(value) + 2)
  let offset = HEADER_LENGTH
  offset += buf.write(name, offset)
  buf[offset++] = 0
  offset += buf.write(value, offset)
  buf[offset] = 0
  return buf
}

/** NegotiateProtocolVersion: the newest minor version we speak, and the `_pq_.` options we did not recognise. */
export function encodeNegotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  let length = 8
  for (const name of unrecognized) length += Buffer.byteLength(name) + 1
  const buf = message(BackendCode.NegotiateProtocolVersion, length)
  buf.writeInt32BE(newestMinor, HEADER_LENGTH)
  buf.writeInt32BE(unrecognized.length, HEADER_LENGTH + 4)
  let offset = HEADER_LENGTH + 8
  for (const name of unrecognized) {
    offset += buf.write(name, offset)
    buf[offset++] = 0
  }
  return buf
}

/** Frontend Sync and Query('ROLLBACK'), used to close a vanished client's pipeline and transaction. */
export const SYNC_MESSAGE: Uint8Array = Uint8Array.of(FrontendCode.Sync, 0, 0, 0, 4)
export function encodeQuery(sql: string): Buffer {
  const buf = message(FrontendCode.Query, Buffer.byteLength(sql) + 1)
  buf.write(sql, HEADER_LENGTH)
  buf[buf.length - 1] = 0
  return buf
}

/** Parse, Bind and Execute of `sql` as the unnamed statement and portal, without parameters (no Sync). */
export function encodeUnnamedExecution(sql: string): Buffer {
  const parse = message(FrontendCode.Parse, 1 + Buffer.byteLength(sql) + 1 + 2)
  parse[HEADER_LENGTH] = 0
  parse.write(sql, HEADER_LENGTH + 1)
  parse[parse.length - 3] = 0
  parse.writeInt16BE(0, parse.length - 2)
  const bind = message(FrontendCode.Bind, 2 + 2 + 2 + 2)
  bind.fill(0, HEADER_LENGTH)
  const execute = message(FrontendCode.Execute, 1 + 4)
  execute.fill(0, HEADER_LENGTH)
  return Buffer.concat([parse, bind, execute])
}

export { SqlState }
