// Structured, leveled logging. Disabled levels are a shared no-op, so a call costs nothing when off.

export const LogLevels = ['error', 'warn', 'info', 'debug', 'trace'] as const
export type LogLevel = (typeof LogLevels)[number] | 'silent'
export type LogFields = Record<string, unknown>
export interface LogRecord {
  time: number
  level: Exclude<LogLevel, 'silent'>
  msg: string
  fields: LogFields
}
export type LogSink = (record: LogRecord) => void
export type LogFormat = 'pretty' | 'json'

type LogFn = (msg: string, fields?: LogFields) => void

export interface Logger {
  readonly level: LogLevel
  error: LogFn
  warn: LogFn
  info: LogFn
  debug: LogFn
  trace: LogFn
  enabled(level: Exclude<LogLevel, 'silent'>): boolean
  child(fields: LogFields): Logger
}

const noop: LogFn = () => {}

function rank(level: LogLevel): number {
  return level === 'silent' ? -1 : LogLevels.indexOf(level)
}

export function isLogLevel(value: string): value is LogLevel {
  return value === 'silent' || (LogLevels as readonly string[]).includes(value)
}

function formatValue(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.message)
  if (typeof value === 'string') return /^[\w./:@-]*$/.test(value) && value !== '' ? value : JSON.stringify(value)
  return String(value)
}

function errorFields(fields: LogFields): LogFields {
  const out: LogFields = {}
  for (const [key, value] of Object.entries(fields)) {
    out[key] =
      value instanceof Error
        ? { name: value.name, message: value.message, code: (value as { code?: unknown }).code }
        : value
  }
  return out
}

/** One line per record, human-readable or JSON lines, to `writeLine` (default: stderr). */
export function lineSink(
  format: LogFormat = 'pretty',
  writeLine: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): LogSink {
  if (format === 'json') {
    return (r) =>
      writeLine(
        JSON.stringify({ time: new Date(r.time).toISOString(), level: r.level, msg: r.msg, ...errorFields(r.fields) }),
      )
  }
  return (r) => {
    let line = `${new Date(r.time).toISOString()} ${r.level.toUpperCase().padEnd(5)} ${r.msg}`
    // A multi-line value (a hex dump) goes under the line, indented, instead of as one quoted string.
    let block = ''
    for (const [key, value] of Object.entries(r.fields)) {
      if (typeof value === 'string' && value.includes('\n'))
        block += `\n  ${key}:\n    ${value.split('\n').join('\n    ')}`
      else line += ` ${key}=${formatValue(value)}`
    }
    writeLine(line + block)
  }
}

export function createLogger(options: { level?: LogLevel; sink?: LogSink; fields?: LogFields } = {}): Logger {
  const level = options.level ?? 'warn'
  const sink = options.sink ?? lineSink()
  const base = options.fields ?? {}
  const max = rank(level)
  const make = (lvl: Exclude<LogLevel, 'silent'>): LogFn =>
    rank(lvl) > max
      ? noop
      : (msg, fields) => sink({ time: Date.now(), level: lvl, msg, fields: fields ? { ...base, ...fields } : base })
  return {
    level,
    error: make('error'),
    warn: make('warn'),
    info: make('info'),
    debug: make('debug'),
    trace: make('trace'),
    enabled: (lvl) => rank(lvl) <= max,
    child: (fields) => createLogger({ level, sink, fields: { ...base, ...fields } }),
  }
}

/** Log a promise's failure instead of dropping it. Every promise is awaited or handed to this. */
export function background(promise: Promise<unknown>, what: string, log: Logger): void {
  promise.then(undefined, (error: unknown) => log.error('background task failed', { what, error }))
}
