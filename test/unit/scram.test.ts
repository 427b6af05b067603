// SCRAM-SHA-256 as the server runs it, without sockets: a client written here from RFC 5802 / RFC 7677 proves the
// password; a wrong one, a changed nonce, a channel-binding mismatch and malformed messages are refused.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ScramExchange, saslPrep, scramSecret, type ScramStep } from '../../src/server/connection/scram.ts'

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest()
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest()

/** The body of a SASLInitialResponse: mechanism, then the length-prefixed client-first-message. */
function initialResponse(clientFirst: string, mechanism = 'SCRAM-SHA-256'): Buffer {
  const data = Buffer.from(clientFirst)
  const length = Buffer.alloc(4)
  length.writeInt32BE(data.length)
  return Buffer.concat([Buffer.from(`${mechanism}\0`), length, data])
}

/** The data of an AuthenticationSASLContinue/Final reply (after the header and the int32 request code). */
const replyData = (step: ScramStep): string => (step.ok ? step.reply.toString('utf8', 9) : '')

interface Exchange {
  server: ScramExchange
  first: ScramStep
  /** The client-final-message for `password`, with the given gs2 header base64 and nonce (defaults: right ones). */
  finalFor(password: string, overrides?: { channel?: string; nonce?: string }): Buffer
}

function begin(secretPassword: string, gs2 = 'n,,'): Exchange {
  const server = new ScramExchange(scramSecret(secretPassword))
  const clientNonce = randomBytes(18).toString('base64')
  const clientFirstBare = `n=,r=${clientNonce}`
  const first = server.respond(initialResponse(`${gs2}${clientFirstBare}`))
  const finalFor = (password: string, overrides: { channel?: string; nonce?: string } = {}): Buffer => {
    const serverFirst = replyData(first)
    const attrs = Object.fromEntries(serverFirst.split(',').map((part) => [part[0], part.slice(2)]))
    const salted = pbkdf2Sync(
      Buffer.from(saslPrep(password)),
      Buffer.from(attrs.s!, 'base64'),
      Number(attrs.i),
      32,
      'sha256',
    )
    const clientKey = hmac(salted, 'Client Key')
    const withoutProof = `c=${overrides.channel ?? Buffer.from(gs2).toString('base64')},r=${overrides.nonce ?? attrs.r}`
    const signature = hmac(sha256(clientKey), `${clientFirstBare},${serverFirst},${withoutProof}`)
    const proof = Buffer.alloc(32)
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ signature[i]!
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`)
  }
  return { server, first, finalFor }
}

describe('ScramExchange', () => {
  it('asks for SCRAM-SHA-256 and accepts the right password, with the server signature the client checks', () => {
    expect(ScramExchange.request().toString('latin1')).toContain('SCRAM-SHA-256\0\0')
    const exchange = begin('s3cret')
    expect(exchange.first).toMatchObject({ ok: true, done: false })
    expect(replyData(exchange.first)).toMatch(/^r=[^,]+,s=[^,]+,i=4096$/)
    const final = exchange.server.respond(exchange.finalFor('s3cret'))
    expect(final).toMatchObject({ ok: true, done: true })
    expect(replyData(final)).toMatch(/^v=[A-Za-z0-9+/]+=*$/)
    // Nothing more may follow.
    expect(exchange.server.respond(Buffer.from('x'))).toMatchObject({ ok: false })
  })

  it('a client that could bind channels but thinks we cannot ("y,,") gets in too', () => {
    const exchange = begin('pw', 'y,,')
    expect(exchange.server.respond(exchange.finalFor('pw'))).toMatchObject({ ok: true, done: true })
  })

  it('refuses a wrong password, a changed nonce and a channel-binding mismatch', () => {
    const wrong = begin('right')
    expect(wrong.server.respond(wrong.finalFor('wrong'))).toEqual({ ok: false, reason: 'wrong password' })
    const nonce = begin('right')
    expect(nonce.server.respond(nonce.finalFor('right', { nonce: 'abc' }))).toMatchObject({
      ok: false,
      reason: 'SCRAM nonce mismatch',
    })
    const channel = begin('right')
    expect(
      channel.server.respond(channel.finalFor('right', { channel: Buffer.from('y,,').toString('base64') })),
    ).toMatchObject({ ok: false, protocolViolation: true })
  })

  it('treats malformed first messages as protocol violations', () => {
    const secret = scramSecret('x')
    for (const body of [
      Buffer.from('SCRAM-SHA-256'),
      initialResponse('n,,n=,r=abc', 'SCRAM-SHA-1'),
      initialResponse('p=tls-server-end-point,,n=,r=abc'),
      initialResponse('n,a=admin,n=,r=abc'),
    ]) {
      expect(new ScramExchange(secret).respond(body)).toMatchObject({ ok: false, protocolViolation: true })
    }
  })

  it('SASLprep maps non-ASCII spaces, drops what maps to nothing, and normalizes', () => {
    expect(saslPrep('a\u00A0b\u00ADc\uFB01')).toBe('a bcfi')
  })
})
