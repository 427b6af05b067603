// Password authentication as Postgres does it: SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.
// The server keeps only the salted keys, derived once; each connection runs one exchange.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto'
import { BackendCode, HEADER_LENGTH } from '../protocol/codes.ts'

export const SCRAM_MECHANISM = 'SCRAM-SHA-256'
/** Postgres's default (scram_iterations). */
const ITERATIONS = 4096
const NONCE_BYTES = 18
/** Postgres refuses authentication messages longer than this (PG_MAX_AUTH_TOKEN_LENGTH). */
export const MAX_AUTH_MESSAGE_LENGTH = 65535

const AuthRequest = { Ok: 0, Sasl: 10, SaslContinue: 11, SaslFinal: 12 } as const

/** What the server stores instead of the password. */
export interface ScramSecret {
  salt: Buffer
  iterations: number
  storedKey: Buffer
  serverKey: Buffer
}

export function scramSecret(password: string): ScramSecret {
  const salt = randomBytes(16)
  const salted = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, ITERATIONS, 32, 'sha256')
  return {
    salt,
    iterations: ITERATIONS,
    storedKey: sha256(hmac(salted, 'Client Key')),
    serverKey: hmac(salted, 'Server Key'),
  }
}

/**
 * SASLprep (RFC 4013) as the clients apply it before hashing: non-ASCII spaces become a space, characters
 * "mapped to nothing" go, then NFKC. An ASCII password is unchanged.
 */
export function saslPrep(password: string): string {
  return password
    .replace(/[\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000]/g, ' ')
    .replace(/[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
    .normalize('NFKC')
}

/** The outcome of one step: bytes to send, or the reason authentication failed (for the log; the client gets 28P01). */
export type ScramStep =
  { ok: true; reply: Buffer; done: boolean } | { ok: false; reason: string; protocolViolation?: boolean }

/** One client's exchange: AuthenticationSASL, then the client's two messages. */
export class ScramExchange {
  readonly #secret: ScramSecret
  #clientFirstBare = ''
  #serverFirst = ''
  #nonce = ''
  /** The gs2 header the client sent first, which its final message must repeat (base64) as `c=`. */
  #gs2Header = ''
  #step: 'initial' | 'final' | 'done' = 'initial'

  constructor(secret: ScramSecret) {
    this.#secret = secret
  }

  /** AuthenticationSASL: the mechanisms we offer. */
  static request(): Buffer {
    const name = Buffer.from(`${SCRAM_MECHANISM}\0\0`, 'utf8')
    return authentication(AuthRequest.Sasl, name)
  }

  /** The body of a 'p' message (SASLInitialResponse, then SASLResponse). */
  respond(body: Buffer): ScramStep {
    if (this.#step === 'initial') return this.#initial(body)
    if (this.#step === 'final') return this.#final(body)
    return { ok: false, reason: 'unexpected SASL message after the exchange ended' }
  }

  #initial(body: Buffer): ScramStep {
    const nameEnd = body.indexOf(0)
    if (nameEnd < 0 || body.length < nameEnd + 5)
      return { ok: false, reason: 'malformed SASLInitialResponse', protocolViolation: true }
    const mechanism = body.toString('utf8', 0, nameEnd)
    if (mechanism !== SCRAM_MECHANISM)
      return { ok: false, reason: 'client selected an invalid SASL authentication mechanism', protocolViolation: true }
    const length = body.readInt32BE(nameEnd + 1)
    const data = body.toString('utf8', nameEnd + 5)
    if (length !== Buffer.byteLength(data))
      return { ok: false, reason: 'malformed SASLInitialResponse length', protocolViolation: true }
    // gs2 header: "n,," (no channel binding) or "y,," (client could bind, thinks we cannot); "p=" needs -PLUS.
    // An authorization identity ("a=") is refused, as Postgres refuses it.
    const match = /^([ny]),,(.*)$/s.exec(data)
    if (!match)
      return {
        ok: false,
        reason: 'unsupported SCRAM client-first-message (channel binding or authorization identity)',
        protocolViolation: true,
      }
    this.#gs2Header = `${match[1]},,`
    const bare = match[2]!
    const nonce = attribute(bare, 'r')
    if (!nonce || /[^\x21-\x2b\x2d-\x7e]/.test(nonce)) return { ok: false, reason: 'malformed SCRAM nonce' }
    this.#clientFirstBare = bare
    this.#nonce = nonce + randomBytes(NONCE_BYTES).toString('base64')
    this.#serverFirst = `r=${this.#nonce},s=${this.#secret.salt.toString('base64')},i=${this.#secret.iterations}`
    this.#step = 'final'
    return {
      ok: true,
      reply: authentication(AuthRequest.SaslContinue, Buffer.from(this.#serverFirst, 'utf8')),
      done: false,
    }
  }

  #final(body: Buffer): ScramStep {
    this.#step = 'done'
    const clientFinal = body.toString('utf8')
    const proofAt = clientFinal.lastIndexOf(',p=')
    if (proofAt < 0) return { ok: false, reason: 'malformed SCRAM client-final-message' }
    const withoutProof = clientFinal.slice(0, proofAt)
    // c= is the base64 of the gs2 header the client sent first ("n,," or "y,,"), with no channel data.
    if (attribute(withoutProof, 'c') !== Buffer.from(this.#gs2Header).toString('base64'))
      return { ok: false, reason: 'SCRAM channel binding check failed', protocolViolation: true }
    if (attribute(withoutProof, 'r') !== this.#nonce) return { ok: false, reason: 'SCRAM nonce mismatch' }
    const proof = Buffer.from(clientFinal.slice(proofAt + 3), 'base64')
    if (proof.length !== 32) return { ok: false, reason: 'malformed SCRAM proof' }
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`
    const signature = hmac(this.#secret.storedKey, authMessage)
    const clientKey = Buffer.alloc(32)
    for (let i = 0; i < 32; i++) clientKey[i] = proof[i]! ^ signature[i]!
    if (!timingSafeEqual(sha256(clientKey), this.#secret.storedKey)) return { ok: false, reason: 'wrong password' }
    const serverSignature = hmac(this.#secret.serverKey, authMessage).toString('base64')
    return {
      ok: true,
      reply: authentication(AuthRequest.SaslFinal, Buffer.from(`v=${serverSignature}`, 'utf8')),
      done: true,
    }
  }
}

function attribute(message: string, name: string): string | null {
  for (const part of message.split(',')) if (part.startsWith(`${name}=`)) return part.slice(2)
  return null
}

function authentication(request: number, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + 4 + data.length)
  out[0] = BackendCode.Authentication
  out.writeInt32BE(4 + 4 + data.length, 1)
  out.writeInt32BE(request, HEADER_LENGTH)
  data.copy(out, HEADER_LENGTH + 4)
  return out
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest()
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest()
}
