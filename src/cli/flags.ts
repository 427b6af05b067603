// The command's flags: one table drives the flags, their environment twins and --help. A flag that sets an option
// of startDevDb names it, takes its default from databases/options.ts, and is checked by the same validation.

import { DevServerError } from '../errors.ts'
import { resolveExtensionNames } from '../engine/extensions.ts'
import { DEV_DB_DEFAULTS, validateDevDbOptions, type DevDbOptions } from '../databases/options.ts'
import { isLogLevel, type LogFormat, type LogLevel } from '../log.ts'
import { nearestName } from './nearest-name.ts'

export const DEFAULT_DATA_DIR = '.pglite-dev-db/data'
/** The command listens where Postgres does; startDevDb picks a free port. */
export const DEFAULT_PORT = 5432
export const ENV_PREFIX = 'PGLITE_DEV_DB_'

type FlagType = 'string' | 'integer' | 'boolean'
interface Flag {
  name: string
  type: FlagType
  help: string
  value?: string
  /** A one-letter alias (`-h`). */
  short?: string
  /** The startDevDb option this flag sets; its default is shown unless `defaultText` says otherwise. */
  option?: keyof DevDbOptions
  defaultText?: string
}

const defaultOf = (option: keyof typeof DEV_DB_DEFAULTS): string => String(DEV_DB_DEFAULTS[option])

