// Wire-protocol vocabulary: message codes, header sizes, startup codes and the size limits Postgres enforces.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

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
