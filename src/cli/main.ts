// The pglite-dev-db command: flags in, the URL as the one line on stdout, logs on stderr, an exit status out.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { DevServerError } from '../errors.ts'
import { createLogger, lineSink } from '../log.ts'
import { DEFAULT_MIGRATIONS_DIR, parseCliOptions, usage, type CliOptions } from './flags.ts'
import { startDevDb, type DevDb } from '../host/dev-db.ts'
import { snapshotCommand } from './snapshot.ts'
import { traceCommand } from './trace-view.ts'

export interface CliIo {
  env: NodeJS.ProcessEnv
  stdout: (line: string) => void
  stderr: (line: string) => void
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM in the real CLI). */
  stopSignal: Promise<string>
}

export { collectGarbageSoon } from '../host/engine/collect-garbage.ts'

export const ExitCode = { Ok: 0, Failure: 1, Usage: 2 } as const

/** Run the CLI. Returns the exit status; only the bin shim calls process.exit. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  if (argv[0] === 'snapshot') return snapshotCommand(argv.slice(1), io)
  if (argv[0] === 'trace') return traceCommand(argv.slice(1), io)
  let options: CliOptions
  try {
    options = parseCliOptions(argv, io.env, existsSync(DEFAULT_MIGRATIONS_DIR) ? DEFAULT_MIGRATIONS_DIR : null)
  } catch (error) {
    if (!(error instanceof DevServerError)) throw error
    io.stderr(`pglite-dev-db: ${error.message}\n\n${usage()}`)
    return ExitCode.Usage
  }
  if (options.help) {
    io.stdout(usage())
    return ExitCode.Ok
  }

  const log = createLogger({ level: options.logLevel, sink: lineSink(options.logFormat, io.stderr) })
  let devDb: DevDb
  try {
    devDb = await startDevDb({
      host: options.host,
      port: options.port,
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...(options.migrations ? { migrations: options.migrations } : {}),
      maxConnections: options.maxConnections,
      idleInTransactionTimeoutMs: options.idleInTransactionTimeoutMs,
      idleTimeoutMs: options.idleTimeoutMs,
      queueTimeoutMs: options.queueTimeoutMs,
      ...(options.password ? { password: options.password } : {}),
      ...(options.socketDir ? { socketDir: options.socketDir } : {}),
      ...(options.trace ? { trace: options.trace } : {}),
      ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
      template: options.template,
      databaseThreads: options.databaseThreads,
      ...(options.extensions.length > 0 ? { extensions: options.extensions } : {}),
      ...(options.fromSnapshot ? { fromSnapshot: options.fromSnapshot } : {}),
      progressAfterMs: options.progressAfterMs,
      logger: log,
    })
  } catch (error) {
    // The one message a person needs, even with logging silenced.
    io.stderr(`pglite-dev-db: ${(error as Error).message}`)
    log.debug('start failed', { error, code: (error as DevServerError).code })
    return ExitCode.Failure
  }
  if (!isLoopback(options.host) && !options.password) log.warn('listening beyond this machine without a password: anyone who can reach the port can use the database', { host: options.host })
  io.stdout(devDb.url)

  const outcome = await Promise.race([
    devDb.failed.then((error) => ({ kind: 'failed' as const, error })),
    io.stopSignal.then((signal) => ({ kind: 'signal' as const, signal })),
    options.run ? runCommand(options.run, devDb.url, io.env).then((status) => ({ kind: 'ran' as const, status })) : new Promise<never>(() => {}),
  ])
  if (outcome.kind === 'signal') log.info('stopping', { signal: outcome.signal })
  await devDb.close()
  if (outcome.kind === 'failed') {
    log.error('database failed', { error: outcome.error })
    return ExitCode.Failure
  }
  return outcome.kind === 'ran' ? outcome.status : ExitCode.Ok
}

/** Run CMD through the shell with DATABASE_URL set; resolves with its exit status (128+n for a signal, as shells do). */
function runCommand(command: string, url: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, { shell: true, stdio: ['inherit', 'inherit', 'inherit'], env: { ...env, DATABASE_URL: url } })
    child.on('error', () => resolve(127))
    child.on('exit', (code, signal) => resolve(code ?? 128 + signalNumber(signal)))
  })
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === 'SIGINT' ? 2 : signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1' || host.startsWith('127.')
}
