// `pglite-dev-db snapshot FILE [--data-dir DIR] [--extensions LIST]`: write a stopped server's data dir to FILE.
// Prints FILE's absolute path on stdout; exit 1 if a server holds the data dir (the message names its pid).

import { resolve } from 'node:path'
import { ExitCode, type CliIo } from './io.ts'
import { DevServerError } from '../errors.ts'
import { createLogger, isLogLevel, lineSink, type LogFormat } from '../log.ts'
import { DEFAULT_DATA_DIR, envName, parseExtensions } from './flags.ts'
import { writeSnapshot } from '../databases/snapshot.ts'

const FLAGS = ['data-dir', 'extensions', 'log-level', 'log-format'] as const
type SnapshotFlag = (typeof FLAGS)[number]

export function snapshotUsage(): string {
  return [
    'Usage: pglite-dev-db snapshot FILE [--data-dir DIR] [--extensions LIST]',
    '',
    'Writes the database in DIR to FILE as a gzip tarball, for `pglite-dev-db --from-snapshot FILE`.',
    "The server using DIR must be stopped first: a running server's files are not a consistent database.",
    '',
    `  --data-dir DIR        the data dir to snapshot (default: ${DEFAULT_DATA_DIR})`,
    '  --extensions LIST     extensions the database needs loaded to start (default: none)',
    '  --log-level LEVEL     silent, error, warn, info, debug or trace (default: info)',
    '  --log-format FORMAT   pretty or json (default: pretty)',
    '',
    'Each option is also read from PGLITE_DEV_DB_<NAME>, e.g. PGLITE_DEV_DB_DATA_DIR.',
  ].join('\n')
}

export async function snapshotCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let parsed: { file: string | null; values: Map<SnapshotFlag, string>; help: boolean }
  let extensions: string[]
  try {
    parsed = parseArgs(argv, io.env)
    extensions = parseExtensions(parsed.values.get('extensions'))
  } catch (error) {
    if (!(error instanceof DevServerError)) throw error
    io.stderr(`pglite-dev-db snapshot: ${error.message}\n\n${snapshotUsage()}`)
    return ExitCode.Usage
  }
  if (parsed.help) {
    io.stdout(snapshotUsage())
    return ExitCode.Ok
  }
  const level = parsed.values.get('log-level') ?? 'info'
  const format = parsed.values.get('log-format') ?? 'pretty'
  if (!isLogLevel(level) || (format !== 'pretty' && format !== 'json') || parsed.file === null) {
    const problem =
      parsed.file === null
        ? 'the snapshot FILE is missing'
        : !isLogLevel(level)
          ? `bad --log-level '${level}'`
          : `bad --log-format '${format}'`
    io.stderr(`pglite-dev-db snapshot: ${problem}\n\n${snapshotUsage()}`)
    return ExitCode.Usage
  }
  const log = createLogger({ level, sink: lineSink(format as LogFormat, io.stderr) })
  const file = resolve(parsed.file)
  try {
    await writeSnapshot(resolve(parsed.values.get('data-dir') ?? DEFAULT_DATA_DIR), file, { extensions, log })
  } catch (error) {
    io.stderr(`pglite-dev-db snapshot: ${(error as Error).message}`)
    log.debug('snapshot failed', { error, code: (error as DevServerError).code })
    return ExitCode.Failure
  }
  io.stdout(file)
  return ExitCode.Ok
}

function parseArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): { file: string | null; values: Map<SnapshotFlag, string>; help: boolean } {
  const values = new Map<SnapshotFlag, string>()
  for (const flag of FLAGS) {
    const fromEnv = env[envName(flag)]
    if (fromEnv !== undefined && fromEnv !== '') values.set(flag, fromEnv)
  }
  let file: string | null = null
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help') {
      help = true
      continue
    }
    if (!arg.startsWith('--')) {
      if (file !== null) throw new DevServerError('ERR_CONFIG', `unexpected argument '${arg}' (one FILE only)`)
      file = arg
      continue
    }
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    const flag = FLAGS.find((f) => f === name)
    if (!flag) throw new DevServerError('ERR_CONFIG', `unknown option '--${name}'`)
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || (eq < 0 && value.startsWith('--')))
      throw new DevServerError('ERR_CONFIG', `option '--${name}' needs a value`)
    values.set(flag, value)
  }
  return { file, values, help }
}
