// Options: one table drives the CLI flags, their environment twins, --help and validation.

import { DevServerError } from '../errors.ts'
import { resolveExtensionNames } from '../host/extensions.ts'
import { isLogLevel, type LogFormat, type LogLevel } from '../log.ts'
import { DEFAULT_PROGRESS_AFTER_MS } from '../host/progress.ts'
import { DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT_MS } from '../socket/server.ts'

export const DEFAULT_DATA_DIR = '.pglite-dev-db/data'
export const DEFAULT_MIGRATIONS_DIR = 'migrations'
export const ENV_PREFIX = 'PGLITE_DEV_DB_'

type FlagType = 'string' | 'integer' | 'boolean'
interface Flag {
  name: string
  type: FlagType
  help: string
  value?: string
  defaultText?: string
}

export const FLAGS: readonly Flag[] = [
  { name: 'host', type: 'string', value: 'HOST', help: 'address to listen on', defaultText: '127.0.0.1' },
  { name: 'port', type: 'integer', value: 'PORT', help: 'port to listen on; 0 picks a free one', defaultText: '5432' },
  { name: 'data-dir', type: 'string', value: 'PATH', help: 'where the database lives between runs', defaultText: DEFAULT_DATA_DIR },
  { name: 'memory', type: 'boolean', help: 'keep the database in memory only; nothing is written to disk' },
  { name: 'migrations', type: 'string', value: 'DIR', help: 'drizzle-kit migrations folder applied before listening', defaultText: `./${DEFAULT_MIGRATIONS_DIR} when present` },
  { name: 'no-migrations', type: 'boolean', help: 'do not apply any migrations' },
  { name: 'cache-dir', type: 'string', value: 'DIR', help: 'where migrated templates are kept; a fresh database copies one instead of initdb + migrations', defaultText: 'node_modules/.cache/pglite-dev-db' },
  { name: 'no-template', type: 'boolean', help: 'build a fresh database with initdb and every migration, without the template' },
  { name: 'no-database-threads', type: 'boolean', help: 'run every database in the server\'s thread (by default each database after the first one a client names gets a worker thread)' },
  { name: 'extensions', type: 'string', value: 'LIST', help: 'extensions to load, comma-separated (vector,pgcrypto,...); a database that has one needs it at every start', defaultText: 'none' },
  { name: 'from-snapshot', type: 'string', value: 'FILE', help: 'start from a snapshot (pglite-dev-db snapshot): with --memory, or into a data dir that holds no database yet' },
  { name: 'password', type: 'string', value: 'PASSWORD', help: 'clients must log in with this password (SCRAM-SHA-256); it appears in the printed URL', defaultText: 'none' },
  { name: 'socket-dir', type: 'string', value: 'DIR', help: 'also listen on DIR/.s.PGSQL.PORT, where psql -h DIR looks' },
  { name: 'max-connections', type: 'integer', value: 'N', help: 'clients past this get FATAL 53300', defaultText: String(DEFAULT_MAX_CONNECTIONS) },
  {
    name: 'idle-in-transaction-timeout-ms',
    type: 'integer',
    value: 'MS',
    help: 'reap a client that holds the session idle this long (FATAL 25P03); 0 = never',
    defaultText: String(DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS),
  },
  {
    name: 'queue-timeout-ms',
    type: 'integer',
    value: 'MS',
    help: 'a statement that waits this long for another client\'s transaction fails with 55P03; 0 = never',
    defaultText: String(DEFAULT_QUEUE_TIMEOUT_MS),
  },
  { name: 'idle-timeout-ms', type: 'integer', value: 'MS', help: 'close clients at rest after this long (FATAL 57P05); 0 = never', defaultText: '0' },
  { name: 'progress-after-ms', type: 'integer', value: 'MS', help: 'a start-up step running this long logs a line naming it; 0 = every step', defaultText: String(DEFAULT_PROGRESS_AFTER_MS) },
  { name: 'trace', type: 'string', value: 'FILE', help: 'record every message of every client as JSON lines in FILE; read it with `pglite-dev-db trace view FILE`' },
  { name: 'log-level', type: 'string', value: 'LEVEL', help: 'silent, error, warn, info, debug or trace', defaultText: 'info' },
  { name: 'log-format', type: 'string', value: 'FORMAT', help: 'pretty or json (logs go to stderr)', defaultText: 'pretty' },
  { name: 'run', type: 'string', value: 'CMD', help: 'start, run CMD with DATABASE_URL set, stop, exit with its status' },
  { name: 'help', type: 'boolean', help: 'show this help' },
]

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_')
}

export function usage(): string {
  const rows = FLAGS.map((f) => {
    const left = `  --${f.name}${f.value ? ` ${f.value}` : ''}`
    const right = f.help + (f.defaultText ? ` (default: ${f.defaultText})` : '')
    return `${left.padEnd(42)}${right}`
  })
  return [
    'Usage: pglite-dev-db [options]',
    '       pglite-dev-db snapshot FILE [--data-dir DIR] [--extensions LIST]',
    '       pglite-dev-db trace view FILE [--conn ID ...]   (a --trace file as a timeline, one lane per connection)',
    '',
    'A Postgres server for development and CI: many clients share one PGlite, each sees a real Postgres.',
    'Prints the connection URL on stdout once ready; logs go to stderr.',
    '',
    'Options (each also read from the environment as PGLITE_DEV_DB_<NAME>, e.g. PGLITE_DEV_DB_PORT):',
    ...rows,
  ].join('\n')
}

