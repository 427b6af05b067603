// What every subcommand of the command is given and returns: its streams, its environment, the stop signal, and an
// exit status. Only the bin shim touches the process itself.

export interface CliIo {
  env: NodeJS.ProcessEnv
  stdout: (line: string) => void
  stderr: (line: string) => void
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM in the real CLI). */
  stopSignal: Promise<string>
  /** The server's database is ready (the URL line came before): what start-up left behind can be collected now. */
  started?: () => void
}

export const ExitCode = { Ok: 0, Failure: 1, Usage: 2 } as const