export const FLAGS: readonly Flag[] = [
  {
    name: 'host',
    option: 'host',
    type: 'string',
    value: 'HOST',
    help: 'address to listen on',
    defaultText: defaultOf('host'),
  },
  {
    name: 'port',
    option: 'port',
    type: 'integer',
    value: 'PORT',
    help: 'port to listen on; 0 picks a free one',
    defaultText: String(DEFAULT_PORT),
  },
  {
    name: 'data-dir',
    option: 'dataDir',
    type: 'string',
    value: 'PATH',
    help: 'where the database lives between runs',
    defaultText: DEFAULT_DATA_DIR,
  },
  { name: 'memory', type: 'boolean', help: 'keep the database in memory only; nothing is written to disk' },
  {
    name: 'migrations',
    option: 'migrations',
    type: 'string',
    value: 'DIR',
    help: 'drizzle-kit migrations folder applied before listening',
    defaultText: 'the out of drizzle.config.*, else ./drizzle, else ./migrations; the first that exists',
  },
  { name: 'no-migrations', type: 'boolean', help: 'do not apply any migrations' },
  {
    name: 'cache-dir',
    option: 'cacheDir',
    type: 'string',
    value: 'DIR',
    help: 'where migrated templates (and the self-signed TLS certificate) are kept; a fresh database copies one instead of initdb + migrations',
    defaultText: 'node_modules/.cache/pglite-dev-db',
  },
  {
    name: 'no-template',
    type: 'boolean',
    help: 'build a fresh database with initdb and every migration, without the template',
  },
  {
    name: 'spare-databases',
    option: 'spareDatabases',
    type: 'integer',
    value: 'N',
    help: "new in-memory databases kept loaded ahead (about 50 MB each), so a test worker's database is there when it asks: your test runner's number of workers",
    defaultText: defaultOf('spareDatabases'),
  },
  {
    name: 'no-database-threads',
    type: 'boolean',
    help: "run every database in the server's thread (by default each database runs in a worker thread of its own, where a running statement can be canceled or timed out)",
  },
  {
    name: 'no-wasm-optimizer',
    type: 'boolean',
    help: "never optimize Postgres's code (its WASM), and JavaScript later (Node 20, 22): databases start on about half the CPU and the server idles on about 60 MB less, for a CI job, whose run is short; a CPU-heavy statement takes up to twice as long",
  },
  {
    name: 'extensions',
    option: 'extensions',
    type: 'string',
    value: 'LIST',
    help: 'extensions to load, comma-separated (vector,pgcrypto,...); a database that has one needs it at every start',
    defaultText: 'none',
  },
  {
    name: 'from-snapshot',
    option: 'fromSnapshot',
    type: 'string',
    value: 'FILE',
    help: 'start from a snapshot (pglite-dev-db snapshot): with --memory, or into a data dir that holds no database yet',
  },
  {
    name: 'password',
    option: 'password',
    type: 'string',
    value: 'PASSWORD',
    help: 'clients must log in with this password (SCRAM-SHA-256); it appears in the printed URL',
    defaultText: 'none',
  },
  {
    name: 'no-create-database-on-connect',
    type: 'boolean',
    help: 'a client naming a database that does not exist gets FATAL 3D000, as from Postgres, instead of a new database (CREATE DATABASE still makes one)',
  },
  {
    name: 'no-tls',
    type: 'boolean',
    help: 'answer clients that ask for TLS with N, as a server without ssl does (sslmode=require then fails)',
  },
  {
    name: 'tls-cert',
    option: 'tlsCert',
    type: 'string',
    value: 'FILE',
    help: 'certificate (PEM) for clients that ask for TLS',
    defaultText: 'a self-signed one for localhost, kept in the cache dir',
  },
  { name: 'tls-key', option: 'tlsKey', type: 'string', value: 'FILE', help: 'the private key (PEM) of --tls-cert' },
  {
    name: 'socket-dir',
    option: 'socketDir',
    type: 'string',
    value: 'DIR',
    help: 'also listen on DIR/.s.PGSQL.PORT, where psql -h DIR looks',
  },
  {
    name: 'max-connections',
    option: 'maxConnections',
    type: 'integer',
    value: 'N',
    help: 'clients past this get FATAL 53300',
    defaultText: defaultOf('maxConnections'),
  },
  {
    name: 'max-spill-bytes',
    option: 'maxSpillBytes',
    type: 'integer',
    value: 'N',
    help: 'results clients stop reading wait on disk (in the cache dir) so the database goes on; past N bytes in all, FATAL 53400; 0 = they wait in the database',
    defaultText: defaultOf('maxSpillBytes'),
  },
  {
    name: 'idle-in-transaction-timeout-ms',
    option: 'idleInTransactionTimeoutMs',
    type: 'integer',
    value: 'MS',
    help: 'reap a client that holds the session idle this long (FATAL 25P03); 0 = never',
    defaultText: defaultOf('idleInTransactionTimeoutMs'),
  },
  {
    name: 'queue-timeout-ms',
    option: 'queueTimeoutMs',
    type: 'integer',
    value: 'MS',
    help: "a statement that waits this long for another client's transaction fails with 55P03; 0 = never",
    defaultText: defaultOf('queueTimeoutMs'),
  },
  {
    name: 'idle-transaction-wait-ms',
    option: 'idleTransactionWaitMs',
    type: 'integer',
    value: 'MS',
    help: "a statement that waits this long behind another client's idle transaction fails with 55P03 naming it; 0 = wait up to the queue timeout",
    defaultText: defaultOf('idleTransactionWaitMs'),
  },
  {
    name: 'idle-timeout-ms',
    option: 'idleTimeoutMs',
    type: 'integer',
    value: 'MS',
    help: 'close clients at rest after this long (FATAL 57P05); 0 = never',
    defaultText: defaultOf('idleTimeoutMs'),
  },
  {
    name: 'progress-after-ms',
    option: 'progressAfterMs',
    type: 'integer',
    value: 'MS',
    help: 'a start-up step running this long logs a line naming it; 0 = every step',
    defaultText: defaultOf('progressAfterMs'),
  },
  {
    name: 'trace',
    option: 'trace',
    type: 'string',
    value: 'FILE',
    help: 'record every message of every client as JSON lines in FILE; read it with `pglite-dev-db trace view FILE`',
  },
  {
    name: 'log-level',
    type: 'string',
    value: 'LEVEL',
    help: 'silent, error, warn, info, debug or trace',
    defaultText: 'info',
  },
  {
    name: 'log-format',
    type: 'string',
    value: 'FORMAT',
    help: 'pretty or json (logs go to stderr)',
    defaultText: 'pretty',
  },
  {
    name: 'run',
    type: 'string',
    value: 'CMD',
    help: 'start, run CMD with DATABASE_URL set, stop, exit with its status',
  },
  { name: 'version', type: 'boolean', help: 'print the version and exit' },
  { name: 'help', short: 'h', type: 'boolean', help: 'show this help' },
]

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, '_')
}

