// Soak: many kinds of real clients against one server for a bounded time, every answer checked (harness/soak/).
// Usage: tsx scripts/soak.ts [--seconds N] [--url URL] [--seed N]
// Without --url it starts pglite-dev-db in memory (startDevDb). With --url it drops and recreates soak_* tables
// there: use a throwaway database. Exit code: 0 nothing unexpected, 1 any unexpected result or error, 2 usage error.
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { formatReport, runSoak, type SoakOptions } from '../harness/soak/soak.ts'

const USAGE = 'usage: soak [--seconds N] [--url URL] [--seed N]'

export async function main(argv: string[]): Promise<number> {
  let values: { seconds?: string; url?: string; seed?: string; help?: boolean }
  try {
    values = parseArgs({
      args: argv,
      options: {
        seconds: { type: 'string' },
        url: { type: 'string' },
        seed: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`)
    return 2
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  const whole = (name: string, text: string | undefined, min: number): number | undefined => {
    if (text === undefined) return undefined
    const n = Number(text)
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number >= ${min}, got '${text}'`)
    return n
  }
  let options: SoakOptions
  try {
    const seconds = whole('seconds', values.seconds, 1)
    const seed = whole('seed', values.seed, 0)
    options = {
      ...(values.url ? { url: values.url } : {}),
      ...(seconds ? { seconds } : {}),
      ...(seed !== undefined ? { seed } : {}),
    }
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`)
    return 2
  }
  const report = await runSoak(options)
  process.stdout.write(`${formatReport(report)}\n`)
  return report.unexpected === 0 ? 0 : 1
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const status = await main(process.argv.slice(2))
  process.exitCode = status
  // A server that stopped answering can leave sockets of stalled operations behind: they must not keep the soak alive.
  setTimeout(() => process.exit(status), 1000).unref()
}
