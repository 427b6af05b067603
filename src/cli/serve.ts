// The command's default: flags in, launchDevDb, the URL as the one line on stdout as soon as the port listens, logs on
// stderr; then, the database ready, serve until a signal, the database failing, or the --run command ending.

import { spawn } from 'node:child_process'
import { DevServerError } from '../errors.ts'
import { launchDevDb, type DevDb } from '../databases/dev-db.ts'
import { createLogger, lineSink, type Logger } from '../log.ts'
import { parseCliOptions, usage, type CliOptions } from './flags.ts'
import { ExitCode, type CliIo } from './io.ts'
import { findMigrations, type MigrationsLookup } from '../databases/migrations-dir.ts'
import { packageVersion } from './version.ts'

export async function serveCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let options: CliOptions
  const migrations = findMigrations(process.cwd())
  try {
    options = parseCliOptions(argv, io.env, migrations.dir)
  } catch (error) {
    if (!(error instanceof DevServerError)) throw error
    io.stderr(`pglite-dev-db: ${error.message}\n\n${usage()}`)
    return ExitCode.Usage
  }
  if (options.help) {
    io.stdout(usage())
    return ExitCode.Ok
  }
  if (options.version) {
    io.stdout(packageVersion())
    return ExitCode.Ok
  }

  const log = createLogger({ level: options.logLevel, sink: lineSink(options.logFormat, io.stderr) })
  logMigrations(log, options, migrations)
  let devDb: DevDb
  try {
    // The URL goes out as soon as the port listens: a client may connect at once, and waits for the database.
    const launched = await launchDevDb({ ...options.devDb, logger: log })
    const { host, password } = options.devDb
    if (!isLoopback(host) && !password)
      log.warn('listening beyond this machine without a password: anyone who can reach the port can use the database', {
        host,
      })
    io.stdout(launched.url)
    devDb = await launched.ready
  } catch (error) {
    // The one message a person needs, even with logging silenced.
    io.stderr(`pglite-dev-db: ${(error as Error).message}`)
    log.debug('start failed', { error, code: (error as DevServerError).code })
    return ExitCode.Failure
  }
  io.started?.()

  const outcome = await Promise.race([
    devDb.failed.then((error) => ({ kind: 'failed' as const, error })),
    io.stopSignal.then((signal) => ({ kind: 'signal' as const, signal })),
    options.run
      ? runCommand(options.run, devDb.url, io.env).then((status) => ({ kind: 'ran' as const, status }))
      : new Promise<never>(() => {}),
  ])
  if (outcome.kind === 'signal') log.info('stopping', { signal: outcome.signal })
  await devDb.close()
  // Exit 0 only once every database closed cleanly (every commit flushed); else 1, with a log line saying which.
  if (!devDb.stoppedCleanly) return ExitCode.Failure
  if (outcome.kind === 'failed') {
    log.error('database failed', { error: outcome.error })
    return ExitCode.Failure
  }
  return outcome.kind === 'ran' ? outcome.status : ExitCode.Ok
}

/** Say which migrations folder the start applies, and why that one, or that none was found. */
function logMigrations(log: Logger, options: CliOptions, found: MigrationsLookup): void {
  if (found.note) log.warn('drizzle config not followed', { reason: found.note })
  const dir = options.devDb.migrations
  if (dir === false || dir === undefined) {
    if (found.dir === null)
      log.info('no migrations folder found; serving an empty database', {
        looked: 'drizzle.config.* out, ./drizzle, ./migrations',
      })
    else log.info('migrations not applied (--no-migrations)', { dir: found.dir })
  } else if (dir === found.dir) {
    log.info('applying migrations', {
      dir,
      from: found.from === 'default' ? 'the first of ./drizzle, ./migrations that exists' : `out in ${found.from}`,
    })
  } else {
    log.info('applying migrations', { dir, from: '--migrations' })
  }
}

/** Run CMD through the shell with DATABASE_URL set; resolves with its exit status (128+n for a signal, as shells do). */
function runCommand(command: string, url: string, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(command, {
      shell: true,
      stdio: ['inherit', 'inherit', 'inherit'],
      env: { ...env, DATABASE_URL: url },
    })
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
