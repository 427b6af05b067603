// What --trace costs per exchange: the wire bytes of typical exchanges fed through a connection's trace (frame
// reassembly, decoding, JSON, the file stream), timed in process, so the figure does not drown in PGlite's time.
// Usage: npx tsx scripts/bench-trace.ts [--json]   (prints a table, or JSON with --json)
import { mkdtemp, rm, stat } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { createLogger } from '../src/log.ts'
import { TraceFile } from '../src/server/trace/trace.ts'

function message(code: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const header = Buffer.alloc(5)
  header.write(code, 0, 'latin1')
  header.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}
const cstr = (s: string) => Buffer.from(`${s}\0`)
const int16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
const int32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}
const value = (s: string) => Buffer.concat([int32(Buffer.byteLength(s)), Buffer.from(s)])
const dataRow = (values: string[]) => message('D', int16(values.length), ...values.map(value))
const rowDescription = (names: string[]) =>
  message(
    'T',
    int16(names.length),
    ...names.map((n) => Buffer.concat([cstr(n), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)])),
  )
const ready = message('Z', Buffer.from('I'))

interface Workload {
  name: string
  /** What the client sends and what it gets back for one exchange, as one socket chunk each. */
  in: Buffer
  out: Buffer
  frames: number
}

const names = Array.from({ length: 10 }, (_, i) => `column_${i}`)
const WORKLOADS: Workload[] = [
  {
    name: 'pgbench -S (Bind/Execute/Sync, 1 row)',
    in: Buffer.concat([
      message('B', cstr(''), cstr('P_1'), int16(0), int16(1), value('4242'), int16(0)),
      message('E', cstr(''), int32(0)),
      message('S'),
    ]),
    out: Buffer.concat([message('2'), dataRow(['123456']), message('C', cstr('SELECT 1')), ready]),
    frames: 7,
  },
  {
    name: 'simple Query, 100 rows x 10 columns',
    in: message('Q', cstr('select * from wide limit 100')),
    out: Buffer.concat([
      rowDescription(names),
      ...Array.from({ length: 100 }, (_, r) => dataRow(names.map((n) => `${n} value ${r}`))),
      message('C', cstr('SELECT 100')),
      ready,
    ]),
    frames: 104,
  },
  {
    name: 'COPY FROM STDIN, 64 KB CopyData',
    in: message('d', Buffer.alloc(64 * 1024, 'row\tvalue\n')),
    out: Buffer.alloc(0),
    frames: 1,
  },
]

const TARGET_MS = 1500

async function main(json: boolean): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-trace-'))
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const client = net.connect(port, '127.0.0.1')
  const socket = await accepted
  const rows: Array<{
    workload: string
    exchanges: number
    usPerExchange: number
    usPerFrame: number
    bytesPerExchange: number
  }> = []
  try {
    for (const workload of WORKLOADS) {
      const file = path.join(dir, 'trace.jsonl')
      const trace = TraceFile.acquire(file, createLogger({ level: 'warn' }))
      const connection = trace.connection(1000, socket)
      connection.in(Buffer.from([0, 0, 0, 9, 0, 3, 0, 0, 0])) // a StartupMessage: typed messages from here on
      let exchanges = 0
      const started = performance.now()
      // Yield to the event loop between batches, as a server does, so the stream drains as it would.
      while (performance.now() - started < TARGET_MS) {
        for (let i = 0; i < 200; i++) {
          connection.in(workload.in)
          if (workload.out.length > 0) connection.out(workload.out)
        }
        exchanges += 200
        await new Promise((resolve) => setImmediate(resolve))
      }
      connection.close(null)
      await trace.release()
      const ms = performance.now() - started
      const { size } = await stat(file)
      rows.push({
        workload: workload.name,
        exchanges,
        usPerExchange: Math.round((ms * 1000 * 10) / exchanges) / 10,
        usPerFrame: Math.round((ms * 1000 * 100) / (exchanges * workload.frames)) / 100,
        bytesPerExchange: Math.round(size / exchanges),
      })
    }
  } finally {
    client.destroy()
    socket.destroy()
    server.close()
    await rm(dir, { recursive: true, force: true })
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return
  }
  const header = ['workload', 'exchanges', 'µs/exchange', 'µs/frame', 'trace bytes/exchange']
  const cells = rows.map((r) => [
    r.workload,
    String(r.exchanges),
    String(r.usPerExchange),
    String(r.usPerFrame),
    String(r.bytesPerExchange),
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  for (const line of [header, ...cells])
    process.stdout.write(`${line.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`)
}

await main(process.argv.includes('--json'))
