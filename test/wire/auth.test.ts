// Security options: a password checked with SCRAM-SHA-256 as Postgres checks it (psql, postgres.js and
// node-postgres log in unchanged; a wrong password is FATAL 28P01), and a Unix socket where `psql -h DIR` looks.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import postgres from 'postgres'
import { afterEach, describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { LIBPQ_ENV, runProcess } from '../../harness/process.ts'
import { connectRaw, withDeadline } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start } = useDevDbs()
const PASSWORD = 'sécret pass,word=1'
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })))
})

function psql(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runProcess('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', ...args], { env: { ...LIBPQ_ENV, ...env } })
}

describe('password (SCRAM-SHA-256)', () => {
  it('psql logs in with the right password and is refused with 28P01 for a wrong one', async () => {
    const dev = await start({ password: PASSWORD })
    const target = ['-h', '127.0.0.1', '-p', String(dev.port), '-U', 'postgres', '-d', 'postgres']
    const ok = await psql([...target, '-c', 'select 40 + 2'], { PGPASSWORD: PASSWORD })
    expect([ok.code, ok.stdout.toString().trim(), ok.stderr]).toEqual([0, '42', ''])

    const wrong = await psql([...target, '-c', 'select 1'], { PGPASSWORD: 'nope' })
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toContain('FATAL:  password authentication failed for user "postgres"')
    // libpq checked the server's signature too: it refuses a server that cannot prove it knows the password.
    expect(ok.stderr).not.toContain('SCRAM')
  })

  it('the URL carries the password; postgres.js and node-postgres use it, and a wrong one is 28P01 for each', async () => {
    const dev = await start({ password: PASSWORD })
    expect(dev.url).toBe(`postgres://postgres:${encodeURIComponent(PASSWORD)}@127.0.0.1:${dev.port}/postgres`)

    const sql = postgres(dev.url, { max: 2 })
    const client = new pg.Client({ connectionString: dev.url })
    try {
      expect(await withDeadline(sql`select current_user as u`.execute(), 5_000, 'postgres.js query')).toEqual([
        { u: 'postgres' },
      ])
      await withDeadline(client.connect(), 5_000, 'pg connect')
      expect((await client.query('select 1 as n')).rows).toEqual([{ n: 1 }])
    } finally {
      await sql.end({ timeout: 2 })
      await client.end()
    }

    const badUrl = dev.url.replace(encodeURIComponent(PASSWORD), 'wrong')
    const badSql = postgres(badUrl, { max: 1 })
    try {
      await expect(
        withDeadline(badSql`select 1`.execute(), 5_000, 'postgres.js with a wrong password'),
      ).rejects.toMatchObject({ code: '28P01' })
    } finally {
      await badSql.end({ timeout: 2 })
    }
    const badClient = new pg.Client({ connectionString: badUrl })
    await expect(withDeadline(badClient.connect(), 5_000, 'pg with a wrong password')).rejects.toMatchObject({
      code: '28P01',
    })
    await badClient.end()
  })

  it('a password with characters SASLprep maps (soft hyphen, no-break space) is accepted as libpq and node-postgres send it', async () => {
    const password = 'pass\u00ADword\u00A0x'
    const dev = await start({ password })
    const client = new pg.Client({
      host: '127.0.0.1',
      port: dev.port,
      user: 'postgres',
      database: 'postgres',
      password,
    })
    await withDeadline(client.connect(), 5_000, 'pg connect')
    expect((await client.query('select 1 as n')).rows).toEqual([{ n: 1 }])
    await client.end()
    const run = await psql(
      ['-h', '127.0.0.1', '-p', String(dev.port), '-U', 'postgres', '-d', 'postgres', '-c', 'select 2'],
      { PGPASSWORD: password },
    )
    expect([run.code, run.stdout.toString().trim(), run.stderr]).toEqual([0, '2', ''])
  })

  it('a client that skips authentication and sends a query gets FATAL 08P01 and is closed; the server goes on', async () => {
    const dev = await start({ password: PASSWORD })
    const client = await connectRaw(dev.url, { startup: false })
    await client.send(wire.startup({ user: 'postgres', database: 'postgres' }))
    const request = await client.next('Authentication')
    // AuthenticationSASL (10) offering SCRAM-SHA-256 only.
    expect([request.body.readInt32BE(0), request.body.subarray(4).toString()]).toEqual([10, 'SCRAM-SHA-256\0\0'])
    await client.send(wire.query('select 1'))
    const error = await client.next('ErrorResponse')
    expect(wire.decodeError(error.body)).toMatchObject({ severity: 'FATAL', code: '08P01' })
    await withDeadline(client.closed, 3_000, 'closed after the violation')

    await expect
      .poll(() => dev.server.getStats(), { timeout: 3_000 })
      .toMatchObject({ activeConnections: 0, sessionHeld: false })
    const sql = postgres(dev.url, { max: 1 })
    try {
      expect(await withDeadline(sql`select 1 as n`.execute(), 5_000, 'a client with the password, after')).toEqual([
        { n: 1 },
      ])
    } finally {
      await sql.end({ timeout: 2 })
    }
  })
})

