// Bench target `no-engine`: a wire server with no database behind it, which answers every query as `select 1`
// from bytes made once. What Node's event loop and the sockets cost a query on this machine, with no engine at all:
// the floor under any server's CPU per query, stock's and ours. Only the select1 workload makes sense against it.
// Prints its URL as its one stdout line; stops on SIGTERM.
import net from 'node:net'

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
const ROW_DESCRIPTION = message('T', Buffer.concat([int16(1), cstring('?column?'), int32(0), int16(0), int32(23), int16(4), int32(-1), int16(0)]))
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

function serve(socket) {
  socket.setNoDelay(true)
  let pending = Buffer.alloc(0)
  let started = false
  socket.on('data', (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    const replies = []
    let at = 0
    for (;;) {
      if (!started) {
        if (pending.length - at < 8) break
        const length = pending.readInt32BE(at)
        if (pending.length - at < length) break
        const code = pending.readInt32BE(at + 4)
        at += length
        // SSLRequest and GSSENCRequest: no; the StartupMessage: in.
        if (code === 80877103 || code === 80877104) replies.push(Buffer.from('N'))
        else {
          started = true
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
      if (code === 'X') {
        socket.end()
        return
      }
      if (describesStatement) replies.push(DESCRIBE_STATEMENT)
      else if (code === 'D') replies.push(ROW_DESCRIPTION)
      else if (REPLY[code]) replies.push(REPLY[code])
    }
    pending = pending.subarray(at)
    if (replies.length === 1) socket.write(replies[0])
    else if (replies.length > 1) socket.write(Buffer.concat(replies))
  })
  socket.on('error', () => socket.destroy())
}

const server = net.createServer(serve)
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`postgres://postgres@127.0.0.1:${server.address().port}/postgres\n`)
})
process.once('SIGTERM', () => process.exit(0))
