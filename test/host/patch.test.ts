// The installed @electric-sql/pglite-socket is our patched build (patches/, applied by the prepare script): by name, ESM
// and CJS, in process and through its pglite-server bin. The pglite-socket-stock alias must stay stock.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { realpathSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { PGlite } from '@electric-sql/pglite'
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'

const require = createRequire(import.meta.url)
const PACKAGE_DIR = fileURLToPath(new URL('../../node_modules/@electric-sql/pglite-socket/', import.meta.url))
const NOT_APPLIED =
  'the patch was not applied to node_modules/@electric-sql/pglite-socket: run `npm install` (or `npx patch-package`)'
/** Bounds waits on PGlite start-up (an in-memory initdb takes seconds on a loaded 2-core machine). */
const START_DEADLINE_MS = 45_000
const PGLITE_TIMEOUT = { timeout: 90_000 }

interface SocketModule {
  PATCHED_BY?: unknown
  PGLiteSocketServer?: unknown
}

function client(port: number): postgres.Sql {
  return postgres({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    max: 1,
    connect_timeout: 10,
    onnotice: () => {},
  })
}

function portOf(conn: string): number {
  const port = Number(conn.split(':').pop())
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in getServerConn() = ${JSON.stringify(conn)}`)
  return port
}

function deadline(ms: number, what: string): { promise: Promise<never>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms)),
  )
  return { promise, cancel: () => clearTimeout(timer) }
}

/** Resolves with the port from the bin's `PGLiteSocketServer listening on {...}` stdout line. */
function listeningPort(child: ChildProcess, output: string[]): Promise<number> {
  const limit = deadline(START_DEADLINE_MS, 'pglite-server start')
  const listening = new Promise<number>((resolve, reject) => {
    child.once('exit', (code, signal) =>
      reject(new Error(`pglite-server exited (${code ?? signal}) before listening:\n${output.join('\n')}`)),
    )
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line)
      const match = /^PGLiteSocketServer listening on (\{.*\})$/.exec(line)
      if (match) resolve((JSON.parse(match[1]!) as { port: number }).port)
    })
  })
  return Promise.race([listening, limit.promise]).finally(limit.cancel)
}

describe('patched @electric-sql/pglite-socket', () => {
  it('is the patched build when imported by name (ESM)', async () => {
    const esm = (await import('@electric-sql/pglite-socket')) as SocketModule
    expect(esm.PATCHED_BY, NOT_APPLIED).toBe('pglite-dev-db')
    expect(esm.PGLiteSocketServer).toBeTypeOf('function')
  })

  it('is the patched build when required by name (CJS)', () => {
    const cjs = require('@electric-sql/pglite-socket') as SocketModule
    expect(cjs.PATCHED_BY, NOT_APPLIED).toBe('pglite-dev-db')
    expect(cjs.PGLiteSocketServer).toBeTypeOf('function')
  })

  it('leaves the pglite-socket-stock alias stock (ESM and CJS)', async () => {
    const esm = (await import('pglite-socket-stock')) as SocketModule
    const cjs = require('pglite-socket-stock') as SocketModule
    for (const stock of [esm, cjs]) {
      expect(stock.PGLiteSocketServer).toBeTypeOf('function')
      expect(stock).not.toHaveProperty('PATCHED_BY')
    }
  })

  it('serves a real PGlite to postgres.js', PGLITE_TIMEOUT, async () => {
    const { PATCHED_BY, PGLiteSocketServer } =
      (await import('@electric-sql/pglite-socket')) as typeof import('@electric-sql/pglite-socket') & SocketModule
    expect(PATCHED_BY, NOT_APPLIED).toBe('pglite-dev-db')
    const db = new PGlite()
    try {
      const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0 })
      await server.start()
      try {
        const sql = client(portOf(server.getServerConn()))
        try {
          expect(await sql`select 1 as one`).toEqual([{ one: 1 }])
        } finally {
          await sql.end()
        }
      } finally {
        await server.stop()
      }
    } finally {
      await db.close()
    }
  })
})

describe('patched pglite-server bin', () => {
  it('is what node_modules/.bin/pglite-server runs (the stock alias declares the same bin name)', () => {
    const linked = realpathSync(fileURLToPath(new URL('../../node_modules/.bin/pglite-server', import.meta.url)))
    expect(linked).toBe(realpathSync(`${PACKAGE_DIR}dist/scripts/server.js`))
  })

  // server.cjs is not reachable by package name (the exports map has only "."), only by path; patched all the same.
  it.each(['server.js', 'server.cjs'])(
    'dist/scripts/%s serves two clients at once by default',
    PGLITE_TIMEOUT,
    async (bin) => {
      const child = spawn(process.execPath, [`${PACKAGE_DIR}dist/scripts/${bin}`, '--port', '0'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const output: string[] = []
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk.trimEnd()))
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      try {
        const port = await listeningPort(child, output)
        // Stock's default --max-connections 1 would drop the second socket before any reply.
        const a = client(port)
        const b = client(port)
        try {
          const [first, second] = await Promise.all([a.reserve(), b.reserve()])
          try {
            expect(await Promise.all([first`select 1 as n`, second`select 2 as n`])).toEqual([[{ n: 1 }], [{ n: 2 }]])
          } finally {
            first.release()
            second.release()
          }
        } finally {
          await Promise.all([a.end(), b.end()])
        }
        child.kill('SIGTERM')
        const limit = deadline(START_DEADLINE_MS, 'pglite-server shutdown')
        const [code, signal] = await Promise.race([exited, limit.promise]).finally(limit.cancel)
        expect({ code, signal }, output.join('\n')).toEqual({ code: 0, signal: null })
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      }
    },
  )
})
