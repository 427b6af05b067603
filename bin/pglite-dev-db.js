#!/usr/bin/env node
// Bin shim: load the CLI, wire signals and streams, exit with main()'s status. Installed from npm it runs the compiled
// dist/esm/cli/main.js; in a checkout (src/ beside it) it runs src/cli/main.ts as a bundle that is rebuilt whenever
// src/ changed (bin/cli-bundle.js, not in the package).
import { existsSync } from 'node:fs'

const inCheckout = existsSync(new URL('../src/cli/main.ts', import.meta.url))
const { main, collectGarbageSoon, collectWhenIdle } = inCheckout
  ? await (await import('./cli-bundle.js')).loadCli()
  : await import('../dist/esm/cli/main.js')
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
  // What start-up left behind is returned once the database is ready, and what each load leaves once the server is
  // idle again (see src/engine/collect-garbage.ts).
  started: () => {
    collectGarbageSoon()
    collectWhenIdle()
  },
})
process.exitCode = status
// Anything still holding the event loop (a client socket, a timer) must not keep a stopped server alive.
setTimeout(() => process.exit(status), 1000).unref()
