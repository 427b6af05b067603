// Child processes and their cost: deadlines on every wait, servers spawned and stopped (SIGKILL when they do not
// stop), what they use read from /proc, and a cleanup list that runs however the benchmark ends.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'

export class StalledError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`)
    this.name = 'StalledError'
  }
}

/** Bounds a wait; the deadline never orders events, it only ends waits that would otherwise hang. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StalledError(what, ms)), ms)
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as net.AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}

// --- Cleanup: async on the normal path, synchronous from process 'exit' as the last resort ---

interface Resource {
  release(): Promise<void>
  releaseNow(): void
}

const resources = new Set<Resource>()

export interface Tracked {
  /** Undo it now, unless that already happened. */
  release(): Promise<void>
  /** It was undone some other way: nothing left to do at the end. */
  forget(): void
}

/** Track something to undo at the end (releaseAll, or synchronously at exit). */
export function track(release: () => Promise<void>, releaseNow: () => void): Tracked {
  const resource: Resource = { release, releaseNow }
  resources.add(resource)
  return {
    async release() {
      if (resources.delete(resource)) await release()
    },
    forget: () => resources.delete(resource),
  }
}

export function trackDir(dir: string): Tracked {
  const remove = () => rmSync(dir, { recursive: true, force: true })
  return track(async () => remove(), remove)
}

/** Undo everything still tracked, newest first. */
export async function releaseAll(): Promise<void> {
  for (const resource of [...resources].reverse()) {
    resources.delete(resource)
    try {
      await resource.release()
    } catch (error) {
      process.stderr.write(`bench: cleanup failed, forcing: ${(error as Error).message}\n`)
      resource.releaseNow()
    }
  }
}

process.on('exit', () => {
  for (const resource of [...resources].reverse()) resource.releaseNow()
})

// --- Servers in child processes ---

export interface ServerProcess {
  child: ChildProcess
  pid: number
  /** The last lines the process wrote (stdout and stderr), for error reports. */
  tail(): string
  /** Resolves with the first output line that `match` accepts. */
  waitForLine(match: (line: string) => boolean, ms: number, what: string): Promise<string>
  /** Signal, wait up to `ms`, then SIGKILL; idempotent. */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<void>
}

const TAIL_LINES = 30

export function spawnServer(
  command: string,
  args: string[],
  options: SpawnOptions & { stopNow?: NodeJS.Signals } = {},
): ServerProcess {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error(`cannot start ${command}`)
  const lines: string[] = []
  const watchers = new Set<(line: string) => void>()
  let spawnError: Error | null = null
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('exit', (code, signal) => resolve([code, signal]))
    child.once('error', (error) => {
      spawnError = error
      resolve([null, null])
    })
  })
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = ''
    stream.on('data', (chunk: Buffer) => {
      const parts = (partial + chunk.toString()).split('\n')
      partial = parts.pop() ?? ''
      for (const line of parts) {
        lines.push(line)
        if (lines.length > TAIL_LINES) lines.shift()
        for (const watcher of watchers) watcher(line)
      }
    })
  }
  let stopping: Promise<void> | null = null
  const tracked = track(
    async () => {
      await stop()
    },
    () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(options.stopNow ?? 'SIGKILL')
    },
  )
  const stop = (signal: NodeJS.Signals = 'SIGTERM', ms = 10_000): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal)
        try {
          await withDeadline(exited, ms, `${command} exit after ${signal}`)
        } catch (error) {
          if (!(error instanceof StalledError)) throw error
          child.kill('SIGKILL')
          await withDeadline(exited, 5_000, `${command} exit after SIGKILL`)
        }
      }
      tracked.forget()
    })()
    return stopping
  }
  return {
    child,
    pid: child.pid,
    tail: () => lines.join('\n'),
    waitForLine(match, ms, what) {
      const seen = new Promise<string>((resolve) => {
        const watcher = (line: string) => {
          if (!match(line)) return
          watchers.delete(watcher)
          resolve(line)
        }
        watchers.add(watcher)
      })
      const gone = exited.then(([code, signal]): never => {
        throw new Error(
          `${what}: the process exited (${String(code ?? signal ?? spawnError?.message)}):\n${lines.join('\n')}`,
        )
      })
      const found = Promise.race([seen, gone])
      return withDeadline(found, ms, what)
    },
    stop,
  }
}

// --- /proc: memory and CPU of a server (one process, or a PostgreSQL postmaster and its children) ---

export const CLOCK_TICKS_PER_SECOND = 100 // getconf CLK_TCK on Linux

interface ProcStat {
  ppid: number
  /** utime + stime of the process itself. */
  ownTicks: number
  /** cutime + cstime: children it has reaped (PostgreSQL backends that ended). */
  reapedTicks: number
}

function readStat(pid: number, path = `/proc/${pid}/stat`): ProcStat | null {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ESRCH')
      return null
    throw error
  }
  // The command name (field 2) may contain spaces and parentheses: split after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  const field = (n: number) => Number(fields[n - 3])
  return { ppid: field(4), ownTicks: field(14) + field(15), reapedTicks: field(16) + field(17) }
}

function readKb(path: string, key: string): number {
  try {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(path, 'utf8'))
    return match ? Number(match[1]) : 0
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ESRCH')
      return 0
    throw error
  }
}

function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if (readStat(Number(name))?.ppid === pid) children.push(Number(name))
  }
  return children
}

export interface Usage {
  /** Resident set (kB): VmRSS of the one process, or the sum over a postmaster and its children. */
  rssKb: number
  /** CPU time (s) used so far, including children that have ended. */
  cpuSeconds: number
  /** Of that, the process's main thread's (a Node server's event loop); absent for a process tree. */
  mainThreadCpuSeconds?: number
}

/** Usage of `pid` and, with `withChildren`, of its live children (PostgreSQL's backends). */
export function usageOf(pid: number, withChildren = false): Usage {
  const pids = withChildren ? [pid, ...childrenOf(pid)] : [pid]
  let rssKb = 0
  let ticks = 0
  for (const p of pids) {
    const stat = readStat(p)
    if (!stat) continue
    ticks += stat.ownTicks + (p === pid ? stat.reapedTicks : 0)
    rssKb += readKb(`/proc/${p}/status`, 'VmRSS')
  }
  if (withChildren) return { rssKb, cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND }
  const main = readStat(pid, `/proc/${pid}/task/${pid}/stat`)
  return {
    rssKb,
    cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND,
    ...(main ? { mainThreadCpuSeconds: main.ownTicks / CLOCK_TICKS_PER_SECOND } : {}),
  }
}

/** Proportional set size (kB) over the process tree: shared memory counted once, not once per backend. */
export function pssOf(pid: number, withChildren = false): number {
  const pids = withChildren ? [pid, ...childrenOf(pid)] : [pid]
  return pids.reduce((sum, p) => sum + readKb(`/proc/${p}/smaps_rollup`, 'Pss'), 0)
}
