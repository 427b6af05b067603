// The recipes of docs/test-runners.md and docs/migrations.md, run as a user runs them: the packed package installed
// in a fresh drizzle project (its migrations in ./drizzle), the example files copied in as they are, and each
// command the docs show run there through the shell. Every example file is shown in the docs as it is.
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { runProcess, type ProcessRun } from '../../harness/process.ts'
import { npmEnv } from '../helpers/node-versions.ts'
import { packedTarball } from '../helpers/packed.ts'
import { runJob } from '../helpers/workflow.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const EXAMPLES = path.join(REPO, 'examples')
const DEADLINE_MS = 110_000
const RECIPE_TIMEOUT = { timeout: 120_000 }
const PACKAGE = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>
}
/** What a user of the recipes installs beside the package, pinned as this repo pins them (so npm's cache has them). */
const USER_PACKAGES = [
  'pg',
  '@types/pg',
  'postgres',
  'vitest',
  '@playwright/test',
  'drizzle-kit',
  'drizzle-orm',
  'typescript',
  '@types/node',
].map((name) => `${name}@${PACKAGE.devDependencies[name]}`)

/** The commands the docs show, exactly. */
const COMMANDS = {
  vitest: 'npx vitest run',
  playwright: 'npx playwright test',
  seed: 'npx pglite-dev-db --memory --port 0 --run "node seed.mjs"',
  seedWithoutSchema: 'npx pglite-dev-db --memory --port 0 --no-migrations --run "node seed.mjs"',
  drizzleMigrate:
    'npx pglite-dev-db --memory --port 0 --no-migrations --run "npx drizzle-kit migrate && node seed.mjs"',
  drizzlePush: 'npx pglite-dev-db --memory --port 0 --no-migrations --run "npx drizzle-kit push && node seed.mjs"',
} as const

/** The example files the docs show in full, and the page each is on. */
const SHOWN_FILES: Array<[file: string, page: string]> = [
  ['vitest/vitest.config.ts', 'docs/test-runners.md'],
  ['vitest/customers.test.ts', 'docs/test-runners.md'],
  ['playwright/playwright.config.ts', 'docs/test-runners.md'],
  ['github-actions/test.yml', 'docs/test-runners.md'],
  ['run-script/seed.mjs', 'docs/migrations.md'],
  ['drizzle-kit/drizzle.config.ts', 'docs/migrations.md'],
]

let work = ''
let deps = ''
let keep = false

/** This run's environment without the variables vitest set for itself, so a child vitest starts as from a shell. */
function shellEnv(): NodeJS.ProcessEnv {
  const env = npmEnv()
  for (const name of Object.keys(process.env))
    if (name.startsWith('VITEST') || name === 'TEST' || name.startsWith('PGLITE_DEV_DB')) env[name] = undefined
  return env
}

/** Run a command line through the shell in `cwd`. */
function shell(cwd: string, command: string, extra = ''): Promise<ProcessRun> {
  return runProcess('bash', ['-c', command + extra], { cwd, env: shellEnv(), deadlineMs: DEADLINE_MS })
}

/** A user's drizzle project (drizzle.config.ts, schema.ts, its migrations in ./drizzle) with one recipe's files. */
async function project(name: string, recipe: string, manifest: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(work, name)
  await mkdir(dir)
  await writeFile(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name, private: true, type: 'module', ...manifest }, null, 2)}\n`,
  )
  await cp(path.join(EXAMPLES, 'drizzle-kit', 'drizzle.config.ts'), path.join(dir, 'drizzle.config.ts'))
  await cp(path.join(EXAMPLES, 'schema.ts'), path.join(dir, 'schema.ts'))
  await cp(path.join(REPO, 'migrations'), path.join(dir, 'drizzle'), { recursive: true })
  await cp(path.join(EXAMPLES, recipe), dir, { recursive: true })
  // One install for every project: what npm would put in each is the same.
  await symlink(path.join(deps, 'node_modules'), path.join(dir, 'node_modules'))
  return dir
}

const lines = (run: ProcessRun) => run.stdout.toString().trim().split('\n')
const failure = (run: ProcessRun) =>
  `exit ${run.code}\n--- stdout\n${run.stdout.toString().slice(-3000)}\n--- stderr\n${run.stderr.slice(-3000)}`

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-recipes-'))
  deps = path.join(work, 'deps')
  await mkdir(deps)
  await writeFile(path.join(deps, 'package.json'), '{ "name": "deps", "private": true }\n')
  const install = await runProcess(
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      '-D',
      await packedTarball(),
      ...USER_PACKAGES,
    ],
    { cwd: deps, env: npmEnv(), deadlineMs: 240_000 },
  )
  if (install.code !== 0) {
    keep = true
    throw new Error(`installing the package and the recipes' packages in ${deps} failed: ${failure(install)}`)
  }
}, 480_000)

afterAll(async () => {
  if (keep) console.error(`recipes test: kept ${work}`)
  else if (work) await rm(work, { recursive: true, force: true })
})