describe('Unix socket', () => {
  it('psql -h DIR finds the server there; TCP and the socket share one database', async () => {
    const socketDir = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-sock-'))
    dirs.push(socketDir)
    const dev = await start({ socketDir })
    expect(dev.socketPath).toBe(path.join(socketDir, `.s.PGSQL.${dev.port}`))

    const viaTcp = await psql([
      '-h',
      '127.0.0.1',
      '-p',
      String(dev.port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      'create table shared (v text); insert into shared values ($$tcp$$)',
    ])
    expect(viaTcp.stderr).toBe('')
    const viaSocket = await psql([
      '-h',
      socketDir,
      '-p',
      String(dev.port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      "insert into shared values ('unix') returning (select count(*) from shared)",
    ])
    expect([viaSocket.code, viaSocket.stderr]).toEqual([0, ''])
    expect(viaSocket.stdout.toString().trim().split('\n')[0]).toBe('1')

    // postgres.js reaches it through the socket path too.
    const sql = postgres({ path: dev.socketPath!, user: 'postgres', database: 'postgres', max: 1 })
    try {
      expect(
        await withDeadline(
          sql`select string_agg(v, ',' order by v) as v from shared`.execute(),
          5_000,
          'postgres.js over the socket',
        ),
      ).toEqual([{ v: 'tcp,unix' }])
    } finally {
      await sql.end({ timeout: 2 })
    }

    await dev.close()
    await expect(stat(dev.socketPath!)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('a socket file left by a killed server is replaced; one a live server answers on is not taken', async () => {
    const socketDir = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-sock-'))
    dirs.push(socketDir)
    const port = await freePort()
    const socketPath = path.join(socketDir, `.s.PGSQL.${port}`)

    // A live listener on the path: starting fails with ERR_LISTEN, and leaves nothing on the TCP port.
    const squatter = net.createServer().listen(socketPath)
    await once(squatter, 'listening')
    const error = await start({ socketDir, port }).then(
      () => null,
      (e: unknown) => e,
    )
    expect(error).toMatchObject({
      code: 'ERR_LISTEN',
      message: expect.stringContaining('another server is listening there'),
    })
    await new Promise<void>((resolve) => squatter.close(() => resolve()))

    // A socket file whose process was killed (kill -9 leaves it behind): replaced.
    const killed = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`,
    ])
    await once(killed.stdout, 'data')
    killed.kill('SIGKILL')
    await once(killed, 'exit')
    expect((await stat(socketPath)).isSocket()).toBe(true)
    const dev = await start({ socketDir, port })
    const run = await psql([
      '-h',
      socketDir,
      '-p',
      String(dev.port),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      'select 7',
    ])
    expect([run.code, run.stdout.toString().trim(), run.stderr]).toEqual([0, '7', ''])
  })
})

/** A port that was free a moment ago: the kernel's pick for port 0, released at once. */
async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as net.AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}
