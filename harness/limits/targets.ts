// The servers the limits are measured on: pglite-dev-db started fresh from the bin for each scenario (a child process,
// so its memory is its own VmRSS), and an existing PostgreSQL (PG_ORACLE_URL) whose memory is read from /proc when it
// runs on this machine: its postmaster, its helper processes and the backends of this script's clients, no others.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClosedError, StalledError, withDeadline, type RawClient } from '../raw-client.ts'
import { connectClient, MONITOR_APP } from './clients.ts'

export type TargetName = 'ours' | 'postgres'
export const TARGET_LABELS: Record<TargetName, string> = { ours: 'pglite-dev-db', postgres: 'PostgreSQL' }

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const OURS_BIN = `${REPO_ROOT}bin/pglite-dev-db.js`
const START_DEADLINE_MS = 90_000
/** What the brief asks of every run: SIGTERM, and SIGKILL 10 s later. */
const STOP_GRACE_MS = 10_000
const MONITOR_EVERY_MS = 1_000

export interface MemoryReading {
  /** VmRSS, summed over the processes that make up the server. */
  rssMb: number
  /** Proportional set size summed the same way: memory shared between processes counted once (PostgreSQL only). */
  pssMb?: number
  processes: number
}

export interface StopOutcome {
  /** How long after SIGTERM it exited (ms), or null when it had to be killed. */
  exitedAfterMs: number | null
  exitCode: number | null
  killed: boolean
  /** It was gone before it was asked to stop. */
  wasDead: boolean
}

export interface Target {
  name: TargetName
  url: string
  /** The server's process (PostgreSQL: its postmaster); null when it is not on this machine. */
  pid: number | null
  /** The server's memory now; null when it cannot be read from this machine. */
  readMemory(): MemoryReading | null
  /** Whether the server process still runs (PostgreSQL: its postmaster, when local). */
  isAlive(): boolean
  /** The last lines the server logged (ours), for the report of a failure. */
  tail(): string
  /** Ours: SIGTERM, then SIGKILL past 10 s. PostgreSQL is not ours to stop: null. */
  stop(): Promise<StopOutcome | null>
}

// --- /proc ---

function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES') return null
    throw error
  }
}

function kbField(text: string | null, key: string): number | null {
  if (text === null) return null
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)
  return match ? Number(match[1]) : null
}

export function rssKbOf(pid: number): number | null {
  return kbField(readProc(`/proc/${pid}/status`), 'VmRSS')
}

function pssKbOf(pid: number): number | null {
  return kbField(readProc(`/proc/${pid}/smaps_rollup`), 'Pss')
}

function parentOf(pid: number): number | null {
  const stat = readProc(`/proc/${pid}/stat`)
  if (stat === null) return null
  // The command name may hold spaces and parentheses: the fields start after its last ')'.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
}

// --- pglite-dev-db ---

/** Where ours keeps its databases: in memory (`--memory`), or in a fresh data dir removed after the scenario. */
export type Storage = 'memory' | 'data-dir'

export interface OursOptions {
  queueTimeoutMs?: number
  storage?: Storage
}

