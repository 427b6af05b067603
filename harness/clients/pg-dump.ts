// pg_dump 18 as a wire client of any server. @electric-sql/pglite-tools ships pg_dump 18 built to WASM, whose libpq
// hands every socket write to `pg.execProtocolRawStream(bytes, { onRawData })` and reads the reply right after it,
// synchronously (callMain has no Asyncify). Here that call goes over TCP: the dump runs in a worker thread that blocks
// in Atomics.wait while the main thread writes the bytes and collects the reply, up to the ReadyForQuery it implies.
// Usage: node --import tsx harness/clients/pg-dump.ts URL [pg_dump args...]
// The dump goes to stdout, pg_dump's messages to stderr; the exit code is pg_dump's (1 when it failed).
import net from 'node:net'
import {
  MessageChannel,
  Worker,
  isMainThread,
  parentPort,
  receiveMessageOnPort,
  workerData,
  type MessagePort,
} from 'node:worker_threads'
import type { PGlite } from '@electric-sql/pglite'
import type { Client } from 'pg'

/** A reply that takes longer than this ends the dump: a server that stopped answering must not hang the tool. */
const REPLY_DEADLINE_MS = 60_000

const SSL_REQUEST_CODE = 80877103
const ReadyForQuery = 0x5a // Z
const ErrorResponse = 0x45 // E
const AuthenticationRequest = 0x52 // R
/** AuthenticationOk and AuthenticationSASLFinal are followed by more of the startup reply in the same flight. */
const AUTH_CONTINUES = new Set([0, 12])

interface WorkerInput {
  url: string
  args: string[]
  port: MessagePort
  flag: SharedArrayBuffer
}

/** What pgDump() calls on its `pg` (read from pglite-tools 0.4.8's dist): checked against PGlite's own types. */
type DumpTarget = Pick<PGlite, 'query' | 'exec' | 'execProtocolRawStream'>

// ---------------------------------------------------------------------------------------------------------------
// Main thread: one TCP connection per libpq connection, replies cut at the messages that end them.

/** How a frontend write is answered: `raw` for SSLRequest's one byte, else the count of ReadyForQuery to wait for. */
function expectedReply(bytes: Buffer): { startup: boolean; raw: number; readyForQuery: number; terminate: boolean } {
  if (bytes.length >= 8 && bytes[0] === 0) {
    const code = bytes.readInt32BE(4)
    return code === SSL_REQUEST_CODE
      ? { startup: true, raw: 1, readyForQuery: 0, terminate: false }
      : { startup: true, raw: 0, readyForQuery: 1, terminate: false }
  }
  let readyForQuery = 0
  let terminate = false
  for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readInt32BE(at + 1)) {
    const code = String.fromCharCode(bytes[at]!)
    if (code === 'Q' || code === 'S') readyForQuery++
    else if (code === 'X') terminate = true
  }
  return { startup: false, raw: 0, readyForQuery, terminate }
}

/** True once `reply` holds everything the write asked for (or the startup stopped for authentication or an error). */
function replyComplete(reply: Buffer, expected: ReturnType<typeof expectedReply>): boolean {
  if (expected.raw > 0) return reply.length >= expected.raw
  let ready = 0
  for (let at = 0; at + 5 <= reply.length;) {
    const end = at + 1 + reply.readInt32BE(at + 1)
    if (end > reply.length) return false
    const code = reply[at]!
    if (code === ReadyForQuery && ++ready === expected.readyForQuery) return true
    if (expected.startup && code === ErrorResponse) return true
    if (expected.startup && code === AuthenticationRequest && !AUTH_CONTINUES.has(reply.readInt32BE(at + 5)))
      return true
    at = end
  }
  return false
}

