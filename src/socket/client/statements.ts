// Per-client names for prepared statements and portals. PGlite has one session, so two clients that both Parse
// "S_1" would collide (42P05) or, worse, run each other's statement. Every non-empty name a client sends in
// Parse, Bind, Describe, Close or Execute is given the client's prefix on the way in; error and notice texts
// that quote a prefixed name get the client's own name back on the way out. The same output filter routes
// notifications (listen.ts).

import { createHash } from 'node:crypto'
import { BackendCode, CODE_LENGTH, FrontendCode, HEADER_LENGTH, LEN_LENGTH } from '../protocol/codes.ts'
import { forEachFrame } from '../protocol/frames.ts'
import { statementNameEdits } from '../sql/statement-names.ts'
import { mentions, sqlBounds } from '../sql/tokens.ts'

/** Words that may start a statement naming a prepared statement (all end in "e": one scan finds them all). */
const STATEMENT_WORDS = ['prepare', 'execute', 'deallocate']

/** Postgres keys prepared statements and portals by NAMEDATALEN - 1 bytes; longer names are cut. */
const MAX_NAME_BYTES = 63
const QUOTE = 0x22

export class ClientNames {
  /** `"` + prefix, as it appears in a server message that quotes a name. */
  readonly #quotedPrefix: Buffer
  readonly #prefix: Buffer
  /** Server names of the statements this client created and has not closed, by client name. */
  readonly statements = new Map<string, Buffer>()
  /** The (rewritten) Parse message of each of those statements, to make them again if another client wipes them. */
  readonly #parses = new Map<string, Buffer>()
  /**
   * Parse messages rewritten but not yet run by PGlite (waiting for the session), by server name. A wipe meanwhile
   * (another client's reset or DEALLOCATE ALL) must not make them: they make themselves when they run (else 42P05).
   */
  readonly #unrun = new Map<string, { name: string; frame: Buffer }>()
  /** Names too long to prefix are hashed; the hash maps back to the client's name in error texts. */
  readonly #hashed = new Map<string, string>()
  /** Set once the client used any name: from then on its errors are checked for prefixed names. */
  used = false

  constructor(namespaceId: number) {
    this.#prefix = Buffer.from(`pgdd${namespaceId.toString(36)}.`)
    this.#quotedPrefix = Buffer.concat([Buffer.from([QUOTE]), this.#prefix])
  }

