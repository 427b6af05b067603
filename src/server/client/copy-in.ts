// COPY ... FROM STDIN for a backend that cannot wait: PGlite must get the statement, all CopyData and the
// CopyDone/CopyFail in one call. What a client's COPY is, and the data it gathers until it is complete.

export interface CopyFromStdin {
  /** The table as written in the statement (quotes kept), for a catalog lookup of its column count. */
  table: string
  /** Column count when the statement lists columns. */
  columns: number | null
  binary: boolean
}

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
