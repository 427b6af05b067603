// What pg_stat_activity shows of a client: its state as Postgres names a backend's, and the text of its last
// statement, cut as Postgres cuts it, with when it and its transaction began. The batch that held the statement is
// kept as it was read and decoded only when pg_stat_activity is read, so a statement costs a reference and a clock read.

import { CODE_LENGTH, FrontendCode, HEADER_LENGTH } from '../protocol/codes.ts'
import { cstring, sqlBounds } from '../protocol/frontend-messages.ts'
import type { Statements } from '../features/statements.ts'
import type { ClientActivity } from '../features/server-functions-session.ts'
import type { ConnectionState } from './connection-state.ts'

/** What activityOf reads of a connection. */
export interface ActivitySource {
  processId: number
  database: string
  user: string
  applicationName: string
  clientAddress: string | null
  clientPort: number | null
  /** ISO time of its connect. */
  startedAt: string
  state: ConnectionState
  /** When it entered that state (performance.now()). */
  since: number
  /** Holding the session between statements of a transaction block; `aborted`: a failed one. */
  idleInTransaction: { aborted: boolean } | null
  blockedOnOutput: boolean
  waitingForLock: boolean
  statement: LastStatement
}

/**
 * A client's row of pg_stat_activity. A client waiting for the session is active, as a backend would be running; one
 * holding it for an open pipeline or a COPY is active and reading from its client.
 */
export function activityOf(source: ActivitySource): ClientActivity {
  const { state: current, since, statement } = source
  let state = 'active'
  let wait: [string, string] | null = null
  if (current === 'idle' || current === 'startup') state = 'idle'
  else if (current === 'holding' && source.idleInTransaction)
    state = source.idleInTransaction.aborted ? 'idle in transaction (aborted)' : 'idle in transaction'
  if (state !== 'active' || current === 'holding') wait = ['Client', 'ClientRead']
  if (source.blockedOnOutput) wait = ['Client', 'ClientWrite']
  else if (source.waitingForLock) wait = ['Lock', 'advisory']
  const at = (time: number): string | null =>
    time === 0 ? null : new Date(performance.timeOrigin + time).toISOString()
  return {
    pid: source.processId,
    datname: source.database,
    usename: source.user,
    application_name: source.applicationName,
    client_addr: source.clientAddress,
    client_port: source.clientPort,
    backend_start: source.startedAt,
    // Postgres ends an aborted transaction's clock with its error; an idle client has none.
    xact_start: state === 'active' || state === 'idle in transaction' ? at(statement.transactionStartedAt) : null,
    query_start: at(statement.startedAt),
    state_change: at(state === 'active' ? statement.startedAt : since),
    wait_event_type: wait?.[0] ?? null,
    wait_event: wait?.[1] ?? null,
    state,
    query: statement.text,
  }
}

/** Postgres keeps track_activity_query_size (1kB) less its terminator of a statement's text. */
const QUERY_BYTES = 1023
/** A batch larger than this is decoded when it arrives rather than kept (it may be a COPY or a big parameter). */
const KEEP_BYTES = 64 * 1024

export class LastStatement {
  /** The batch that holds the client's last statement, not decoded yet. */
  #batch: Buffer | null = null
  #text = ''
  /** When the last statement arrived, and the transaction it is part of began (performance.now(); 0: none yet). */
  startedAt = 0
  transactionStartedAt = 0
  readonly #statements: Statements

  /** `statements`: the client's, where the text of a statement it only binds is found. */
  constructor(statements: Statements) {
    this.#statements = statements
  }

  /**
   * A batch of the client's messages is about to run: if it holds a statement (a Query, Parse or Bind), that is its
   * last one from now on, and (`atRest`: the client held nothing) it begins a transaction.
   */
  note(bytes: Buffer, atRest: () => boolean): void {
    const first = bytes[0]
    if (first !== FrontendCode.Query && first !== FrontendCode.Parse && first !== FrontendCode.Bind) {
      // A Close or Describe may come first (pgjdbc closes statements before its next query): look further only then.
      if ((first !== FrontendCode.Close && first !== FrontendCode.Describe) || lastStatementAt(bytes) < 0) return
    }
    this.startedAt = performance.now()
    if (atRest()) this.transactionStartedAt = this.startedAt
    this.#batch = bytes
    if (bytes.length > KEEP_BYTES) this.#settle()
  }

  /** The text pg_stat_activity shows. */
  get text(): string {
    this.#settle()
    return this.#text
  }

  #settle(): void {
    const batch = this.#batch
    if (batch === null) return
    this.#batch = null
    this.#text = this.#decode(batch) ?? this.#text
  }

  /** The text of the last statement in `batch`; null if it binds a statement whose text is no longer known. */
  #decode(batch: Buffer): string | null {
    const at = lastStatementAt(batch)
    if (at < 0) return null
    const end = at + CODE_LENGTH + batch.readInt32BE(at + CODE_LENGTH)
    if (batch[at] !== FrontendCode.Bind) return textOf(batch, at, end)
    const name = cstring(batch, cstring(batch, at + HEADER_LENGTH, end)[1] + 1, end)
    // Made in this batch (Parse, Bind, Execute, Sync), or earlier: the client's statement of that name.
    const parse =
      parseIn(batch, at, batch.subarray(name[0], name[1])) ??
      this.#statements.parseOf(batch.toString('utf8', name[0], name[1]))
    return parse === null ? null : textOf(parse, 0, parse.length)
  }
}

/** Where the last Query, Parse or Bind in `bytes` begins; -1 if none. */
function lastStatementAt(bytes: Buffer): number {
  let last = -1
  for (
    let offset = 0;
    offset + HEADER_LENGTH <= bytes.length;
    offset += CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
  ) {
    const code = bytes[offset]
    if (code === FrontendCode.Query || code === FrontendCode.Parse || code === FrontendCode.Bind) last = offset
  }
  return last
}

/** The last Parse before `before` in `bytes` that names statement `name`. */
function parseIn(bytes: Buffer, before: number, name: Buffer): Buffer | null {
  let found: Buffer | null = null
  for (let offset = 0; offset < before;) {
    const end = offset + CODE_LENGTH + bytes.readInt32BE(offset + CODE_LENGTH)
    if (bytes[offset] === FrontendCode.Parse) {
      const [start, stop] = cstring(bytes, offset + HEADER_LENGTH, end)
      if (name.equals(bytes.subarray(start, stop))) found = bytes.subarray(offset, end)
    }
    offset = end
  }
  return found
}

/** The SQL text of the Query or Parse at [offset, end), cut to QUERY_BYTES on a character boundary. */
function textOf(bytes: Buffer, offset: number, end: number): string | null {
  const bounds = sqlBounds(bytes, offset, end, bytes[offset] === FrontendCode.Parse)
  if (bounds === null) return null
  const [start, stop] = bounds
  let cut = stop
  if (stop - start > QUERY_BYTES) {
    cut = start + QUERY_BYTES
    // Not inside a character: back to the byte that begins it.
    while (cut > start && (bytes[cut]! & 0xc0) === 0x80) cut--
  }
  return bytes.toString('utf8', start, cut)
}
