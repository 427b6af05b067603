// Child-process entry behind Target.spawn(): runs one server on a PGlite started from the run's image, prints one JSON
// line ({ url, port }) on stdout, and stops cleanly on SIGTERM or when the parent goes away (stdin closes).
// Usage: node --import tsx test/helpers/target-process.ts <stock|patched> <imageDir> <options JSON>
import { startInProcess, type ServerOptions, type TargetName } from './targets.ts'

const [name, imageDir, optionsJson] = process.argv.slice(2)
if ((name !== 'stock' && name !== 'patched') || !imageDir) {
  process.stderr.write('usage: target-process.ts <stock|patched> <imageDir> [options JSON]\n')
  process.exit(2)
}

const running = await startInProcess(name as TargetName, JSON.parse(optionsJson ?? '{}') as ServerOptions, imageDir)
let stopping = false
const stop = (): void => {
  if (stopping) return
  stopping = true
  running.close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(
        `target-process: close failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      )
      process.exit(1)
    },
  )
}
process.once('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.resume()
process.stdout.write(`${JSON.stringify({ url: running.url, port: running.port })}\n`)
