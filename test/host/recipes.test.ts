// The README's recipes, run as written: each command it shows runs here from the repo root as a child process,
// and each example file it shows in full is the file under examples/, byte for byte.
import { cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, onTestFinished } from 'vitest'
import { scratchRoot } from '../helpers/db.ts'
import { runProcess, type ProcessRun } from '../../harness/process.ts'
import { runJob } from '../helpers/workflow.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const DEADLINE_MS = 110_000
const RECIPE_TIMEOUT = { timeout: 120_000 }

/** The README's commands, exactly as it shows them. */
const COMMANDS = {
  vitest: 'npx vitest run --config examples/vitest/vitest.config.ts',
  playwright: 'npx playwright test -c examples/playwright',
  seed: 'npx pglite-dev-db --memory --port 0 --run "node examples/run-script/seed.mjs"',
  seedWithoutSchema: 'npx pglite-dev-db --memory --port 0 --no-migrations --run "node examples/run-script/seed.mjs"',
  drizzleMigrate: 'npx pglite-dev-db --memory --port 0 --no-migrations --run "npx drizzle-kit migrate --config examples/drizzle-kit/drizzle.config.ts && node examples/run-script/seed.mjs"',
  drizzlePush: 'npx pglite-dev-db --memory --port 0 --no-migrations --run "npx drizzle-kit push --config examples/drizzle-kit/drizzle.config.ts && node examples/run-script/seed.mjs"',
} as const

/** The example files the README shows in full. */
const SHOWN_FILES = [
  'examples/vitest/vitest.config.ts',
  'examples/vitest/global-setup.ts',
  'examples/vitest/db.ts',
  'examples/vitest/customers.test.ts',
  'examples/playwright/playwright.config.ts',
  'examples/playwright/database.spec.ts',
  'examples/github-actions/test.yml',
  'examples/run-script/seed.mjs',
  'examples/drizzle-kit/drizzle.config.ts',
]

/** This run's environment without the variables vitest set for itself, so a child vitest starts as from a shell. */
function shellEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const name of Object.keys(process.env)) if (name.startsWith('VITEST') || name === 'TEST') env[name] = undefined
  return env
}

/** Run one of the README's command lines through the shell, from the repo root. */
function shell(command: string, extra = ''): Promise<ProcessRun> {
  return runProcess('bash', ['-c', command + extra], { cwd: REPO, env: shellEnv(), deadlineMs: DEADLINE_MS })
}

async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(await scratchRoot(), prefix))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const lines = (run: ProcessRun) => run.stdout.toString().trim().split('\n')

describe('README recipes', () => {
  it('shows every example file as it is, and every command the tests run', async () => {
    const readme = await readFile(path.join(REPO, 'README.md'), 'utf8')
    for (const file of SHOWN_FILES) {
      const text = (await readFile(path.join(REPO, file), 'utf8')).trimEnd()
      expect(readme.includes(`\n${text}\n\`\`\``), `${file} as a code block in README.md`).toBe(true)
    }
    for (const command of Object.values(COMMANDS)) expect(readme).toContain(command)
  })

  it('vitest globalSetup: four workers at once, each on its own database, reset before each test', RECIPE_TIMEOUT, async () => {
    const report = path.join(await scratchDir('recipe-vitest-'), 'report.json')
    const run = await shell(COMMANDS.vitest, ` --reporter=json --outputFile=${report}`)
    expect(run.code, run.stderr).toBe(0)
    const result = JSON.parse(await readFile(report, 'utf8')) as { numPassedTests: number; numTotalTests: number; testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[] }> }> }
    expect(result.numPassedTests).toBe(8)
    expect(result.numTotalTests).toBe(8)
    // Each file names its database in its describe title ("customers in test_3").
    const databases = new Set(result.testResults.map((file) => file.assertionResults[0]!.ancestorTitles[0]!.split(' in ')[1]))
    expect([...databases].sort()).toEqual(['test_1', 'test_2', 'test_3', 'test_4'])
  })

  it('Playwright webServer: the server starts before the tests, which reach it through DATABASE_URL', RECIPE_TIMEOUT, async () => {
    const run = await shell(COMMANDS.playwright)
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0)
    expect(run.stdout.toString()).toMatch(/\b3 passed\b/)
    // The server was told to stop and did (gracefulShutdown), rather than being killed.
    expect(run.stderr).toMatch(/INFO {2}stopped/)
  })

  it('GitHub Actions: the job\'s run steps, in order, in a fresh copy of the repo', RECIPE_TIMEOUT, async () => {
    const workspace = await scratchDir('recipe-checkout-')
    const runnerTemp = await scratchDir('recipe-runner-temp-')
    // The checkout step: the repo's files as git would check them out (new files included while they are uncommitted).
    const listed = await runProcess('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO })
    const files = listed.stdout.toString().split('\0').filter((file) => file !== '')
    await Promise.all(files.map((file) => cp(path.join(REPO, file), path.join(workspace, file))))
    // npm ci would install exactly this node_modules again (same package-lock.json): it is linked instead, and the
    // `npm ci` step is skipped.
    await symlink(path.join(REPO, 'node_modules'), path.join(workspace, 'node_modules'))
    const job = await runJob(path.join(workspace, 'examples/github-actions/test.yml'), 'test', { workspace, runnerTemp, skip: ['npm ci'], deadlineMs: DEADLINE_MS })
    try {
      expect(job.skipped).toEqual(['uses: actions/checkout@v4', 'uses: actions/setup-node@v4', 'npm ci'])
      expect(job.steps.map((step) => [step.name, step.code])).toEqual([
        ['Start the database', 0],
        ['Seed', 0],
        ['Test', 0],
      ])
      expect(job.steps[1]!.output).toContain('seeded: 2 customers, 1 products')
      expect(job.steps[2]!.output).toMatch(/# pass 2\n# fail 0/)
    } finally {
      await job.stop()
    }
    // The server ran in the background from the first step to the end of the job, and stopped when told to.
    expect(await readFile(path.join(runnerTemp, 'database.log'), 'utf8')).toMatch(/INFO {2}ready [^]*INFO {2}stopped/)
  })

  it('a script under --run: it gets DATABASE_URL, and its exit status is the server\'s', RECIPE_TIMEOUT, async () => {
    const [seeded, failed] = await Promise.all([shell(COMMANDS.seed), shell(COMMANDS.seedWithoutSchema)])
    expect(seeded.code, seeded.stderr).toBe(0)
    expect(lines(seeded)).toEqual([expect.stringMatching(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/), 'seeded: 2 customers, 1 products'])
    // Without the schema the script fails, and so does the command.
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain('relation "customers" does not exist')
  })

  it('drizzle-kit migrate and push against the server, through DATABASE_URL', RECIPE_TIMEOUT, async () => {
    const [migrated, pushed] = await Promise.all([shell(COMMANDS.drizzleMigrate), shell(COMMANDS.drizzlePush)])
    expect(migrated.code, migrated.stderr).toBe(0)
    expect(migrated.stdout.toString()).toContain('migrations applied successfully')
    expect(migrated.stdout.toString()).toContain('seeded: 2 customers, 1 products')
    expect(pushed.code, pushed.stderr).toBe(0)
    expect(pushed.stdout.toString()).toContain('Changes applied')
    expect(pushed.stdout.toString()).toContain('seeded: 2 customers, 1 products')
  })
})
