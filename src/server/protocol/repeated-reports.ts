// PGlite's Postgres sends a ParameterStatus again, its value unchanged, after each statement that narrows search_path
// while it runs (TRUNCATE, CREATE INDEX, ANALYZE, VACUUM, a function with SET search_path). PostgreSQL sends one only
// when the value differs from the one it last reported. Passed on, each would read as the client's own SET: a read-back
// of its settings at rest, and the end of a call that lends it the socket (a test suite that empties its tables
// between tests pays that every test). So whoever reads PGlite's output first (its database's thread, or the server's
// thread for a PGlite in it) learns every value it reports, and leaves out of a client's reply each ParameterStatus
// that repeats the last one, as PostgreSQL would.

import { BackendCode, CODE_LENGTH, HEADER_LENGTH } from './codes.ts'

/** A ParameterStatus split across chunks longer than this is not read: what it reported is forgotten instead. */
const SPLIT_REPORT_BYTES = 4096

/** What one PGlite reported last, and where its output of the current call stands in its messages. */
export class ReportedSettings {
  /** Name → the value PGlite reported last for it. */
  readonly #last = new Map<string, string>()
  /** Body bytes left of the message in progress at the end of the last chunk. */
  #remaining = 0
  readonly #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  /** The body so far of a ParameterStatus split across chunks (it is learnt once whole, never left out). */
  #split: Buffer[] | null = null
  #splitBytes = 0

  /** A call begins: its output begins with a message. */
  startCall(): void {
    this.#remaining = 0
    this.#headerFill = 0
    this.#split = null
  }

  /** PGlite ran statements whose output went elsewhere (its own query API): what it reported there is unknown. */
  forget(): void {
    this.#last.clear()
  }

  /**
   * `chunk` of a call's output, learnt; with `leaveOut`, without the ParameterStatus messages in it that repeat the
   * value last reported (a new array then; `chunk` itself when none does).
   */
  pass(chunk: Uint8Array, leaveOut: boolean): Uint8Array {
    let kept: Uint8Array[] | null = null
    let keptFrom = 0
    let i = 0
    while (i < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - i)
        if (this.#split) this.#addSplit(chunk.subarray(i, i + take))
        i += take
        this.#remaining -= take
        if (this.#remaining === 0 && this.#split) this.#endSplit()
        continue
      }
      if (this.#headerFill > 0 || chunk.length - i < HEADER_LENGTH) {
        this.#header[this.#headerFill++] = chunk[i++]!
        if (this.#headerFill === HEADER_LENGTH) {
          this.#headerFill = 0
          this.#begin(this.#header[0]!, this.#header.readInt32BE(CODE_LENGTH) - 4, null)
        }
        continue
      }
      const code = chunk[i]!
      const length = ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) - 4
      const end = i + HEADER_LENGTH + Math.max(0, length)
      if (code !== BackendCode.ParameterStatus) {
        this.#remaining = Math.max(0, end - chunk.length)
        i = Math.min(end, chunk.length)
        continue
      }
      if (end > chunk.length) {
        this.#begin(code, length, chunk.subarray(i + HEADER_LENGTH))
        i = chunk.length
        continue
      }
      if (this.#learn(chunk.subarray(i + HEADER_LENGTH, end)) || !leaveOut) {
        i = end
        continue
      }
      kept ??= []
      if (i > keptFrom) kept.push(chunk.subarray(keptFrom, i))
      keptFrom = i = end
    }
    if (kept === null) return chunk
    if (keptFrom < chunk.length) kept.push(chunk.subarray(keptFrom))
    return Buffer.concat(kept)
  }

  /** A message begins whose body is not all in this chunk (`start`: the part that is, if any). */
  #begin(code: number, length: number, start: Uint8Array | null): void {
    this.#remaining = Math.max(0, length) - (start?.length ?? 0)
    if (code !== BackendCode.ParameterStatus) return
    this.#split = []
    this.#splitBytes = 0
    if (start) this.#addSplit(start)
    if (this.#remaining === 0) this.#endSplit()
  }

  #addSplit(part: Uint8Array): void {
    this.#splitBytes += part.length
    if (this.#splitBytes <= SPLIT_REPORT_BYTES) this.#split!.push(Buffer.from(part))
  }

  #endSplit(): void {
    const parts = this.#split!
    this.#split = null
    if (this.#splitBytes > SPLIT_REPORT_BYTES) this.forget()
    else this.#learn(Buffer.concat(parts))
  }

  /** Learn a ParameterStatus body (name, value, each NUL-ended); false if it repeats the last value reported. */
  #learn(body: Uint8Array): boolean {
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength)
    const nameEnd = bytes.indexOf(0)
    const valueEnd = nameEnd < 0 ? -1 : bytes.indexOf(0, nameEnd + 1)
    if (valueEnd < 0) return true
    const name = bytes.toString('utf8', 0, nameEnd)
    const value = bytes.toString('utf8', nameEnd + 1, valueEnd)
    if (this.#last.get(name) === value) return false
    this.#last.set(name, value)
    return true
  }
}

const inProcess = new WeakMap<object, ReportedSettings>()

/**
 * What `db`, a PGlite in this thread, reported last. Calls through its execProtocolRaw (the server's reads outside a
 * client's call) are read for reports too; its own query API reads the output itself, and makes it forget instead.
 */
export function reportedSettingsOf(db: {
  execProtocolRaw(message: Uint8Array, options?: { syncToFs?: boolean }): Promise<Uint8Array>
}): ReportedSettings {
  const known = inProcess.get(db)
  if (known) return known
  const reported = new ReportedSettings()
  inProcess.set(db, reported)
  const run = db.execProtocolRaw.bind(db)
  db.execProtocolRaw = async (message, options) => {
    let output: Uint8Array | null = null
    try {
      return (output = await run(message, options))
    } finally {
      // Empty: the output went to the query API's own reader (or there was none).
      if (output === null || output.length === 0) reported.forget()
      else {
        reported.startCall()
        reported.pass(output, false)
      }
    }
  }
  return reported
}
