// COPY ... FROM STDIN, taken over: PGlite cannot wait for data in the middle of a call, so the server answers
// CopyInResponse itself, gathers the client's CopyData until CopyDone or CopyFail, and hands PGlite the statement and
// all of its data in one call, bounded by maxCopyBytes.

import { SqlState, WireError } from '../../errors.ts'
import { BackendCode, FrontendCode, TxStatus } from '../protocol/codes.ts'
import {
  encodeCopyInResponse,
  encodeErrorResponse,
  encodeReadyForQuery,
  firstValue,
  withoutFirst,
} from '../protocol/backend-messages.ts'
import { FAILING_EXTENDED, FAILING_QUERY, SYNC, encodeQuery } from '../protocol/frontend-messages.ts'
import type { Turn } from './turn.ts'
import type { CopyFromStdin } from './takeover-kinds.ts'

const IDENT = String.raw`(?:"(?:[^"]|"")*"|[^\s("';.]+)`
const COPY_FROM_STDIN = new RegExp(
  String.raw`^\s*copy\s+(binary\s+)?(${IDENT}(?:\s*\.\s*${IDENT})?)\s*(?:\(([^)]*)\))?\s*from\s+stdin\b([\s\S]*)$`,
  'i',
)

/** Recognise a single `COPY table [(cols)] FROM STDIN [options]` statement (comments before it are not handled). */
export function parseCopyFromStdin(sql: string): CopyFromStdin | null {
  const text = sql.replace(/;\s*$/, '')
  const match = COPY_FROM_STDIN.exec(text)
  if (!match) return null
  const options = match[4] ?? ''
  if (options.includes(';')) return null
  const columnList = match[3]
  return {
    table: match[2]!,
    columns: columnList === undefined ? null : columnList.split(',').length,
    binary: match[1] !== undefined || /\bbinary\b/i.test(options),
  }
}

/** SQL that counts a table's columns without ever raising an error (to_regclass returns NULL for a bad name). */
export function columnCountQuery(table: string): string {
  const literal = `'${table.replace(/'/g, "''")}'`
  return `select count(*) from pg_catalog.pg_attribute where attrelid = pg_catalog.to_regclass(${literal}) and attnum > 0 and not attisdropped`
}

/** A COPY FROM STDIN in progress: the message that started it and the client's data so far, held for one call. */
export class CopyIn {
  readonly #parts: Buffer[]
  #size: number
  /** Started by a simple Query (else by an extended-protocol Execute). */
  readonly viaQuery: boolean
  /** The server already answered with an error (size limit); the rest of the COPY is dropped until its end. */
  failed = false

  constructor(start: Buffer, viaQuery: boolean) {
    this.#parts = [start]
    this.#size = start.length
    this.viaQuery = viaQuery
  }

  get size(): number {
    return this.#size
  }

  /** Keep a message (a view: the frame reader never writes over bytes it handed out). */
  add(frame: Buffer): void {
    this.#parts.push(frame)
    this.#size += frame.length
  }