  /** The name PGlite knows for the client's `name` (bytes without the terminator). */
  serverName(name: Buffer): Buffer {
    if (this.#prefix.length + name.length <= MAX_NAME_BYTES) return Buffer.concat([this.#prefix, name])
    const digest = createHash('sha256').update(name).digest('base64url').slice(0, MAX_NAME_BYTES - this.#prefix.length - 1)
    const server = Buffer.from(`${this.#prefix.toString()}#${digest}`)
    this.#hashed.set(server.toString(), name.toString())
    return server
  }

  /**
   * `bytes` with every name in Parse/Bind/Describe/Close/Execute prefixed, or `bytes` itself when no message in
   * it names anything (the common case for unnamed statements: no copy). Also records statements made and closed.
   */
  rewrite(bytes: Buffer): Buffer {
    let extra = 0
    let named = false
    forEachFrame(bytes, (code, offset, length) => {
      const fields = nameFields(bytes, code, offset, offset + length)
      for (const [start, end] of fields) {
        if (end === start) continue
        named = true
        extra += this.serverName(bytes.subarray(start, end)).length - (end - start)
      }
    })
    if (!named) return bytes
    this.used = true
    const out = Buffer.allocUnsafe(bytes.length + extra)
    let at = 0
    forEachFrame(bytes, (code, offset, length) => {
      const frameEnd = offset + length
      const fields = nameFields(bytes, code, offset, frameEnd)
      if (fields.length === 0 || fields.every(([start, end]) => start === end)) {
        at += bytes.copy(out, at, offset, frameEnd)
        return
      }
      const frameStart = at
      let from = offset
      for (const [start, end] of fields) {
        at += bytes.copy(out, at, from, start)
        if (end > start) {
          const clientName = bytes.subarray(start, end)
          const server = this.serverName(clientName)
          at += server.copy(out, at)
          this.#track(code, bytes, offset, clientName, server)
        }
        from = end
      }
      at += bytes.copy(out, at, from, frameEnd)
      out.writeInt32BE(at - frameStart - CODE_LENGTH, frameStart + CODE_LENGTH)
      const [name] = fields
      if (code === FrontendCode.Parse && name && name[1] > name[0]) {
        const frame = Buffer.from(out.subarray(frameStart, at))
        this.#unrun.set(this.serverName(bytes.subarray(name[0], name[1])).toString(), { name: bytes.toString('utf8', name[0], name[1]), frame })
      }
    })
    return out
  }

  /**
   * `bytes` with the statement names in SQL PREPARE/EXECUTE/DEALLOCATE (in Query and Parse texts) given this
   * client's prefix, or `bytes` itself when there are none (checked with a byte scan first: no string is built).
   */
  rewriteSql(bytes: Buffer): Buffer {
    let parts: Buffer[] | null = null
    let copied = 0
    forEachFrame(bytes, (code, offset, length) => {
      if (code !== FrontendCode.Query && code !== FrontendCode.Parse) return
      const frameEnd = offset + length
      const bounds = sqlBounds(bytes, offset, frameEnd, code === FrontendCode.Parse)
      if (!bounds || !mentions(bytes, bounds[0], bounds[1], STATEMENT_WORDS)) return
      const [textStart, textEnd] = bounds
      const sql = bytes.toString('utf8', textStart, textEnd)
      const edits = statementNameEdits(sql)
      if (edits.length === 0) return
      let text = ''
      let from = 0
      for (const edit of edits) {
        const server = this.serverName(Buffer.from(edit.name)).toString()
        text += `${sql.slice(from, edit.start)}"${server.replaceAll('"', '""')}"`
        from = edit.end
        if (edit.kind === 'prepare') this.statements.set(edit.name, Buffer.from(server))
        else if (edit.kind === 'deallocate') this.#forget(edit.name)
      }
      text += sql.slice(from)
      const body = Buffer.from(text)
      const frame = Buffer.concat([bytes.subarray(offset, textStart), body, bytes.subarray(textEnd, frameEnd)])
      frame.writeInt32BE(frame.length - CODE_LENGTH, CODE_LENGTH)
      parts ??= []
      parts.push(bytes.subarray(copied, offset), frame)
      copied = frameEnd
      this.used = true
    })
    if (!parts) return bytes
    const list = parts as Buffer[]
    list.push(bytes.subarray(copied))
    return Buffer.concat(list)
  }

  #track(code: number, bytes: Buffer, offset: number, clientName: Buffer, server: Buffer): void {
    if (code === FrontendCode.Parse) this.statements.set(clientName.toString(), server)
    else if (code === FrontendCode.Close && bytes[offset + HEADER_LENGTH] === 0x53) this.#forget(clientName.toString())
  }

  #forget(name: string): void {
    this.statements.delete(name)
    this.#parses.delete(name)
    if (this.#unrun.size > 0) this.#unrun.delete(this.serverName(Buffer.from(name)).toString())
  }

  /** PGlite ran `bytes` (rewritten by this client): the statements their Parse messages made are now made. */
  ran(input: Uint8Array): void {
    if (this.#unrun.size === 0) return
    const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength)
    forEachFrame(bytes, (code, offset, length) => {
      if (code !== FrontendCode.Parse) return
      const [start, end] = cstring(bytes, offset + HEADER_LENGTH, offset + length)
      if (end === start) return
      const server = bytes.toString('utf8', start, end)
      const unrun = this.#unrun.get(server)
      if (!unrun) return
      this.#unrun.delete(server)
      this.#parses.set(unrun.name, unrun.frame)
    })
  }

  /** This client's statements were deallocated (its DEALLOCATE ALL or DISCARD ALL ran in PGlite). */
  forgetAll(): void {
    this.statements.clear()
    this.#parses.clear()
    this.#unrun.clear()
  }

  /** Parse messages that make this client's statements again (those PGlite has run), after a wipe or a reset. */
  parseFrames(): Buffer[] {
    return [...this.#parses.values()]
  }

  /** An ErrorResponse or NoticeResponse with this client's prefixed names turned back into its own names. */
  restore(message: Buffer): Buffer {
    if (message.indexOf(this.#quotedPrefix) < 0) return message
    const prefix = this.#prefix.toString()
    const text = message.toString('utf8', HEADER_LENGTH).replace(/"([^"\0]*)"/g, (quoted, name: string) => {
      if (!name.startsWith(prefix)) return quoted
      return `"${this.#hashed.get(name) ?? name.slice(prefix.length)}"`
    })
    const body = Buffer.from(text, 'utf8')
    const out = Buffer.allocUnsafe(HEADER_LENGTH + body.length)
    out[0] = message[0]!
    out.writeInt32BE(LEN_LENGTH + body.length, CODE_LENGTH)
    body.copy(out, HEADER_LENGTH)
    return out
  }

  /** Frames that close every statement this client still has, for when it goes away. */
  closeAll(): Buffer[] {
    const frames = [...this.statements.values()].map(encodeCloseStatement)
    this.forgetAll()
    return frames
  }
}

/** A Close of one server-side statement name. */
function encodeCloseStatement(serverName: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(HEADER_LENGTH + 1 + serverName.length + 1)
  frame[0] = FrontendCode.Close
  frame.writeInt32BE(frame.length - CODE_LENGTH, CODE_LENGTH)
  frame[HEADER_LENGTH] = 0x53 // 'S'
  serverName.copy(frame, HEADER_LENGTH + 1)
  frame[frame.length - 1] = 0
  return frame
}

/** [start, end) of each name in a frontend message (without its terminator); none for other messages. */
function nameFields(bytes: Buffer, code: number, offset: number, end: number): Array<[number, number]> {
  const body = offset + HEADER_LENGTH
  switch (code) {
    case FrontendCode.Parse:
    case FrontendCode.Execute:
      return [cstring(bytes, body, end)]
    case FrontendCode.Bind: {
      const portal = cstring(bytes, body, end)
      return [portal, cstring(bytes, portal[1] + 1, end)]
    }
    case FrontendCode.Describe:
    case FrontendCode.Close:
      return [cstring(bytes, body + 1, end)]
    default:
      return []
  }
}

function cstring(bytes: Buffer, start: number, end: number): [number, number] {
  const zero = bytes.indexOf(0, start)
  // A missing terminator is PGlite's to report (08P01); leave the message as it is.
  return zero < 0 || zero >= end ? [start, start] : [start, zero]
}

/**
 * Passes PGlite's output through, in the order it came, with each ErrorResponse and NoticeResponse whole and
 * handed to `restore` first. Other bytes are copied out as they arrive (PGlite's chunks are views of its memory).
 */
export class MessageRestorer {
  #header = Buffer.alloc(HEADER_LENGTH)
  #headerFill = 0
  #remaining = 0
  /** The ErrorResponse/NoticeResponse being gathered, or null while passing a message through. */
  #held: Buffer | null = null
  #heldFill = 0

