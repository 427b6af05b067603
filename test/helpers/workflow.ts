// A GitHub Actions job's `run:` steps, run here as the runner runs them on Linux: each in `bash -e` from the
// workspace, with the job's env, RUNNER_TEMP, and what earlier steps appended to $GITHUB_ENV. A step's background
// processes outlive the step, as on the runner, until stop() ends them (each step runs as its own process group).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parse } from 'yaml'
import { StalledError, withDeadline } from '../../harness/raw-client.ts'

interface WorkflowStep {
  name?: string
  uses?: string
  run?: string
  if?: string
  shell?: string
}

interface Workflow {
  jobs: Record<string, { env?: Record<string, string>; steps: WorkflowStep[] }>
}

export interface StepRun {
  /** The step's name, or its first line of script. */
  name: string
  code: number | null
  output: string
}

export interface JobRun {
  steps: StepRun[]
  /** The steps not run here, in order: every `uses:` (checkout, setup-node: the caller has done their part) and `skip`. */
  skipped: string[]
  /** Ends what the steps left running (the server a step started in the background). */
  stop(): Promise<void>
}

export interface JobOptions {
  workspace: string
  runnerTemp: string
  /** `run:` scripts not to run, e.g. `npm ci` where node_modules is already in place. */
  skip: readonly string[]
  deadlineMs: number
}

export async function runJob(workflowFile: string, job: string, options: JobOptions): Promise<JobRun> {
  const workflow = parse(await readFile(workflowFile, 'utf8')) as Workflow
  const spec = workflow.jobs[job]
  if (!spec) throw new Error(`${workflowFile} has no job '${job}'`)
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    RUNNER_TEMP: options.runnerTemp,
    ...spec.env,
  }
  const started: ChildProcess[] = []
  const steps: StepRun[] = []
  const skipped: string[] = []
  const stop = async () => {
    await Promise.all(started.map((child) => stopGroup(child.pid!)))
  }
  try {
    for (const [index, step] of spec.steps.entries()) {
      if (step.if !== undefined || step.shell !== undefined)
        throw new Error(`step ${index}: 'if' and 'shell' are not emulated here`)
      if (step.run === undefined) {
        skipped.push(`uses: ${step.uses}`)
        continue
      }
      if (options.skip.includes(step.run.trim())) {
        skipped.push(step.run.trim())
        continue
      }
      const script = path.join(options.runnerTemp, `step-${index}.sh`)
      const githubEnv = path.join(options.runnerTemp, `github-env-${index}`)
      await writeFile(script, step.run)
      await writeFile(githubEnv, '')
      // detached: the step leads a process group of its own, which holds whatever it leaves running.
      const child = spawn('bash', ['-e', script], {
        cwd: options.workspace,
        env: { ...env, GITHUB_ENV: githubEnv },
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      started.push(child)
      // 'close': the step has exited and its output is all read. A background process that kept the step's output
      // open would hold this up, as it can hold up a step on GitHub's runner.
      const [code] = (await withDeadline(
        once(child, 'close'),
        options.deadlineMs,
        `step ${step.name ?? step.run}`,
      )) as [number | null]
      steps.push({ name: step.name ?? step.run.trim().split('\n')[0]!, code, output })
      if (code !== 0) break
      Object.assign(env, parseGithubEnv(await readFile(githubEnv, 'utf8')))
    }
  } catch (error) {
    await stop()
    throw error
  }
  return { steps, skipped, stop }
}

/** NAME=value lines; the multi-line NAME<<DELIMITER form is not used by the example and is refused. */
function parseGithubEnv(text: string): Record<string, string> {
  const values: Record<string, string> = {}
  for (const line of text.split('\n')) {
    if (line === '') continue
    const eq = line.indexOf('=')
    if (eq < 1 || line.includes('<<')) throw new Error(`unsupported GITHUB_ENV line: ${line}`)
    values[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return values
}

/** SIGTERM to a step's process group, then SIGKILL if any of it is still running after 10 s. */
async function stopGroup(pgid: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return
  try {
    await withDeadline(gone(pgid), 10_000, 'the processes a step left running')
  } catch (error) {
    if (!(error instanceof StalledError)) throw error
    signalGroup(pgid, 'SIGKILL')
    await gone(pgid)
  }
}

/** false when the group has no process left. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw error
  }
}

/**
 * Resolves once the group is empty. A background process is not our child (the step's shell started it), so no
 * event tells us it exited: its group is checked every 50 ms (the caller bounds the wait).
 */
async function gone(pgid: number): Promise<void> {
  while (signalGroup(pgid, 0)) await new Promise((resolve) => setTimeout(resolve, 50))
}
