// A stand-in for PGlite in unit tests of the connection's logic: it answers each frontend message as Postgres's
// protocol says it must (ParseComplete, BindComplete, ReadyForQuery with the transaction status...), keeps a
// transaction status for BEGIN/COMMIT/ROLLBACK, fails a Query or a Parse whose SQL is 'fail' (after which, as
// Postgres, it skips messages until Sync), and records every call. It
// knows nothing of SQL beyond that: behaviour that depends on Postgres is tested against real PGlite in test/wire/.
import type { SessionDb } from '../../src/server/session/databases.ts'

const message = (code: string, body: Buffer = Buffer.alloc(0)): Buffer => {
  const out = Buffer.alloc(5 + body.length)
  out[0] = code.charCodeAt(0)
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}
const tag = (text: string) => message('C', Buffer.from(`${text}\0`))
const error = (code: string) => message('E', Buffer.from(`SERROR\0C${code}\0Mscripted failure\0\0`))

export class ScriptedDb implements SessionDb {
  readonly waitReady = Promise.resolve()
  /** The frontend bytes of every call, in order. */
  readonly calls: Buffer[] = []
  #status = 'I'
  /** An error in the extended protocol: messages are skipped until Sync. */
  #skipping = false

  runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    return fn()
  }

  async execProtocolRaw(bytes: Uint8Array): Promise<Uint8Array> {
    const out: Uint8Array[] = []
    await this.execProtocolRawStream(bytes, { onRawData: (chunk) => out.push(chunk) })
    return Buffer.concat(out)
  }

  async execProtocolRawStream(input: Uint8Array, options: { onRawData: (chunk: Uint8Array) => void }): Promise<void> {
    const bytes = Buffer.from(input)
    this.calls.push(bytes)
    const out: Buffer[] = []
    for (let at = 0; at < bytes.length;) {
      const code = String.fromCharCode(bytes[at]!)
      const end = at + 1 + bytes.readInt32BE(at + 1)
      const fields = bytes.toString('utf8', at + 5, end).split('\0')
      at = end
      if (this.#skipping && code !== 'S') continue
      switch (code) {
        case 'Q':
          out.push(...this.#query(fields[0]!), this.#ready())
          break
        case 'P':
          if (fields[1] === 'fail') {
            this.#skipping = true
            out.push(error('42000'))
          } else out.push(message('1'))
          break
        case 'B':
          out.push(message('2'))
          break
        case 'D':
          out.push(message('n'))
          break
        case 'E':
          out.push(tag('SELECT 0'))
          break
        case 'C':
          out.push(message('3'))
          break
        case 'S':
          this.#skipping = false
          out.push(this.#ready())
          break
      }
    }
    // In pieces, as PGlite flushes: every byte boundary is fair.
    const all = Buffer.concat(out)
    for (let at = 0; at < all.length; at += 7) options.onRawData(all.subarray(at, at + 7))
  }

  #query(sql: string): Buffer[] {
    const verb = sql.trim().split(/\s+/)[0]!.toLowerCase()
    if (verb === 'begin') this.#status = 'T'
    else if (verb === 'commit' || verb === 'rollback') this.#status = 'I'
    if (verb === 'fail') {
      if (this.#status === 'T') this.#status = 'E'
      return [error('42000')]
    }
    return [tag(verb.toUpperCase())]
  }

  #ready(): Buffer {
    return message('Z', Buffer.from(this.#status))
  }
}
