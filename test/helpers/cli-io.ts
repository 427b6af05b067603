// The CLI's io captured in memory: what main() prints on stdout and stderr, its first stdout line (the URL), and a
// stop signal the test sends instead of SIGTERM.
import type { CliIo } from '../../src/cli/main.ts'

export interface CapturedIo {
  io: CliIo
  stdout: string[]
  stderr: string[]
  /** Resolves with the first stdout line. */
  firstLine: Promise<string>
  stop(signal?: string): void
}

export function captureIo(env: NodeJS.ProcessEnv = {}): CapturedIo {
  const stdout: string[] = []
  const stderr: string[] = []
  let stop!: (signal: string) => void
  let gotLine!: (line: string) => void
  const firstLine = new Promise<string>((resolve) => (gotLine = resolve))
  const stopSignal = new Promise<string>((resolve) => (stop = resolve))
  return {
    io: {
      env,
      stdout: (line) => {
        stdout.push(line)
        gotLine(line)
      },
      stderr: (line) => stderr.push(line),
      stopSignal,
    },
    stdout,
    stderr,
    firstLine,
    stop: (signal = 'SIGTERM') => stop(signal),
  }
}
