// The toy servers of `npm run bench:handoff` (scripts/bench/handoff.ts, which says what each shows): plain Node, so
// that any Node binary runs them as they are. `node handoff-server.mjs MODE` prints its port; on SIGUSR2 it collects
// its garbage and prints `collected`, for the bench to read its memory.
import { writeSync } from 'node:fs'
import net from 'node:net'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'

const REPLY = Buffer.alloc(64, 120)

/** The server of `mode`: its port on stdout, then `collected` after each SIGUSR2. */
function serve(mode) {
  const words = new Int32Array(new SharedArrayBuffer(8))
  const worker = mode === 'same-thread' ? null : new Worker(new URL(import.meta.url), { workerData: { mode, words } })
  worker?.unref()
  const kept = []
  const server = net.createServer({ pauseOnConnect: mode === 'handoff' }, (socket) => {
    if (mode === 'handoff') {
      // Never closed here: the worker's socket owns the fd.
      kept.push(socket)
      worker.postMessage(socket._handle.fd)
      return
    }
    socket.on('error', () => socket.destroy())
    socket.on('end', () => socket.end())
    if (mode === 'same-thread') socket.on('data', () => socket.write(REPLY))
    else {
      const fd = socket._handle.fd
      socket.on('data', () => {
        Atomics.store(words, 1, fd)
        Atomics.add(words, 0, 1)
        Atomics.notify(words, 0)
      })
    }
  })
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`))
  process.on('SIGUSR2', () => {
    globalThis.gc()
    process.stdout.write('collected\n')
  })
}

function workerSide({ mode, words }) {
  if (mode === 'handoff') {
    parentPort.on('message', (fd) => {
      const socket = new net.Socket({ fd, readable: true, writable: true })
      socket.on('data', () => socket.write(REPLY))
      socket.on('end', () => socket.end())
      socket.on('error', () => socket.destroy())
    })
    return
  }
  // hop: only the round trips use it (a close could overtake the answer still to be written).
  let seen = 0
  for (;;) {
    Atomics.wait(words, 0, seen)
    seen = Atomics.load(words, 0)
    try {
      writeSync(Atomics.load(words, 1), REPLY)
    } catch {
      // The client went away.
    }
  }
}

if (isMainThread) serve(process.argv[2])
else workerSide(workerData)