export function usage(): string {
  const rows = FLAGS.map((f) => {
    const left = `  ${f.short ? `-${f.short}, ` : ''}--${f.name}${f.value ? ` ${f.value}` : ''}`
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

/** What the flags say: startDevDb's options, and what the command does around them. */
export interface CliOptions {
  devDb: DevDbOptions & { host: string; port: number }
  logLevel: LogLevel
  logFormat: LogFormat
  run: string | null
  help: boolean
  version: boolean
}

const EXCLUSIVE_PAIRS: ReadonlyArray<[string, string]> = [
  ['memory', 'data-dir'],
  ['no-migrations', 'migrations'],
  ['no-tls', 'tls-cert'],
]

function configError(message: string): DevServerError {
  return new DevServerError('ERR_CONFIG', message)
}

/** Parse argv plus environment twins into validated options. Flags win over the environment. Throws ERR_CONFIG. */
export function parseCliOptions(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  migrationsDefault: string | null,
): CliOptions {
  const values = readFlags(argv, env)
  const str = (name: string): string | undefined => values.get(name) as string | undefined
  const set = (name: string): boolean => values.get(name) === true
  const devDb: DevDbOptions = {}
  for (const flag of FLAGS) {
    const raw = str(flag.name)
    if (flag.option === undefined || raw === undefined) continue
    if (flag.type === 'integer' && !/^\d+$/.test(raw))
      throw configError(`option '--${flag.name}' must be a whole number, got '${raw}'`)
    Object.assign(devDb, { [flag.option]: flag.type === 'integer' ? Number(raw) : raw })
  }
  if (str('extensions') !== undefined) devDb.extensions = parseExtensions(str('extensions'))
  if (set('memory')) delete devDb.dataDir
  else devDb.dataDir ??= DEFAULT_DATA_DIR
  // The command looks for the folder itself (serve.ts logs which one and why): startDevDb is told, not left to look.
  if (set('no-migrations')) devDb.migrations = false
  else devDb.migrations ??= migrationsDefault ?? false
  if (set('no-template')) devDb.template = false
  if (set('no-database-threads')) devDb.databaseThreads = false
  if (set('no-wasm-optimizer')) devDb.wasmOptimizer = false
  if (set('no-create-database-on-connect')) devDb.createDatabaseOnConnect = false
  if (set('no-tls')) devDb.tls = false
  validateDevDbOptions(devDb, (option) => `option '--${FLAGS.find((f) => f.option === option)?.name ?? option}'`)
  const logLevel = str('log-level') ?? 'info'
  if (!isLogLevel(logLevel))
    throw configError(`option '--log-level' must be silent, error, warn, info, debug or trace, got '${logLevel}'`)
  const logFormat = str('log-format') ?? 'pretty'
  if (logFormat !== 'pretty' && logFormat !== 'json')
    throw configError(`option '--log-format' must be pretty or json, got '${logFormat}'`)
  return {
    devDb: { ...devDb, host: devDb.host ?? DEV_DB_DEFAULTS.host, port: devDb.port ?? DEFAULT_PORT },
    logLevel,
    logFormat,
    run: str('run') ?? null,
    help: set('help'),
    version: set('version'),
  }
}

/** Each flag's raw value: environment twins first, then the command line, which wins (over a twin's opposite too). */
function readFlags(argv: readonly string[], env: NodeJS.ProcessEnv): Map<string, string | boolean> {
  const values = new Map<string, string | boolean>()
  for (const flag of FLAGS) {
    const fromEnv = env[envName(flag.name)]
    if (fromEnv !== undefined && fromEnv !== '')
      values.set(flag.name, flag.type === 'boolean' ? parseBoolean(flag.name, fromEnv) : fromEnv)
  }
  const onCommandLine = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const short = /^-([a-zA-Z])$/.exec(arg)?.[1]
    if (short !== undefined && !FLAGS.some((f) => f.short === short)) throw configError(`unknown option '${arg}'`)
    if (!arg.startsWith('--') && short === undefined) throw configError(`unexpected argument '${arg}'`)
    const eq = arg.indexOf('=')
    const name =
      short !== undefined ? FLAGS.find((f) => f.short === short)!.name : arg.slice(2, eq < 0 ? undefined : eq)
    const flag = FLAGS.find((f) => f.name === name)
    if (!flag) {
      const nearest = nearestFlag(name)
      throw configError(`unknown option '--${name}'${nearest ? `; did you mean '--${nearest}'?` : ''}`)
    }
    onCommandLine.add(name)
    if (flag.type === 'boolean') {
      if (eq >= 0) throw configError(`option '--${name}' takes no value`)
      values.set(name, true)
      continue
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || (eq < 0 && value.startsWith('--')))
      throw configError(`option '--${name}' needs a value (${flag.value})`)
    values.set(name, value)
  }
  // A flag wins over its opposite's environment twin too: `--data-dir d` with PGLITE_DEV_DB_MEMORY=1 means d.
  for (const [a, b] of EXCLUSIVE_PAIRS) {
    if (onCommandLine.has(a) && !onCommandLine.has(b)) values.delete(b)
    if (onCommandLine.has(b) && !onCommandLine.has(a)) values.delete(a)
    if (values.has(a) && values.has(b)) throw configError(`options '--${a}' and '--${b}' exclude each other`)
  }
  return values
}

/** The flag a mistyped name most likely meant (nearest-name.ts). */
export function nearestFlag(name: string): string | null {
  return nearestName(
    name,
    FLAGS.map((flag) => flag.name),
  )
}

/** `vector,pgcrypto` (spaces allowed) → names; an unknown one is ERR_CONFIG listing what PGlite ships. */
export function parseExtensions(raw: string | undefined): string[] {
  if (raw === undefined) return []
  const names = raw
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
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
