// TLS for URLs with sslmode=require: SSLRequest answered 'S' and the connection goes on over TLS, with a self-signed
// certificate kept in the cache dir, or the user's own (which verify-full then accepts). Clients connect unchanged:
// psql (libpq), node-postgres, postgres.js, psycopg, pgjdbc; sslmode=disable keeps working; --no-tls answers 'N'.
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { TLSSocket, connect as tlsConnect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import postgres from 'postgres'
import { generate } from 'selfsigned'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { LIBPQ_ENV, runProcess } from '../../harness/process.ts'
import * as wire from '../../harness/wire.ts'
import { withDeadline } from '../../harness/raw-client.ts'
import { endClient } from '../../harness/pg.ts'
import { scratchDir } from '../helpers/dev-db.ts'
import { scratchRoot } from '../helpers/db.ts'

const CLIENTS_DIR = fileURLToPath(new URL('../../harness/clients/', import.meta.url))

/** One cache dir for the file (its template and certificate), so each server after the first starts from them. */
let sharedCacheDir = ''
beforeAll(async () => {
  sharedCacheDir = await mkdtemp(path.join(await scratchRoot(), 'pglite-tls-cache-'))
})
afterAll(() => rm(sharedCacheDir, { recursive: true, force: true }))

async function serve(options: DevDbOptions = {}): Promise<DevDb> {
  const dev = await startDevDb({ cacheDir: sharedCacheDir, migrations: false, ...options })
  onTestFinished(() => dev.close())
  return dev
}

async function psql(url: string, sql: string): Promise<{ code: number | null; out: string; err: string }> {
  const run = await runProcess('psql', [url, '-XAtc', sql], { env: LIBPQ_ENV })
  return { code: run.code, out: run.stdout.toString().trim(), err: run.stderr.trim() }
}

describe('TLS', () => {
  it('psql with sslmode=require and prefer (libpq default) gets TLS; sslmode=disable stays in the clear', async () => {
    const dev = await serve()
    for (const mode of ['require', 'prefer']) {
      const run = await psql(`${dev.url}?sslmode=${mode}`, '\\conninfo')
      expect(run).toMatchObject({ code: 0, out: expect.stringMatching(/SSL connection \(protocol: TLSv1\.3/) })
    }
    const plain = await psql(`${dev.url}?sslmode=disable`, '\\conninfo')
    expect(plain.code).toBe(0)
    expect(plain.out).not.toContain('SSL')
    expect(await psql(`${dev.url}?sslmode=require`, 'select 6 * 7')).toEqual({ code: 0, out: '42', err: '' })
  })

  it('node-postgres with ssl: { rejectUnauthorized: false } and postgres.js with ssl: require connect unchanged', async () => {
    const dev = await serve()
    const client = new pg.Client({ connectionString: dev.url, ssl: { rejectUnauthorized: false } })
    await client.connect()
    onTestFinished(() => endClient(client))
    expect((await client.query('select $1::int + 1 as n', [41])).rows).toEqual([{ n: 42 }])
    const stream = (client as unknown as { connection: { stream: net.Socket } }).connection.stream
    expect(stream).toBeInstanceOf(TLSSocket)
    expect((stream as TLSSocket).getProtocol()).toBe('TLSv1.3')
    const sql = postgres(dev.url, { ssl: 'require', max: 2, onnotice: () => {} })
    onTestFinished(() => sql.end({ timeout: 5 }))
    expect(await sql`select ${'tls'}::text as t`).toEqual([{ t: 'tls' }])
    expect(await sql.begin((tx) => tx`select count(*)::int as n from pg_class where relname = 'pg_type'`)).toEqual([
      { n: 1 },
    ])
  })

  it('psycopg and pgjdbc with sslmode=require run their whole workload over TLS', async () => {
    const dev = await serve()
    const { port } = dev
    const runs = await Promise.all([
      runProcess('/usr/bin/python3', [`${CLIENTS_DIR}psycopg_check.py`, `${dev.url}?sslmode=require`, '2', '3'], {
        deadlineMs: 90_000,
      }),
      runProcess(
        'java',
        [
          '-cp',
          '/usr/share/java/postgresql.jar',
          `${CLIENTS_DIR}JdbcCheck.java`,
          `jdbc:postgresql://127.0.0.1:${port}/postgres?sslmode=require`,
          '2',
          '3',
        ],
        { deadlineMs: 90_000 },
      ),
    ])
    for (const run of runs) {
      const tally = JSON.parse(run.stdout.toString().trim().split('\n').pop() ?? '{}') as {
        queries: number
        ok: number
        errors: object
      }
      expect({ code: run.code, errors: tally.errors, allOk: tally.ok === tally.queries && tally.queries > 0 }).toEqual({
        code: 0,
        errors: {},
        allOk: true,
      })
    }
    const ssl = await runProcess('/usr/bin/python3', [
      '-c',
      'import psycopg,sys; print(psycopg.connect(sys.argv[1]).pgconn.ssl_in_use)',
      `${dev.url}?sslmode=require`,
    ])
    expect(ssl.stdout.toString().trim()).toBe('True')
  })

  it('the self-signed certificate covers localhost, 127.0.0.1 and ::1, and is kept for the next start', async () => {
    const first = await serve()
    const kept = await readFile(path.join(sharedCacheDir, 'tls', 'localhost.crt'), 'utf8')
    const x509 = new X509Certificate(kept)
    expect(x509.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
    const served = async (dev: DevDb) => {
      const socket = await tlsSocketTo(dev.port)
      const fingerprint = socket.getPeerX509Certificate()?.fingerprint256
      socket.destroy()
      return fingerprint
    }
    expect(await served(first)).toBe(x509.fingerprint256)
    await first.close()
    expect(await served(await serve())).toBe(x509.fingerprint256)
  })

  it('--tls-cert/--tls-key: the user certificate is served, and verify-full accepts it', async () => {
    const dir = await scratchDir('tls-own')
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      algorithm: 'sha256',
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
          ],
        },
      ],
    })
    const cert = path.join(dir, 'server.crt')
    const key = path.join(dir, 'server.key')
    await writeFile(cert, pems.cert)
    await writeFile(key, pems.private)
    const dev = await serve({ tlsCert: cert, tlsKey: key })
    const verified = new pg.Client({ connectionString: dev.url, ssl: { ca: pems.cert } })
    await verified.connect()
    onTestFinished(() => endClient(verified))
    expect((await verified.query('select 1 as one')).rows).toEqual([{ one: 1 }])
    expect(await psql(`${dev.url}?sslmode=verify-full&sslrootcert=${cert}`, 'select 2')).toEqual({
      code: 0,
      out: '2',
      err: '',
    })
    // The self-signed certificate of another server is not trusted by that root: verify-full refuses it.
    const other = await serve()
    const refused = await psql(`${other.url}?sslmode=verify-full&sslrootcert=${cert}`, 'select 3')
    expect(refused.code).toBe(2)
    expect(refused.err).toMatch(/certificate verify failed/)
  })

  it('a certificate without its key, or a key of another certificate, is ERR_CONFIG before anything opens', async () => {
    const dir = await scratchDir('tls-bad')
    const [a, b] = await Promise.all(
      [1, 2].map(() => generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' })),
    )
    await writeFile(path.join(dir, 'a.crt'), a!.cert)
    await writeFile(path.join(dir, 'b.key'), b!.private)
    await expect(startDevDb({ tlsCert: path.join(dir, 'a.crt') })).rejects.toMatchObject({
      code: 'ERR_CONFIG',
      message: expect.stringContaining("'tlsCert' needs the key too"),
    })
    await expect(
      startDevDb({ tlsCert: path.join(dir, 'a.crt'), tlsKey: path.join(dir, 'b.key') }),
    ).rejects.toMatchObject({ code: 'ERR_CONFIG', message: expect.stringContaining('is not the private key of') })
  })

  it("direct TLS (sslnegotiation=direct, PostgreSQL 17's): node-postgres and postgres.js connect, and ALPN says postgresql", async () => {
    const dev = await serve()
    const client = new pg.Client({
      connectionString: dev.url,
      ssl: { rejectUnauthorized: false },
      sslnegotiation: 'direct',
    } as pg.ClientConfig)
    await withDeadline(client.connect(), 10_000, 'node-postgres connects with direct TLS')
    onTestFinished(() => endClient(client))
    expect((await client.query('select $1::int + 1 as n', [41])).rows).toEqual([{ n: 42 }])
    const stream = (client as unknown as { connection: { stream: TLSSocket } }).connection.stream
    expect(stream.alpnProtocol).toBe('postgresql')
    const sql = postgres(dev.url, {
      ssl: 'require',
      sslnegotiation: 'direct',
      max: 1,
      onnotice: () => {},
    } as postgres.Options<Record<string, postgres.PostgresType>>)
    onTestFinished(() => sql.end({ timeout: 5 }))
    expect(
      await withDeadline(sql`select ${'direct'}::text as t`.execute(), 10_000, 'postgres.js connects with direct TLS'),
    ).toEqual([{ t: 'direct' }])
  })

  it('direct TLS without ALPN postgresql is closed without a word, as PostgreSQL 17 closes it', async () => {
    const dev = await serve()
    const secure = tlsConnect({ port: dev.port, host: '127.0.0.1', rejectUnauthorized: false })
    onTestFinished(() => {
      secure.destroy()
    })
    secure.on('error', () => {})
    const received: Buffer[] = []
    secure.on('data', (chunk: Buffer) => received.push(chunk))
    await withDeadline(once(secure, 'secureConnect'), 10_000, 'the TLS handshake')
    secure.write(wire.startup({ user: 'postgres', database: 'postgres' }))
    await withDeadline(once(secure, 'close'), 10_000, 'the server to close')
    expect(Buffer.concat(received)).toEqual(Buffer.alloc(0))
  })

  it('bytes sent in the clear after SSLRequest are FATAL 08P01, as Postgres answers them', async () => {
    const dev = await serve()
    const socket = net.connect(dev.port, '127.0.0.1')
    onTestFinished(() => {
      socket.destroy()
    })
    await once(socket, 'connect')
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    const closed = once(socket, 'close')
    socket.write(Buffer.concat([wire.sslRequest(), wire.startup({ user: 'postgres', database: 'postgres' })]))
    await withDeadline(closed, 10_000, 'the server to close')
    const reply = Buffer.concat(chunks)
    expect(String.fromCharCode(reply[0]!)).toBe('E')
    expect(wire.decodeError(reply.subarray(5))).toMatchObject({
      severity: 'FATAL',
      code: '08P01',
      message: 'received unencrypted data after SSL request',
    })
  })

  it('with tls: false SSLRequest is answered N: sslmode=require fails, prefer and disable connect in the clear', async () => {
    const dev = await serve({ tls: false })
    const required = await psql(`${dev.url}?sslmode=require`, 'select 1')
    expect(required.code).toBe(2)
    expect(required.err).toContain('server does not support SSL')
    const preferred = await psql(`${dev.url}?sslmode=prefer`, '\\conninfo')
    expect(preferred.code).toBe(0)
    expect(preferred.out).not.toContain('SSL')
  })
})

/** A TLS connection to the server, after the SSLRequest exchange, with the handshake done (any certificate taken). */
async function tlsSocketTo(port: number): Promise<TLSSocket> {
  const socket = net.connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(wire.sslRequest())
  const [answer] = (await withDeadline(once(socket, 'data'), 10_000, 'the answer to SSLRequest')) as [Buffer]
  expect(answer.toString()).toBe('S')
  const secure = tlsConnect({ socket, rejectUnauthorized: false })
  await withDeadline(once(secure, 'secureConnect'), 10_000, 'the TLS handshake')
  return secure
}
