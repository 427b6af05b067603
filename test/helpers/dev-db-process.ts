// Child-process entry behind spawnDevDb(): one startDevDb on a data dir the parent copied, driven over stdin/stdout
// JSON lines, so a test measures the server's own memory and descriptors apart from its clients'.
// Usage: node --expose-gc --import tsx test/helpers/dev-db-process.ts <dataDir> [startDevDb options JSON]
// Requests: {"id":1,"op":"stats"|"memory"|"close"}; replies: {"id":1,"value":...} or {"id":1,"error":"..."}.
// The first line out is {"url","port","pid"}. The process closes the server and exits when stdin ends.
import { createInterface } from 'node:readline'
import { startDevDb } from '../../src/databases/dev-db.ts'

const [dataDir, optionsJson] = process.argv.slice(2)
if (!dataDir) {
  process.stderr.write('usage: dev-db-process.ts <dataDir> [options JSON]\n')
  process.exit(2)
}

const dev = await startDevDb({ migrations: false, ...(JSON.parse(optionsJson ?? '{}') as object), dataDir })
const gc = (globalThis as { gc?: () => void }).gc

let closing: Promise<void> | undefined
const close = () => (closing ??= dev.close())

async function handle(op: string): Promise<unknown> {
  switch (op) {
    case 'stats':
      return dev.server.getStats()
    case 'memory':
      // Twice: the first pass may only queue finalizers that free more on the second.
      gc?.()
      gc?.()
      return { ...process.memoryUsage(), isCollected: gc !== undefined }
    case 'close':
      await close()
      return null
    default:
      throw new Error(`unknown op ${op}`)
  }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const { id, op } = JSON.parse(line) as { id: number; op: string }
  handle(op).then(
    (value) => process.stdout.write(`${JSON.stringify({ id, value })}\n`),
    (error: unknown) => process.stdout.write(`${JSON.stringify({ id, error: String(error) })}\n`),
  )
})
lines.on('close', () => {
  close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`close failed: ${String(error)}\n`)
      process.exit(1)
    },
  )
})
process.stdout.write(`${JSON.stringify({ url: dev.url, port: dev.port, pid: process.pid })}\n`)
