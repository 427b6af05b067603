#!/usr/bin/env node
// Bin shim: load the CLI (src/cli.ts as a bundle that is rebuilt whenever src/ changed, see cli-bundle.js), wire
// signals and streams, exit with main()'s status.
import v8 from 'node:v8'
import vm from 'node:vm'
import { loadCli } from './cli-bundle.js'

const { main } = await loadCli()
let isCollected = false
/**
 * A server waiting for its first client allocates nothing, so V8 never collects what start-up left behind (PGlite's
 * copies of the database while loading it: 10-60 MB). One full collection right after the URL line returns it.
 * `--expose-gc` set at run time only gives new contexts a gc(); this process's global stays as it was.
 */
function collectStartupGarbage() {
  if (isCollected) return
  isCollected = true
  v8.setFlagsFromString('--expose-gc')
  setImmediate(vm.runInNewContext('gc'))
}
const stopSignal = new Promise((resolve) => {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      resolve(signal)
      // A second signal while stopping means "now".
      process.once(signal, () => process.exit(130))
    })
  }
})
const status = await main(process.argv.slice(2), {
  env: process.env,
  stdout: (line) => {
    process.stdout.write(line + '\n')
    if (line.startsWith('postgres')) collectStartupGarbage()
  },
  stderr: (line) => process.stderr.write(line + '\n'),
  stopSignal,
})
process.exitCode = status
// Anything still holding the event loop (a client socket, a timer) must not keep a stopped server alive.
setTimeout(() => process.exit(status), 1000).unref()