  /** Everything gathered, as the one call PGlite needs; the parts are let go. */
  take(): Buffer {
    const bytes = Buffer.concat(this.#parts, this.#size)
    this.drop()
    return bytes
  }

  /** Let go of what was gathered (after a failure). */
  drop(): void {
    this.#parts.length = 0
  }
}

/** The client's COPY starts: wait for the session, tell the client to send its data; returns the COPY gathering it. */
export async function startCopy(
  turn: Turn,
  copy: CopyFromStdin,
  frame: Buffer,
  viaQuery: boolean,
): Promise<CopyIn | null> {
  try {
    await turn.own()
  } catch (error) {
    turn.refuse(error, frame)
    return null
  }
  const columns = copy.columns ?? (await columnCount(turn, copy.table))
  turn.write(encodeCopyInResponse(copy.binary, columns))
  turn.log.debug('copy in started', { columns, binary: copy.binary })
  return new CopyIn(frame, viaQuery)
}

/**
 * Column count for the CopyInResponse. Asked only between transactions: inside one, any query before the COPY
 * would change its outcome (COPY FREEZE refuses to run after "prior transaction activity"); clients do not
 * depend on the count, so 0 is sent then.
 */
async function columnCount(turn: Turn, table: string): Promise<number> {
  if (!turn.backend.atRest) return 0
  const reply = await turn.backend.capture(encodeQuery(columnCountQuery(table)))
  return Number(firstValue(reply) ?? 0)
}

/** One message from the client while its COPY gathers data; returns the COPY if it goes on, null once it ended. */
export async function gatherCopy(turn: Turn, copy: CopyIn, code: number, frame: Buffer): Promise<CopyIn | null> {
  const isEnd = code === FrontendCode.CopyDone || code === FrontendCode.CopyFail
  if (copy.failed) {
    // After our own COPY error in the extended protocol, messages are discarded until Sync, which PGlite answers
    // (it was told of the failure, so its implicit or explicit transaction is aborted as Postgres's would be).
    if (code !== FrontendCode.Sync) return copy
    turn.write(await turn.backend.capture(SYNC))
    await turn.releaseIfAtRest()
    return null
  }
  if (!isEnd && code !== FrontendCode.CopyData && code !== FrontendCode.Flush && code !== FrontendCode.Sync)
    return refuseMessage(turn, copy, code)
  copy.add(frame)
  if (copy.size > turn.maxCopyBytes) return failCopy(turn, copy)
  if (!isEnd) return copy
  await finishCopy(turn, copy)
  return null
}

/**
 * A message that has no place in a COPY (a Query, a Parse...): Postgres answers ERROR 08P01, then ends the connection
 * with FATAL 08P01, as its reading of messages has lost its footing. PGlite has not seen the COPY: nothing of it runs;
 * what the client left open around it is rolled back as it goes. (Given to PGlite, such a message would end it.)
 */
function refuseMessage(turn: Turn, copy: CopyIn, code: number): never {
  copy.drop()
  turn.write(
    encodeErrorResponse(
      'ERROR',
      SqlState.ProtocolViolation,
      `unexpected message type 0x${code.toString(16).toUpperCase().padStart(2, '0')} during COPY from stdin`,
    ),
  )
  throw new WireError(
    'FATAL',
    SqlState.ProtocolViolation,
    'terminating connection because protocol synchronization was lost',
  )
}

/**
 * The COPY passed maxCopyBytes: ERROR 54000, as Postgres fails a COPY. PGlite is made to fail a statement in
 * the same place, so a transaction or pipeline around the COPY is aborted as it would be; the rest of the
 * client's copy data is dropped (by PGlite once it is out of copy mode, as Postgres drops it). A COPY by Query ends
 * here; one by Execute goes on dropping the client's messages until its Sync.
 */
async function failCopy(turn: Turn, copy: CopyIn): Promise<CopyIn | null> {
  copy.drop()
  copy.failed = true
  const limit = turn.maxCopyBytes
  const size = limit >= 2 ** 20 ? `${Math.round(limit / 2 ** 20)} MB` : `${limit} bytes`
  const error = encodeErrorResponse(
    'ERROR',
    SqlState.ProgramLimitExceeded,
    `COPY data exceeds pglite-dev-db's limit of ${size}; split it into smaller COPY commands`,
  )
  const { backend } = turn
  if (!copy.viaQuery) {
    // Discard-until-Sync in PGlite too; the client's Sync ends it (see gatherCopy).
    await backend.capture(FAILING_EXTENDED)
    turn.write(error)
    return copy
  }
  if (backend.txStatus !== TxStatus.Idle) await backend.capture(FAILING_QUERY)
  turn.write(Buffer.concat([error, encodeReadyForQuery(backend.txStatus)]))
  await turn.releaseIfAtRest()
  return null
}

async function finishCopy(turn: Turn, copy: CopyIn): Promise<void> {
  const reply = await turn.backend.capture(copy.take(), true)
  // PGlite sends its own CopyInResponse first; the client already had ours.
  turn.write(withoutFirst(reply, BackendCode.CopyInResponse))
  await turn.releaseIfAtRest()
}
