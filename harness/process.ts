// A client program (psql, pgbench, python3, java) run to completion with a bound: past its deadline it is killed
// and the wait fails with StalledError, so a server that stops answering cannot hang the test run.
import { spawn, type ChildProcess } from 'node:child_process'
import { StalledError, withDeadline } from './raw-client.ts'

export interface ProcessRun {
  code: number | null
  stdout: Buffer
  stderr: string
}

export interface ProcessOptions {
  deadlineMs?: number
  /** Written to stdin, which is then closed. */
  input?: Buffer | string
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/** libpq programs: no GSSAPI probe, and a bounded connect. */
export const LIBPQ_ENV: NodeJS.ProcessEnv = { PGGSSENCMODE: 'disable', PGCONNECT_TIMEOUT: '5' }

export async function runProcess(command: string, args: string[], options: ProcessOptions = {}): Promise<ProcessRun> {
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const stdout: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.on('error', () => {})
  child.stdin.end(options.input ?? '')
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  try {
    const code = await withDeadline(exited, options.deadlineMs ?? 20_000, `${command} ${args.join(' ').slice(0, 80)}`)
    return { code, stdout: Buffer.concat(stdout), stderr }
  } catch (error) {
    child.kill('SIGKILL')
    throw error
  }
}

/**
 * Ask a child to stop (`ask` sends the signal or closes its stdin), wait for `exited` up to `deadlineMs`, and kill it
 * with SIGKILL past that. Resolves once it has exited either way.
 */
export async function stopChild(
  child: ChildProcess,
  exited: Promise<unknown>,
  ask: () => void,
  deadlineMs: number,
  what: string,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  ask()
  try {
    await withDeadline(exited, deadlineMs, what)
  } catch (error) {
    if (!(error instanceof StalledError)) throw error
    child.kill('SIGKILL')
    await exited
  }
}
