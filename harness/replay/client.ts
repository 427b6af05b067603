// One replayed connection: its own startup (the traced parameters; the URL's password when the server asks, by
// SCRAM-SHA-256, MD5 or cleartext), then the replies it receives, decoded as the trace decodes them.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'
import net from 'node:net'
import { SERVER_KEEP } from '../../src/server/trace/trace.ts'
import { FrameAssembler } from '../../src/server/trace/assembler.ts'
import { decodeBackend } from '../../src/server/trace/decode.ts'
import { isCompared, replyOf, type Reply } from './plan.ts'

export interface ClientTarget {
  host: string
  port: number
  password: string
}

export class ReplayClient {
  readonly conn: number
  readonly socket: net.Socket
  /** null until the startup ends: then 'ready', the error that ended it ('FATAL 28P01'), or 'closed'. */
  startup: string | null = null
  readonly replies: Reply[] = []
  readyCount = 0
  /** The first reply whose type is not the traced one at its place, or -1. */
  firstMismatch = -1
  isClosed = false
  pid = 0
  secretKey = 0
  readonly #expected: Reply[]
  readonly #typesOnly: boolean
  readonly #params: Record<string, string>
  readonly #password: string
  #scram: Scram | null = null
  readonly #waiters = new Set<() => void>()

  constructor(
    conn: number,
    params: Record<string, string>,
    expected: Reply[],
    target: ClientTarget,
    typesOnly: boolean,
  ) {
    this.conn = conn
    this.#params = params
    this.#expected = expected
    this.#typesOnly = typesOnly
    this.#password = target.password
    const assembler = new FrameAssembler(
      SERVER_KEEP,
      true,
      (frame) => this.#onMessage(frame),
      () => this.#fail('garbage'),
    )
    this.socket = net.connect(target.port, target.host)
    this.socket.setNoDelay(true)
    this.socket.on('connect', () => this.socket.write(startupMessage(params)))
    this.socket.on('data', (chunk: Buffer) => assembler.push(chunk))
    // A refused or reset connection ends in the close that follows; the report names the error.
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      this.startup ??= `socket error ${error.code ?? error.message}`
    })
    this.socket.on('close', () => {
      this.isClosed = true
      this.startup ??= 'closed'
      this.#wake()
    })
  }

  send(frames: Buffer[]): void {
    if (!this.isClosed) this.socket.write(Buffer.concat(frames))
  }

  /** Resolves once `condition()` holds, or with false after `ms`. */
  async until(condition: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!condition()) {
      const left = deadline - Date.now()
      if (left <= 0) return false
      let wake!: () => void
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        wake = resolve
        this.#waiters.add(wake)
        timer = setTimeout(resolve, left)
      })
      clearTimeout(timer)
      this.#waiters.delete(wake)
    }
    return true
  }

  destroy(): void {
    this.socket.destroy()
  }

  #wake(): void {
    for (const wake of this.#waiters) wake()
  }

  #fail(what: string): void {
    this.startup ??= what
    this.socket.destroy()
  }

  #onMessage(frame: Buffer): void {
    if (this.startup === null) this.#onStartupMessage(frame)
    else {
      const fields = decodeBackend(frame)
      if (isCompared(fields.type)) {
        const reply = replyOf(fields, this.#typesOnly)
        const expected = this.#expected[this.replies.length]
        if (this.firstMismatch < 0 && expected?.type !== reply.type) this.firstMismatch = this.replies.length
        this.replies.push(reply)
        if (reply.type === 'ReadyForQuery') this.readyCount++
      }
    }
    this.#wake()
  }

  #onStartupMessage(frame: Buffer): void {
    const code = String.fromCharCode(frame[0]!)
    if (code === 'Z') this.startup = 'ready'
    else if (code === 'K') {
      this.pid = frame.readInt32BE(5)
      this.secretKey = frame.readInt32BE(9)
    } else if (code === 'E') {
      const fields = decodeBackend(frame) as Record<string, unknown>
      this.startup = `${String(fields.severity)} ${String(fields.code)}`
    } else if (code === 'R') this.#authenticate(frame.readInt32BE(5), frame.subarray(9))
  }

  #authenticate(request: number, data: Buffer): void {
    const user = this.#params.user ?? ''
    if (request === 0) return
    if (request === 3) this.socket.write(passwordMessage(Buffer.from(`${this.#password}\0`)))
    else if (request === 5) {
      const inner = createHash('md5')
        .update(this.#password + user)
        .digest('hex')
      const outer = createHash('md5').update(inner).update(data.subarray(0, 4)).digest('hex')
      this.socket.write(passwordMessage(Buffer.from(`md5${outer}\0`)))
    } else if (request === 10) {
      if (!data.toString('latin1').split('\0').includes('SCRAM-SHA-256')) return this.#fail('no SCRAM-SHA-256 offered')
      this.#scram = new Scram(this.#password)
      const first = Buffer.from(this.#scram.clientFirst())
      const mechanism = Buffer.from('SCRAM-SHA-256\0')
      const length = Buffer.alloc(4)
      length.writeInt32BE(first.length)
      this.socket.write(passwordMessage(Buffer.concat([mechanism, length, first])))
    } else if (request === 11 && this.#scram) {
      const final = this.#scram.clientFinal(data.toString('utf8'))
      if (final === null) this.#fail('the server nonce does not extend ours (SCRAM)')
      else this.socket.write(passwordMessage(Buffer.from(final)))
    } else if (request === 12 && this.#scram) {
      if (!this.#scram.verifyServer(data.toString('utf8'))) this.#fail('the server proved the wrong SCRAM signature')
    } else this.#fail(`authentication request ${request} is not supported by the replay`)
  }
}

function passwordMessage(body: Buffer): Buffer {
  const header = Buffer.alloc(5)
  header.write('p', 0, 'latin1')
  header.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}

function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.alloc(8)]
  for (const [name, value] of Object.entries(params)) parts.push(Buffer.from(`${name}\0${value}\0`))
  parts.push(Buffer.of(0))
  const message = Buffer.concat(parts)
  message.writeInt32BE(message.length, 0)
  message.writeInt32BE(196608, 4) // protocol 3.0
  return message
}