/** Runs `node bin/pglite-dev-db.js --memory --port 0 --no-tls` (or `--data-dir` a fresh directory); the URL is the only line it prints on stdout. */
export async function startOurs(options: OursOptions = {}): Promise<Target> {
  const dataDir = options.storage === 'data-dir' ? mkdtempSync(path.join(os.tmpdir(), 'limits-data-')) : null
  const args = [
    OURS_BIN,
    ...(dataDir ? ['--data-dir', dataDir] : ['--memory']),
    '--port',
    '0',
    '--no-tls',
    '--log-level',
    'warn',
  ]
  if (options.queueTimeoutMs !== undefined) args.push('--queue-timeout-ms', String(options.queueTimeoutMs))
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error('cannot start pglite-dev-db')
  const pid = child.pid
  running.add(child)
  const lines: string[] = []
  let exit: { code: number | null } | null = null
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code) => {
      exit = { code }
      running.delete(child)
      if (dataDir) rmSync(dataDir, { recursive: true, force: true })
      resolve()
    })
  })
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    lines.push(...text.split('\n').filter(Boolean))
    lines.splice(0, Math.max(0, lines.length - 40))
  })
  let stdout = ''
  const url = new Promise<string>((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      stdout += text
      const line = stdout.split('\n').find((l) => l.startsWith('postgres://'))
      if (line) resolve(line.trim())
    })
    child.once('exit', () => reject(new Error(`pglite-dev-db exited before printing its URL:\n${lines.join('\n')}`)))
  })
  let stopping: Promise<StopOutcome> | undefined
  const target: Target = {
    name: 'ours',
    url: '',
    pid,
    readMemory() {
      const kb = rssKbOf(pid)
      return kb === null ? null : { rssMb: kb / 1024, processes: 1 }
    },
    isAlive: () => exit === null,
    tail: () => lines.join('\n'),
    stop() {
      stopping ??= (async () => {
        if (exit !== null)
          return { exitedAfterMs: null, exitCode: (exit as { code: number | null }).code, killed: false, wasDead: true }
        const asked = performance.now()
        child.kill('SIGTERM')
        try {
          await withDeadline(exited, STOP_GRACE_MS, 'pglite-dev-db exit after SIGTERM')
          return {
            exitedAfterMs: Math.round(performance.now() - asked),
            exitCode: (exit as { code: number | null } | null)?.code ?? null,
            killed: false,
            wasDead: false,
          }
        } catch (error) {
          if (!(error instanceof StalledError)) throw error
          child.kill('SIGKILL')
          await withDeadline(exited, STOP_GRACE_MS, 'pglite-dev-db exit after SIGKILL')
          return { exitedAfterMs: null, exitCode: null, killed: true, wasDead: false }
        }
      })()
      return stopping
    },
  }
  try {
    target.url = await withDeadline(url, START_DEADLINE_MS, 'pglite-dev-db URL line')
  } catch (error) {
    await target.stop()
    throw error
  }
  return target
}

/** Servers of this run still running: killed at exit whatever happens. */
const running = new Set<ReturnType<typeof spawn>>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

// --- PostgreSQL ---

/**
 * An existing PostgreSQL. Its memory is the sum over its postmaster, the processes that are not client backends
 * (checkpointer, walwriter...) and the client backends of this script (application_name 'limits...'): other clients
 * of a shared server are left out. A monitor connection refreshes that list every second.
 */
export async function openOracle(url: string): Promise<{ target: Target; close(): Promise<void> }> {
  const monitor = await connectClient(url, { app: MONITOR_APP })
  const own = await monitor.query('select pg_backend_pid()')
  const backend = Number(own.rows[0]?.[0])
  const postmaster = parentOf(backend)
  const isLocal = postmaster !== null && (readProc(`/proc/${postmaster}/cmdline`) ?? '').includes('postgres')
  let pids: number[] = isLocal ? [postmaster] : []
  let closed = false
  let timer: NodeJS.Timeout | undefined
  const refresh = async (): Promise<void> => {
    const list = await monitor.query(
      `select pid from pg_stat_activity where backend_type <> 'client backend' or (application_name like 'limits%' and application_name <> '${MONITOR_APP}')`,
    )
    pids = [postmaster!, ...list.rows.map((r) => Number(r[0]))]
  }
  const loop = (): void => {
    timer = setTimeout(() => {
      refresh().then(
        () => !closed && loop(),
        (error: unknown) => {
          if (!closed)
            process.stderr.write(
              `limits: the PostgreSQL monitor failed (memory figures stop): ${(error as Error).message}\n`,
            )
        },
      )
    }, MONITOR_EVERY_MS)
  }
  if (isLocal) {
    await refresh()
    loop()
  }
  const target: Target = {
    name: 'postgres',
    url,
    pid: isLocal ? postmaster : null,
    readMemory() {
      if (!isLocal) return null
      let rssKb = 0
      let pssKb = 0
      let processes = 0
      for (const pid of pids) {
        const rss = rssKbOf(pid)
        if (rss === null) continue
        rssKb += rss
        pssKb += pssKbOf(pid) ?? 0
        processes++
      }
      return { rssMb: rssKb / 1024, pssMb: pssKb / 1024, processes }
    },
    isAlive: () => !isLocal || rssKbOf(postmaster!) !== null,
    tail: () => '',
    stop: async () => null,
  }
  return {
    target,
    async close() {
      closed = true
      clearTimeout(timer)
      await endQuietly(monitor)
    },
  }
}

/** Ends a raw client: Terminate and a bounded wait for the close; a client the server already closed is fine. */
export async function endQuietly(client: RawClient): Promise<void> {
  try {
    await client.end({ deadlineMs: 2_000 })
  } catch (error) {
    if (
      !(error instanceof ClosedError) &&
      (error as NodeJS.ErrnoException).code !== 'EPIPE' &&
      (error as NodeJS.ErrnoException).code !== 'ECONNRESET'
    )
      throw error
    client.destroy()
  }
}
