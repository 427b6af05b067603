// The pglite-dev-db command: `main(argv)` picks the subcommand and returns its exit status; only the bin shim
// (bin/pglite-dev-db.js) calls process.exit.

import type { CliIo } from './io.ts'
import { serveCommand } from './serve.ts'
import { snapshotCommand } from './snapshot.ts'
import { traceCommand } from './trace-view.ts'

export { ExitCode, type CliIo } from './io.ts'
export { collectGarbageSoon, collectWhenIdle } from '../engine/collect-garbage.ts'

/** Run the command. Returns the exit status. */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  if (argv[0] === 'snapshot') return snapshotCommand(argv.slice(1), io)
  if (argv[0] === 'trace') return traceCommand(argv.slice(1), io)
  return serveCommand(argv, io)
}
