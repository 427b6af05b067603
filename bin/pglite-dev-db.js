#!/usr/bin/env node
// Bin shim: load the TypeScript CLI through tsx, wire signals and streams, exit with main()'s status.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../src/cli.ts')
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
  stdout: (line) => process.stdout.write(line + '\n'),
  stderr: (line) => process.stderr.write(line + '\n'),
  stopSignal,
})
process.exitCode = status
// Anything still holding the event loop (a client socket, a timer) must not keep a stopped server alive.
setTimeout(() => process.exit(status), 1000).unref()