  /** `restore` returns the message to pass on (the same, or rewritten), or null to drop it. */
  constructor(readonly restore: (message: Buffer) => Buffer | null) {}

  feed(chunk: Uint8Array, emit: (bytes: Buffer) => void): void {
    const n = chunk.length
    let i = 0
    let passFrom = 0
    const pass = (to: number) => {
      if (to > passFrom) emit(Buffer.from(chunk.subarray(passFrom, to)))
    }
    while (i < n) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, n - i)
        if (this.#held) {
          this.#held.set(chunk.subarray(i, i + take), this.#heldFill)
          this.#heldFill += take
        }
        i += take
        this.#remaining -= take
        if (this.#remaining === 0 && this.#held) {
          this.#release(emit)
          passFrom = i
        }
        continue
      }
      if (this.#headerFill === 0 && n - i >= HEADER_LENGTH) {
        // The whole header is in this chunk: pass it through unless it starts a message we rewrite.
        const code = chunk[i]!
        this.#remaining = Math.max(0, ((chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!) - LEN_LENGTH)
        if (isRewritten(code)) {
          pass(i)
          this.#hold(chunk.subarray(i, i + HEADER_LENGTH))
          passFrom = i + HEADER_LENGTH
          if (this.#remaining === 0) this.#release(emit)
        }
        i += HEADER_LENGTH
        continue
      }
      // A header split across chunks: keep its bytes aside until its type is known.
      if (this.#headerFill === 0) pass(i)
      this.#header[this.#headerFill++] = chunk[i++]!
      passFrom = i
      if (this.#headerFill < HEADER_LENGTH) continue
      this.#headerFill = 0
      this.#remaining = Math.max(0, this.#header.readInt32BE(CODE_LENGTH) - LEN_LENGTH)
      if (!isRewritten(this.#header[0]!)) {
        emit(Buffer.from(this.#header))
        continue
      }
      this.#hold(this.#header)
      if (this.#remaining === 0) this.#release(emit)
    }
    if (!this.#held && this.#headerFill === 0) pass(n)
  }

  #hold(header: Uint8Array): void {
    this.#held = Buffer.allocUnsafe(HEADER_LENGTH + this.#remaining)
    this.#held.set(header, 0)
    this.#heldFill = HEADER_LENGTH
  }

  #release(emit: (bytes: Buffer) => void): void {
    const message = this.restore(this.#held!)
    this.#held = null
    if (message) emit(message)
  }
}

function isRewritten(code: number): boolean {
  return code === BackendCode.ErrorResponse || code === BackendCode.NoticeResponse || code === BackendCode.NotificationResponse
}

/** How a batch uses the unnamed prepared statement, which lives in the shared session, not in the client. */
export const UnnamedUse = {
  /** A Bind or Describe of the unnamed statement comes before any Parse of it in the batch. */
  ReferencedFirst: 1,
  /** The batch makes an unnamed statement. */
  Parsed: 2,
} as const

/**
 * Postgres keeps one unnamed statement per session; here the session is shared, so a client that binds the unnamed
 * statement without having made it must not find another client's (see Connection#claimUnnamedStatement).
 */
export function unnamedStatementUse(bytes: Buffer): number {
  let use = 0
  forEachFrame(bytes, (code, offset) => {
    const body = offset + HEADER_LENGTH
    if (code === FrontendCode.Parse) {
      if (bytes[body] === 0) use |= UnnamedUse.Parsed
    } else if ((use & UnnamedUse.Parsed) === 0) {
      if (code === FrontendCode.Bind) {
        if (bytes[bytes.indexOf(0, body) + 1] === 0) use |= UnnamedUse.ReferencedFirst
      } else if (code === FrontendCode.Describe && bytes[body] === 0x53 && bytes[body + 1] === 0) {
        use |= UnnamedUse.ReferencedFirst
      }
    }
  })
  return use
}
