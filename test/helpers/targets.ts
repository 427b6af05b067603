// The two servers every scenario runs against: stock pglite-socket 0.2.17 (unpatched, via the npm alias) and ours.
// Each start opens a fresh PGlite from the run's image (helpers/db.ts), listens on 127.0.0.1 port 0 and reads the
// port back.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer as StockServer } from 'pglite-socket-stock'
import { afterEach, inject } from 'vitest'
import { openTestDb } from './db.ts'
import { stopChild } from '../../harness/process.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'

import type { ServerOptions } from '../../harness/scenarios/outcome.ts'

export type { ServerOptions } from '../../harness/scenarios/outcome.ts'

/** The API both servers share, as far as tests use it. */
export interface SocketServer {
  start(): Promise<void>
  stop(): Promise<void>
  getServerConn(): string
  getStats(): Record<string, unknown>
}

export type TargetName = 'stock' | 'patched'

export interface RunningTarget {
  name: TargetName
  url: string
  host: string
  port: number
  /** Stops the server, closes the db, removes its data dir. Idempotent. */
  close(): Promise<void>
}

export interface InProcessTarget extends RunningTarget {
  db: PGlite
  server: SocketServer
}

export interface Target {
  name: TargetName
  /**
   * Server and PGlite in this process: fast, and `db`/`server` are at hand. A PGlite that dies in a busy loop
   * (stock after some inputs) blocks this thread too, and then no deadline fires: use spawn() for those.
   */
  start(options?: ServerOptions): Promise<InProcessTarget>
  /** Server and PGlite in a child process (~1 s slower): close() kills it if it stops answering. */
  spawn(options?: ServerOptions): Promise<RunningTarget>
}

type ServerConstructor = new (options: { db: PGlite; host: string; port: number } & ServerOptions) => SocketServer

/**
 * Stock's default `maxConnections` is 1, which would refuse the second client of every scenario and hide the
 * interleaving defects; 100 lets them show. A scenario that tests the cap passes its own value.
 */
const STOCK_MAX_CONNECTIONS = 100
const HOST = '127.0.0.1'
const CHILD_START_DEADLINE_MS = 30_000
const CHILD_STOP_DEADLINE_MS = 5_000

// Resolved at start() so this file type-checks and the stock half runs while src/server/server.ts is in flux.
const PATCHED_MODULE = new URL('../../src/server/server.ts', import.meta.url).href
const CHILD_SCRIPT = fileURLToPath(new URL('./target-process.ts', import.meta.url))
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

async function loadServer(name: TargetName): Promise<ServerConstructor> {
  if (name === 'stock') return StockServer as unknown as ServerConstructor
  const module = (await import(PATCHED_MODULE)) as { PGLiteSocketServer?: ServerConstructor }
  if (typeof module.PGLiteSocketServer !== 'function')
    throw new Error(`${PATCHED_MODULE} does not export PGLiteSocketServer`)
  return module.PGLiteSocketServer
}

function withDefaults(name: TargetName, options: ServerOptions): ServerOptions {
  return name === 'stock' ? { maxConnections: STOCK_MAX_CONNECTIONS, ...options } : options
}

function portOf(server: SocketServer): number {
  const port = Number(server.getServerConn().split(':').pop())
  if (!Number.isInteger(port) || port <= 0) throw new Error(`server did not report a port: ${server.getServerConn()}`)
  return port
}

const urlFor = (port: number) => `postgres://postgres@${HOST}:${port}/postgres`

/** Used by start() and by the child process behind spawn(), which names the image (it has no vitest to inject it). */
export async function startInProcess(
  name: TargetName,
  options: ServerOptions = {},
  imageDir?: string,
): Promise<InProcessTarget> {
  const Server = await loadServer(name)
  const testDb = await openTestDb(imageDir)
  let server: SocketServer
  try {
    server = new Server({ db: testDb.db, host: HOST, port: 0, ...withDefaults(name, options) })
    await server.start()
  } catch (error) {
    await testDb.close()
    throw error
  }
  const port = portOf(server)
  let closing: Promise<void> | undefined
  return {
    name,
    url: urlFor(port),
    host: HOST,
    port,
    db: testDb.db,
    server,
    close: () =>
      (closing ??= (async () => {
        try {
          await server.stop()
        } finally {
          await testDb.close()
        }
      })()),
  }
}

async function spawnTarget(name: TargetName, options: ServerOptions = {}): Promise<RunningTarget> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', CHILD_SCRIPT, name, inject('pgliteImageDir'), JSON.stringify(options)],
    {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  )
  const exited = once(child, 'exit')
  // Stock's PGlite is thrown away (it lives in memory), and one that died busy-loops the thread where the SIGTERM
  // handler would run: stock is killed outright instead of after CHILD_STOP_DEADLINE_MS.
  const signal = name === 'stock' ? 'SIGKILL' : 'SIGTERM'
  const stop = () =>
    stopChild(child, exited, () => child.kill(signal), CHILD_STOP_DEADLINE_MS, `target process exit after ${signal}`)
  try {
    const ready = new Promise<string>((resolve) => {
      let out = ''
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')))
      })
    })
    const died = exited.then(([code, signal]) => {
      throw new Error(`target process exited (${String(code ?? signal)}) before listening`)
    })
    const line = await withDeadline(Promise.race([ready, died]), CHILD_START_DEADLINE_MS, 'target process ready line')
    const { port } = JSON.parse(line) as { port: number }
    let closing: Promise<void> | undefined
    return { name, url: urlFor(port), host: HOST, port, close: () => (closing ??= stop()) }
  } catch (error) {
    await stop()
    throw error
  }
}

function target(name: TargetName): Target {
  return { name, start: (options) => startInProcess(name, options), spawn: (options) => spawnTarget(name, options) }
}

export const stock: Target = target('stock')
export const patched: Target = target('patched')
export const targets: Target[] = [stock, patched]

/** An in-process server of `target` and raw clients of it, for a test file: destroyed and closed after each test. */
export function useInProcessTarget(target: Target): {
  start(): Promise<InProcessTarget>
  connect(url: string): Promise<RawClient>
} {
  let server: InProcessTarget | undefined
  const clients: RawClient[] = []
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy()
    await server?.close()
    server = undefined
  })
  return {
    async start() {
      server = await target.start()
      return server
    },
    async connect(url) {
      const client = await connectRaw(url)
      clients.push(client)
      return client
    },
  }
}