export interface CliOptions {
  host: string
  port: number
  dataDir: string | null
  migrations: string | null
  maxConnections: number
  idleInTransactionTimeoutMs: number
  idleTimeoutMs: number
  queueTimeoutMs: number
  password: string | null
  socketDir: string | null
  trace: string | null
  cacheDir: string | null
  template: boolean
  databaseThreads: boolean
  extensions: string[]
  fromSnapshot: string | null
  progressAfterMs: number
  logLevel: LogLevel
  logFormat: LogFormat
  run: string | null
  help: boolean
}

const EXCLUSIVE_PAIRS: ReadonlyArray<[string, string]> = [
  ['memory', 'data-dir'],
  ['no-migrations', 'migrations'],
]

function configError(message: string): DevServerError {
  return new DevServerError('ERR_CONFIG', message)
}

/** Parse argv plus environment twins into validated options. Flags win over the environment. Throws ERR_CONFIG. */
export function parseCliOptions(argv: readonly string[], env: NodeJS.ProcessEnv, migrationsDefault: string | null): CliOptions {
  const values = new Map<string, string | boolean>()
  for (const flag of FLAGS) {
    const fromEnv = env[envName(flag.name)]
    if (fromEnv !== undefined && fromEnv !== '') values.set(flag.name, flag.type === 'boolean' ? parseBoolean(flag.name, fromEnv) : fromEnv)
  }
  const onCommandLine = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) throw configError(`unexpected argument '${arg}'`)
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    const flag = FLAGS.find((f) => f.name === name)
    if (!flag) throw configError(`unknown option '--${name}'`)
    onCommandLine.add(name)
    if (flag.type === 'boolean') {
      if (eq >= 0) throw configError(`option '--${name}' takes no value`)
      values.set(name, true)
      continue
    }
    let value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || (eq < 0 && value.startsWith('--'))) throw configError(`option '--${name}' needs a value (${flag.value})`)
    values.set(name, value)
  }
  // A flag wins over its opposite's environment twin too: `--data-dir d` with PGLITE_DEV_DB_MEMORY=1 means d.
  for (const [a, b] of EXCLUSIVE_PAIRS) {
    if (onCommandLine.has(a) && !onCommandLine.has(b)) values.delete(b)
    if (onCommandLine.has(b) && !onCommandLine.has(a)) values.delete(a)
  }
  const str = (name: string): string | undefined => values.get(name) as string | undefined
  const int = (name: string, fallback: number): number => {
    const raw = str(name)
    if (raw === undefined) return fallback
    if (!/^\d+$/.test(raw)) throw configError(`option '--${name}' must be a whole number, got '${raw}'`)
    return Number(raw)
  }
  const timeout = (name: string, fallback: number): number => {
    const ms = int(name, fallback)
    // Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer one would fire at once.
    if (ms > 2 ** 31 - 1) throw configError(`option '--${name}' must be at most 2147483647, got ${ms}`)
    return ms
  }
  const port = int('port', 5432)
  if (port > 65535) throw configError(`option '--port' must be 0-65535, got ${port}`)
  const logLevel = str('log-level') ?? 'info'
  if (!isLogLevel(logLevel)) throw configError(`option '--log-level' must be silent, error, warn, info, debug or trace, got '${logLevel}'`)
  const logFormat = str('log-format') ?? 'pretty'
  if (logFormat !== 'pretty' && logFormat !== 'json') throw configError(`option '--log-format' must be pretty or json, got '${logFormat}'`)
  if (values.get('memory') === true && str('data-dir') !== undefined) throw configError(`options '--memory' and '--data-dir' exclude each other`)
  if (values.get('no-migrations') === true && str('migrations') !== undefined) throw configError(`options '--migrations' and '--no-migrations' exclude each other`)
  if (str('password') === '') throw configError(`option '--password' must not be empty`)
  const extensions = parseExtensions(str('extensions'))
  if (str('trace') === '') throw configError(`option '--trace' must not be empty`)
  const maxConnections = int('max-connections', DEFAULT_MAX_CONNECTIONS)
  if (maxConnections < 1) throw configError(`option '--max-connections' must be at least 1`)
  return {
    host: str('host') ?? '127.0.0.1',
    port,
    dataDir: values.get('memory') === true ? null : (str('data-dir') ?? DEFAULT_DATA_DIR),
    migrations: values.get('no-migrations') === true ? null : (str('migrations') ?? migrationsDefault),
    maxConnections,
    idleInTransactionTimeoutMs: timeout('idle-in-transaction-timeout-ms', DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS),
    idleTimeoutMs: timeout('idle-timeout-ms', 0),
    queueTimeoutMs: timeout('queue-timeout-ms', DEFAULT_QUEUE_TIMEOUT_MS),
    password: str('password') ?? null,
    socketDir: str('socket-dir') ?? null,
    trace: str('trace') ?? null,
    cacheDir: str('cache-dir') ?? null,
    template: values.get('no-template') !== true,
    databaseThreads: values.get('no-database-threads') !== true,
    extensions,
    fromSnapshot: str('from-snapshot') ?? null,
    progressAfterMs: timeout('progress-after-ms', DEFAULT_PROGRESS_AFTER_MS),
    logLevel,
    logFormat,
    run: str('run') ?? null,
    help: values.get('help') === true,
  }
}

/** `vector,pgcrypto` (spaces allowed) → names; an unknown one is ERR_CONFIG listing what PGlite ships. */
export function parseExtensions(raw: string | undefined): string[] {
  if (raw === undefined) return []
  const names = raw.split(',').map((name) => name.trim()).filter((name) => name !== '')
  try {
    resolveExtensionNames(names)
  } catch (error) {
    throw configError(`option '--extensions': ${(error as Error).message}`)
  }
  return names
}

function parseBoolean(name: string, raw: string): boolean {
  if (/^(1|true|yes|on)$/i.test(raw)) return true
  if (/^(0|false|no|off)$/i.test(raw)) return false
  throw configError(`environment ${envName(name)} must be true or false, got '${raw}'`)
}
