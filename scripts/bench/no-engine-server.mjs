// Bench target `no-engine`: a wire server with no database behind it, which answers every query as `select 1`
// from bytes made once. What Node's event loop and the sockets cost a query on this machine, with no engine at all:
// the floor under any server's CPU per query, stock's and ours. Only the select1 workload makes sense against it.
// With NO_ENGINE_READS=spin in the environment, one worker thread reads every client's socket without an event loop
// (spinReads): what a database thread reading several sockets itself would cost.
// Prints its URL as its one stdout line; stops on SIGTERM.
import { readSync, writeSync } from 'node:fs'
import net from 'node:net'
import { isMainThread, MessageChannel, receiveMessageOnPort, Worker, workerData } from 'node:worker_threads'

/** One backend message: its code, then the length that counts itself, then `body`. */
function message(code, body = Buffer.alloc(0)) {
  const out = Buffer.alloc(5 + body.length)
  out[0] = code.charCodeAt(0)
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const cstring = (text) => Buffer.from(`${text}\0`)
const int16 = (n) => Buffer.from([(n >> 8) & 0xff, n & 0xff])
const int32 = (n) => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

const parameter = (name, value) => message('S', Buffer.concat([cstring(name), cstring(value)]))
const READY = message('Z', Buffer.from('I'))
const STARTUP_REPLY = Buffer.concat([
  message('R', int32(0)),
  parameter('server_version', '17.5'),
  parameter('server_encoding', 'UTF8'),
  parameter('client_encoding', 'UTF8'),
  parameter('DateStyle', 'ISO, MDY'),
  parameter('TimeZone', 'UTC'),
  parameter('integer_datetimes', 'on'),
  parameter('standard_conforming_strings', 'on'),
  message('K', Buffer.concat([int32(process.pid), int32(1)])),
  READY,
])
// ?column? int4: table 0, column 0, type 23, size 4, modifier -1, text format.
const ROW_DESCRIPTION = message(
  'T',
  Buffer.concat([int16(1), cstring('?column?'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)]),
)
const DATA_ROW = message('D', Buffer.concat([int16(1), int32(1), Buffer.from('1')]))
const COMPLETE = message('C', cstring('SELECT 1'))
const REPLY = {
  Q: Buffer.concat([ROW_DESCRIPTION, DATA_ROW, COMPLETE, READY]),
  P: message('1'),
  B: message('2'),
  C: message('3'),
  E: Buffer.concat([DATA_ROW, COMPLETE]),
  S: READY,
}
const DESCRIBE_STATEMENT = Buffer.concat([message('t', int16(0)), ROW_DESCRIPTION])

/**
 * A client's bytes so far (`client.pending`, then `chunk`) answered: the replies to each complete message, or null
 * once it sent Terminate.
 */
function answer(client, chunk) {
  const pending = client.pending.length === 0 ? chunk : Buffer.concat([client.pending, chunk])
  const replies = []
  let at = 0
  for (;;) {
    if (!client.started) {
      if (pending.length - at < 8) break
      const length = pending.readInt32BE(at)
      if (pending.length - at < length) break
      const code = pending.readInt32BE(at + 4)
      at += length
      // SSLRequest and GSSENCRequest: no; the StartupMessage: in.
      if (code === 80877103 || code === 80877104) replies.push(Buffer.from('N'))
      else {
        client.started = true
        replies.push(STARTUP_REPLY)
      }
      continue
    }
    if (pending.length - at < 5) break
    const length = pending.readInt32BE(at + 1)
    if (pending.length - at < 1 + length) break
    const code = String.fromCharCode(pending[at])
    const describesStatement = code === 'D' && pending[at + 5] === 'S'.charCodeAt(0)
    at += 1 + length
    if (code === 'X') return null
    if (describesStatement) replies.push(DESCRIBE_STATEMENT)
    else if (code === 'D') replies.push(ROW_DESCRIPTION)
    else if (REPLY[code]) replies.push(REPLY[code])
  }
  client.pending = pending.subarray(at)
  return replies.length === 1 ? replies[0] : Buffer.concat(replies)
}

function serve(socket) {
  socket.setNoDelay(true)
  const client = { pending: Buffer.alloc(0), started: false }
  socket.on('data', (chunk) => {
    const reply = answer(client, chunk)
    if (reply === null) socket.end()
    else if (reply.length > 0) socket.write(reply)
  })
  socket.on('error', () => socket.destroy())
}

/**
 * NO_ENGINE_READS=spin: the accepting thread posts each socket's fd to one worker thread, which reads every client
 * with non-blocking readSync in turn (no event loop) and answers with writeSync, as a database thread reading several
 * clients' sockets itself would. The accepting thread keeps each paused handle (closing it would close the fd).
 */
function spinReads(fds) {
  const buffer = Buffer.allocUnsafe(1 << 16)
  const clients = []
  const nap = new Int32Array(new SharedArrayBuffer(4))
  for (let idle = 0, round = 0; ; round++) {
    if ((round & 63) === 0)
      for (let got; (got = receiveMessageOnPort(fds));)
        clients.push({ fd: got.message, pending: Buffer.alloc(0), started: false })
    let any = false
    for (let i = clients.length - 1; i >= 0; i--) {
      const client = clients[i]
      let count
      try {
        count = readSync(client.fd, buffer, 0, buffer.length, null)
      } catch (error) {
        if (error.code === 'EAGAIN') continue
        count = 0
      }
      const reply = count === 0 ? null : answer(client, Buffer.from(buffer.subarray(0, count)))
      any = true
      if (reply === null || !written(client.fd, reply)) clients.splice(i, 1)
    }
    idle = any ? 0 : idle + 1
    if (idle > 50) Atomics.wait(nap, 0, 0, 0.02)
  }
}

/** False if the client is gone. */
function written(fd, reply) {
  try {
    if (reply.length > 0) writeSync(fd, reply)
    return true
  } catch {
    return false
  }
}

if (!isMainThread) spinReads(workerData.port)
else if (process.env.NO_ENGINE_READS === 'spin') {
  const { port1, port2 } = new MessageChannel()
  new Worker(new URL(import.meta.url), { workerData: { port: port2 }, transferList: [port2] }).unref()
  const kept = []
  listen(
    net.createServer({ pauseOnConnect: true }, (socket) => {
      kept.push(socket)
      port1.postMessage(socket._handle.fd)
    }),
  )
} else listen(net.createServer(serve))

function listen(server) {
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`postgres://postgres@127.0.0.1:${server.address().port}/postgres\n`)
  })
  process.once('SIGTERM', () => process.exit(0))
}