async function main(argv: string[]): Promise<number> {
  const [url, ...args] = argv
  if (!url) {
    process.stderr.write('usage: pg-dump.ts URL [pg_dump args...]\n')
    return 2
  }
  const { hostname, port } = new URL(url)
  const channel = new MessageChannel()
  const flag = new SharedArrayBuffer(4)
  const signal = new Int32Array(flag)
  let socket: net.Socket | null = null
  let reply: Buffer = Buffer.alloc(0)
  let pending: { expected: ReturnType<typeof expectedReply> } | null = null

  const answer = (bytes: Buffer) => {
    pending = null
    reply = Buffer.alloc(0)
    channel.port1.postMessage(bytes)
    Atomics.store(signal, 0, 1)
    Atomics.notify(signal, 0)
  }
  const check = () => {
    if (pending && replyComplete(reply, pending.expected)) answer(reply)
  }

  channel.port1.on('message', (bytes: Uint8Array) => {
    const frontend = Buffer.from(bytes)
    const expected = expectedReply(frontend)
    if (expected.startup && socket === null) {
      const opened = net.connect(Number(port), hostname)
      opened.on('data', (chunk: Buffer) => {
        reply = reply.length === 0 ? chunk : Buffer.concat([reply, chunk])
        check()
      })
      opened.on('error', (error) => process.stderr.write(`pg-dump.ts: ${error.message}\n`))
      opened.on('close', () => {
        if (socket === opened) socket = null
        if (pending) answer(reply)
      })
      socket = opened
    }
    if (socket === null) {
      answer(Buffer.alloc(0))
      return
    }
    socket.write(frontend)
    if (expected.terminate) {
      socket.end()
      socket = null
      answer(Buffer.alloc(0))
      return
    }
    if (expected.raw === 0 && expected.readyForQuery === 0) {
      answer(Buffer.alloc(0))
      return
    }
    pending = { expected }
    check()
  })

  const input: WorkerInput = { url, args, port: channel.port2, flag }
  const worker = new Worker(
    `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}) })`,
    { eval: true, workerData: input, transferList: [channel.port2] },
  )
  let dump: string | null = null
  worker.on('message', (text: string) => (dump = text))
  const code = await new Promise<number>((resolve, reject) => {
    worker.once('error', reject)
    worker.once('exit', resolve)
  })
  channel.port1.close()
  ;(socket as net.Socket | null)?.destroy()
  if (code !== 0 || dump === null) return code === 0 ? 1 : code
  process.stdout.write(dump)
  return 0
}

// ---------------------------------------------------------------------------------------------------------------
// Worker: pgDump() with a `pg` whose protocol entry point is the main thread's TCP connection.

function wireTarget({ url, port, flag }: WorkerInput): DumpTarget {
  const signal = new Int32Array(flag)
  const execProtocolRawStream = (bytes: Uint8Array, options: { onRawData: (data: Uint8Array) => void }) => {
    port.postMessage(Buffer.from(bytes))
    if (Atomics.wait(signal, 0, 0, REPLY_DEADLINE_MS) === 'timed-out') {
      process.stderr.write(`pg-dump.ts: no reply within ${REPLY_DEADLINE_MS} ms\n`)
      process.exit(3)
    }
    Atomics.store(signal, 0, 0)
    const reply = receiveMessageOnPort(port)?.message as Uint8Array
    if (reply.length > 0) options.onRawData(reply)
  }
  // pgDump's bookkeeping for PGlite's one session (SHOW/SET search_path, DEALLOCATE ALL) goes to a connection of its
  // own, where it changes nothing the dump depends on.
  const oneOff = async <T>(run: (client: Client) => Promise<T>): Promise<T> => {
    const { default: pg } = await import('pg')
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 30_000, query_timeout: 30_000 })
    await client.connect()
    try {
      return await run(client)
    } finally {
      await client.end()
    }
  }
  return {
    execProtocolRawStream: execProtocolRawStream as unknown as PGlite['execProtocolRawStream'],
    query: ((sql: string) => oneOff((client) => client.query(sql))) as unknown as PGlite['query'],
    exec: ((sql: string) => oneOff(async (client) => [await client.query(sql)])) as unknown as PGlite['exec'],
  }
}

async function dumpInWorker(input: WorkerInput): Promise<void> {
  const { pgDump } = await import('@electric-sql/pglite-tools/pg_dump')
  const database = decodeURIComponent(new URL(input.url).pathname.slice(1)) || 'postgres'
  try {
    const file = await pgDump({ pg: wireTarget(input) as unknown as PGlite, args: ['-d', database, ...input.args] })
    parentPort!.postMessage(await file.text())
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  } finally {
    input.port.close()
  }
}

if (isMainThread) process.exitCode = await main(process.argv.slice(2))
else await dumpInWorker(workerData as WorkerInput)