/** SCRAM-SHA-256 as a client (RFC 5802/7677), without channel binding; the password is used as given. */
class Scram {
  readonly #password: string
  readonly #nonce = randomBytes(18).toString('base64')
  #clientFirstBare = ''
  #authMessage = ''
  #saltedPassword = Buffer.alloc(0)

  constructor(password: string) {
    this.#password = password
  }

  clientFirst(): string {
    this.#clientFirstBare = `n=,r=${this.#nonce}`
    return `n,,${this.#clientFirstBare}`
  }

  /** The client-final-message, or null when the server's nonce is not an extension of ours. */
  clientFinal(serverFirst: string): string | null {
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]))
    const nonce = attrs.get('r') ?? ''
    if (!nonce.startsWith(this.#nonce)) return null
    this.#saltedPassword = pbkdf2Sync(
      this.#password,
      Buffer.from(attrs.get('s') ?? '', 'base64'),
      Number(attrs.get('i')),
      32,
      'sha256',
    )
    const withoutProof = `c=biws,r=${nonce}` // biws = base64("n,,")
    this.#authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`
    const clientKey = hmac(this.#saltedPassword, 'Client Key')
    const signature = hmac(createHash('sha256').update(clientKey).digest(), this.#authMessage)
    const proof = Buffer.from(clientKey.map((byte, i) => byte ^ signature[i]!))
    return `${withoutProof},p=${proof.toString('base64')}`
  }

  verifyServer(serverFinal: string): boolean {
    const expected = hmac(hmac(this.#saltedPassword, 'Server Key'), this.#authMessage)
    const got = Buffer.from(serverFinal.replace(/^v=/, ''), 'base64')
    return got.length === expected.length && timingSafeEqual(got, expected)
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest()
}
