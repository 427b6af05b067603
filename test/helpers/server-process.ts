// startDevDb in a child process (dev-db-process.ts) for load tests: the server's memory, descriptors and stats are
// read apart from the test's own clients, and its descriptor limit is its own. Every request is bounded.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { DevDbOptions } from '../../src/databases/dev-db.ts'
import { copyTemplate, removeDataDir } from './db.ts'
import { stopChild } from '../../harness/process.ts'
import { withDeadline } from '../../harness/raw-client.ts'

const CHILD_SCRIPT = fileURLToPath(new URL('./dev-db-process.ts', import.meta.url))
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const START_DEADLINE_MS = 30_000
const REQUEST_DEADLINE_MS = 10_000
const STOP_DEADLINE_MS = 10_000

export interface ServerStats {
  activeConnections: number
  queuedQueries: number
  waitingClients: number
  sessionHeld: boolean
  [name: string]: unknown
}

export interface ServerMemory {
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
  /** True when the child ran a full GC first (it runs with --expose-gc). */
  isCollected: boolean
}

export interface ServerProcess {
  url: string
  port: number
  pid: number
  stats(): Promise<ServerStats>
  /** process.memoryUsage() in the server process, after a full GC. */
  memory(): Promise<ServerMemory>
  /** Open file descriptors of the server process, from /proc. */
  fdCount(): number
  /** Closes the server (bounded; killed past the deadline) and removes its data dir. Idempotent. */
  close(): Promise<void>
}

/** Options that cross the process boundary (JSON): everything but the logger. */
export type ServerProcessOptions = Omit<DevDbOptions, 'logger' | 'dataDir' | 'port' | 'host'>

export async function spawnDevDb(options: ServerProcessOptions = {}): Promise<ServerProcess> {
  const dataDir = await copyTemplate()
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', CHILD_SCRIPT, dataDir, JSON.stringify(options)],
    {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  )
  const exited = once(child, 'exit')
  const lines = createInterface({ input: child.stdout })
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  let first: ((line: string) => void) | undefined
  lines.on('line', (line) => {
    if (first) return first(line)
    const reply = JSON.parse(line) as { id: number; value?: unknown; error?: string }
    const waiter = pending.get(reply.id)
    pending.delete(reply.id)
    if (reply.error !== undefined) waiter?.reject(new Error(`server process: ${reply.error}`))
    else waiter?.resolve(reply.value)
  })
  let nextId = 1
  const request = <T>(op: string): Promise<T> => {
    const id = nextId++
    const reply = new Promise<T>((resolve, reject) =>
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject }),
    )
    child.stdin.write(`${JSON.stringify({ id, op })}\n`)
    return withDeadline(reply, REQUEST_DEADLINE_MS, `server process ${op}`)
  }
  let closing: Promise<void> | undefined
  const stop = async () => {
    await stopChild(child, exited, () => child.stdin.end(), STOP_DEADLINE_MS, 'server process exit after stdin closed')
    await removeDataDir(dataDir)
  }
  try {
    const ready = new Promise<string>((resolve) => (first = resolve))
    const died = exited.then(([code, signal]) => {
      throw new Error(`server process exited (${String(code ?? signal)}) before listening`)
    })
    const line = await withDeadline(Promise.race([ready, died]), START_DEADLINE_MS, 'server process ready line')
    first = undefined
    const { url, port, pid } = JSON.parse(line) as { url: string; port: number; pid: number }
    return {
      url,
      port,
      pid,
      stats: () => request<ServerStats>('stats'),
      memory: () => request<ServerMemory>('memory'),
      fdCount: () => readdirSync(`/proc/${pid}/fd`).length,
      close: () => (closing ??= stop()),
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/** The soft and hard RLIMIT_NOFILE of a process, from /proc/<pid>/limits. */
export function openFileLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  const [soft, hard] = (line ?? '').replace('Max open files', '').trim().split(/\s+/)
  const parse = (value: string | undefined) => (value === 'unlimited' ? Infinity : Number(value))
  return { soft: parse(soft), hard: parse(hard) }
}