describe('the recipes, in a fresh project with the packed package', () => {
  it('are shown in the docs as they are, with the commands the tests run', async () => {
    for (const [file, page] of SHOWN_FILES) {
      const text = (await readFile(path.join(EXAMPLES, file), 'utf8')).trimEnd()
      const doc = await readFile(path.join(REPO, page), 'utf8')
      expect(doc.includes(`\n${text}\n\`\`\``), `examples/${file} as a code block in ${page}`).toBe(true)
    }
    const docs = (
      await Promise.all(
        [
          path.join(REPO, 'README.md'),
          ...(await readdir(path.join(REPO, 'docs'))).map((name) => path.join(REPO, 'docs', name)),
        ]
          .filter((file) => file.endsWith('.md'))
          .map((file) => readFile(file, 'utf8')),
      )
    ).join('\n')
    for (const command of Object.values(COMMANDS)) expect(docs).toContain(command)
  })

  it('type-check as a user has them (tsc --strict --module nodenext)', RECIPE_TIMEOUT, async () => {
    onTestFailed(() => void (keep = true))
    const dir = await project('typecheck', 'vitest')
    await cp(path.join(EXAMPLES, 'playwright'), dir, { recursive: true })
    const files = (await readdir(dir)).filter((file) => file.endsWith('.ts'))
    const run = await runProcess(
      process.execPath,
      ['node_modules/typescript/bin/tsc', '--noEmit', '--strict', '--module', 'nodenext', '--skipLibCheck', ...files],
      { cwd: dir, deadlineMs: DEADLINE_MS },
    )
    expect(run.code, failure(run)).toBe(0)
  })

  it('vitest: one server, each worker on a database of its own, reset before each test', RECIPE_TIMEOUT, async () => {
    onTestFailed(() => void (keep = true))
    const dir = await project('vitest', 'vitest')
    const report = path.join(dir, 'report.json')
    const run = await shell(dir, COMMANDS.vitest, ` --maxWorkers=4 --reporter=json --outputFile=${report}`)
    expect(run.code, failure(run)).toBe(0)
    const result = JSON.parse(await readFile(report, 'utf8')) as {
      numPassedTests: number
      numTotalTests: number
      testResults: Array<{ assertionResults: Array<{ ancestorTitles: string[] }> }>
    }
    expect([result.numPassedTests, result.numTotalTests]).toEqual([8, 8])
    // Each file names its database in its describe title ("customers in test_3").
    const databases = new Set(
      result.testResults.map((file) => file.assertionResults[0]!.ancestorTitles[0]!.split(' in ')[1]),
    )
    expect([...databases].sort()).toEqual(['test_1', 'test_2', 'test_3', 'test_4'])
  })

  it(
    'Playwright webServer: the server starts before the tests, which reach it through DATABASE_URL',
    RECIPE_TIMEOUT,
    async () => {
      onTestFailed(() => void (keep = true))
      const dir = await project('playwright', 'playwright')
      const run = await shell(dir, COMMANDS.playwright)
      expect(run.code, failure(run)).toBe(0)
      expect(run.stdout.toString()).toMatch(/\b3 passed\b/)
      // The server was told to stop and did (gracefulShutdown), rather than being killed.
      expect(run.stderr).toMatch(/INFO {2}stopped/)
    },
  )

  it("GitHub Actions: the job's run steps, in order, in the checked-out project", RECIPE_TIMEOUT, async () => {
    onTestFailed(() => void (keep = true))
    const dir = await project('github-actions', 'github-actions', { scripts: { test: 'node --test' } })
    const runnerTemp = path.join(work, 'runner-temp')
    await mkdir(runnerTemp)
    // node_modules is in place: `npm ci` would install the same.
    const job = await runJob(path.join(dir, 'test.yml'), 'test', {
      workspace: dir,
      runnerTemp,
      skip: ['npm ci'],
      deadlineMs: DEADLINE_MS,
    })
    try {
      expect(job.skipped).toEqual(['uses: actions/checkout@v4', 'uses: actions/setup-node@v4', 'npm ci'])
      expect(
        job.steps.map((step) => step.code),
        job.steps.map((step) => step.output).join('\n'),
      ).toEqual([0])
      expect(job.steps[0]!.output).toMatch(/# pass 1\n# fail 0/)
    } finally {
      await job.stop()
    }
  })

  it("a script under --run: it gets DATABASE_URL, and its exit status is the server's", RECIPE_TIMEOUT, async () => {
    onTestFailed(() => void (keep = true))
    const dir = await project('run-script', 'run-script')
    const [seeded, failed] = await Promise.all([shell(dir, COMMANDS.seed), shell(dir, COMMANDS.seedWithoutSchema)])
    expect(seeded.code, failure(seeded)).toBe(0)
    expect(lines(seeded)).toEqual([
      expect.stringMatching(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/),
      'seeded: 2 customers, 1 products',
    ])
    // Without the schema the script fails, and so does the command.
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain('relation "customers" does not exist')
  })

  it('drizzle-kit migrate and push against the server, through DATABASE_URL', RECIPE_TIMEOUT, async () => {
    onTestFailed(() => void (keep = true))
    const dir = await project('drizzle-kit', 'run-script')
    const [migrated, pushed] = await Promise.all([
      shell(dir, COMMANDS.drizzleMigrate),
      shell(dir, COMMANDS.drizzlePush),
    ])
    expect(migrated.code, failure(migrated)).toBe(0)
    expect(migrated.stdout.toString()).toContain('migrations applied successfully')
    expect(migrated.stdout.toString()).toContain('seeded: 2 customers, 1 products')
    expect(pushed.code, failure(pushed)).toBe(0)
    expect(pushed.stdout.toString()).toContain('Changes applied')
    expect(pushed.stdout.toString()).toContain('seeded: 2 customers, 1 products')
  })
})
