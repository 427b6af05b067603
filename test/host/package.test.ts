// The npm package as a user gets it: `npm pack` of this checkout (prepack builds dist/), installed into fresh projects
// from the local npm cache, then run on Node 20, 22 and 24: the bin prints a URL, import and require start a database
// and query it, tsc --strict --module nodenext type-checks a consumer (with the repo's TypeScript and @types/node, and
// with TypeScript 7 and the newest @types/node, which load no @types package unasked); and the three shapes of the fix
// for pglite-socket users. A failure names the project directory (kept) and the command that replays it.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { runProcess } from '../../harness/process.ts'
import { withDeadline } from '../../harness/raw-client.ts'
import { CAN_FETCH_NODE, NODE_VERSIONS, nodeBinDir, npmEnv } from '../helpers/node-versions.ts'
import { packedTarball } from '../helpers/packed.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'package')
const PACKAGE = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}
/** What the consumer projects install besides the package, pinned as this repo pins them (so npm's cache has them). */
const pin = (name: string): string => `${name}@${PACKAGE.dependencies[name] ?? PACKAGE.devDependencies[name]}`
const STOCK_SOCKET = '@electric-sql/pglite-socket@0.2.17'
/**
 * What a user who runs `npm i -D typescript @types/node` gets today. TypeScript 6 and later load no `@types/*` package
 * unless told to, so our declarations must bring Node's types themselves. @types/node comes from the devDependency
 * alias `types-node-26`, which puts it in npm's cache. TypeScript 7 is no alias: its `tsc` bin would take
 * node_modules/.bin/tsc from the repo's TypeScript 5.9 whenever an `npm install` links it alone, so the first run on a
 * machine fetches it (with its platform package, @typescript/typescript-<platform>-<arch>) and later runs find it cached.
 */
const TYPESCRIPT_NEXT = 'typescript@7.0.2'
const TYPES_NODE_NEXT = PACKAGE.devDependencies['types-node-26']!.replace(/^npm:/, '')
/** What `prisma dev` runs; it pins @electric-sql/pglite 0.4.3 and @electric-sql/pglite-socket 0.1.3. */
const PRISMA_DEV = '@prisma/dev@0.25.2'

const INSTALL_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']
const TIMEOUT_MS = 240_000

let work = ''
let tarball = ''
let keep = false

/** A command that must succeed; its failure says where it ran and how to replay it. */
async function must(
  what: string,
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; deadlineMs?: number },
): Promise<string> {
  const env = options.env ?? npmEnv()
  const run = await runProcess(command, args, { cwd: options.cwd, env, deadlineMs: options.deadlineMs ?? 120_000 })
  if (run.code !== 0) {
    keep = true
    const pathNote = env.PATH && env.PATH !== process.env.PATH ? `PATH=${env.PATH.split(':')[0]}:$PATH ` : ''
    throw new Error(
      `${what} failed (exit ${run.code})\nreplay: cd ${options.cwd} && ${pathNote}${[command, ...args].join(' ')}\n` +
        `--- stdout\n${run.stdout.toString().slice(-4000)}\n--- stderr\n${run.stderr.slice(-4000)}`,
    )
  }
  return run.stdout.toString()
}

/** The last stdout line of a fixture script, as JSON. */
function lastJsonLine(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>
}

/** A fresh project directory with a package.json. */
async function project(name: string, manifest: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(work, name)
  await mkdir(dir, { recursive: true })
  await writeFile(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name, version: '1.0.0', private: true, ...manifest }, null, 2)}\n`,
  )
  return dir
}

let consumer = ''

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'pglite-dev-db-package-'))
  // prepack builds dist/ first: what is installed below is what `npm publish` would upload.
  tarball = await packedTarball()
  consumer = await project('consumer')
  for (const file of ['consumer.mjs', 'consumer.cjs', 'consumer.ts', 'pglite-socket-check.mjs'])
    await copyFile(path.join(FIXTURES, file), path.join(consumer, file))
  await copyFile(path.join(FIXTURES, 'consumer.ts'), path.join(consumer, 'consumer.mts'))
  await must(
    'installing the package',
    'npm',
    ['install', ...INSTALL_FLAGS, '-D', tarball, pin('pg'), pin('typescript'), pin('@types/node')],
    { cwd: consumer, deadlineMs: 180_000 },
  )
}, 360_000)

afterAll(async () => {
  if (keep) {
    console.error(`package test: kept ${work} for a replay`)
    return
  }
  if (work) await rm(work, { recursive: true, force: true })
})

describe('the packed package', () => {
  it('holds only what a user runs and the docs its README links to, and no install script', async () => {
    onTestFailed(() => void (keep = true))
    const listing = await must('listing the tarball', 'tar', ['-tzf', tarball], { cwd: work })
    const files = listing.trim().split('\n')
    const tops = new Set(
      files.map((file) =>
        file
          .split('/')
          .slice(1, file.startsWith('package/dist/') ? 3 : 2)
          .join('/'),
      ),
    )
    expect([...tops].sort()).toEqual(['README.md', 'bin', 'dist/cjs', 'dist/esm', 'docs', 'package.json', 'patches'])
    expect(files).toContain('package/dist/esm/engine/thread-worker.js')
    // The pages users read, and no result files.
    expect(files.filter((file) => file.startsWith('package/docs/') && !file.endsWith('.md'))).toEqual([])
    expect(files.filter((file) => /\.ts$/.test(file) && !file.endsWith('.d.ts'))).toEqual([])
    const manifest = JSON.parse(
      await readFile(path.join(consumer, 'node_modules', 'pglite-dev-db', 'package.json'), 'utf8'),
    ) as { scripts: Record<string, string>; dependencies: Record<string, string> }
    // npm 11 asks a user to approve these (prepare too, for a tarball install); the clone's patch-package runs on
    // `dependencies`, which npm runs only in the project's own root.
    expect(Object.keys(manifest.scripts).filter((name) => /^(pre|post)?(install|prepare)$/.test(name))).toEqual([])
    expect(Object.keys(manifest.dependencies).sort()).toEqual(Object.keys(PACKAGE.dependencies).sort())
  })

  it("links only to files it holds (README, docs), or to the repository's CONTRIBUTING.md", async () => {
    onTestFailed(() => void (keep = true))
    const installed = path.join(consumer, 'node_modules', 'pglite-dev-db')
    const docs = (await readdir(path.join(installed, 'docs'))).map((name) => `docs/${name}`)
    expect(docs.sort()).toEqual(
      (await readdir(path.join(ROOT, 'docs')))
        .filter((name) => name.endsWith('.md'))
        .map((name) => `docs/${name}`)
        .sort(),
    )
    const missing: string[] = []
    for (const file of ['README.md', ...docs, 'patches/README.md']) {
      const text = await readFile(path.join(installed, file), 'utf8')
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue
        const relative = path.join(path.dirname(file), decodeURIComponent(target!.replace(/#.*$/, '')))
        // For working on pglite-dev-db itself, in a clone: not shipped.
        if (relative === 'CONTRIBUTING.md' && existsSync(path.join(ROOT, relative))) continue
        if (!existsSync(path.join(installed, relative))) missing.push(`${file} -> ${target}`)
      }
    }
    expect(missing).toEqual([])
  })

  it(
    'type-checks under tsc --strict --module nodenext, as CommonJS (.ts) and as an ES module (.mts)',
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      await must(
        'tsc on the consumer',
        process.execPath,
        [
          'node_modules/typescript/bin/tsc',
          '--strict',
          '--module',
          'nodenext',
          '--noEmit',
          'consumer.ts',
          'consumer.mts',
        ],
        { cwd: consumer },
      )
    },
  )

  it(
    `type-checks the same with ${TYPESCRIPT_NEXT} and ${TYPES_NODE_NEXT}, no other settings`,
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      const next = await project('consumer-ts-next')
      await copyFile(path.join(FIXTURES, 'consumer.ts'), path.join(next, 'consumer.ts'))
      await copyFile(path.join(FIXTURES, 'consumer.ts'), path.join(next, 'consumer.mts'))
      await must(
        'installing the package with the newest TypeScript',
        'npm',
        ['install', ...INSTALL_FLAGS, '-D', tarball, TYPESCRIPT_NEXT, TYPES_NODE_NEXT],
        { cwd: next, deadlineMs: 180_000 },
      )
      const version = (name: string) =>
        (JSON.parse(readFileSync(path.join(next, 'node_modules', name, 'package.json'), 'utf8')) as { version: string })
          .version
      expect([version('typescript'), version('@types/node')]).toEqual([
        TYPESCRIPT_NEXT.split('@')[1],
        TYPES_NODE_NEXT.split('@').pop(),
      ])
      // TypeScript 7 is a native binary, one optional dependency per platform: npm installs only this machine's.
      expect(
        existsSync(path.join(next, 'node_modules', '@typescript', `typescript-${process.platform}-${process.arch}`)),
      ).toBe(true)
      const tsc = path.join('node_modules', 'typescript', 'bin', 'tsc')
      await must(
        'tsc 7 on the consumer',
        process.execPath,
        [tsc, '--strict', '--module', 'nodenext', '--noEmit', 'consumer.ts', 'consumer.mts'],
        { cwd: next },
      )
      await must(
        'tsc 7 on the consumer, as the user ran it',
        process.execPath,
        [
          tsc,
          '--noEmit',
          '--strict',
          '--module',
          'nodenext',
          '--moduleResolution',
          'nodenext',
          '--target',
          'es2022',
          'consumer.ts',
        ],
        { cwd: next },
      )
    },
  )
})

describe.each(CAN_FETCH_NODE ? NODE_VERSIONS : [process.versions.node])('on Node %s', (version) => {
  let env: NodeJS.ProcessEnv = {}
  beforeAll(async () => {
    const bin = CAN_FETCH_NODE ? await nodeBinDir(version) : path.dirname(process.execPath)
    env = npmEnv({ PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` })
    expect((await must('node --version', 'node', ['--version'], { cwd: consumer, env })).trim()).toBe(`v${version}`)
  }, 360_000)

  it(
    'the bin prints the URL as its only stdout line, serves it, stops a statement at its statement_timeout, and stops on SIGINT',
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      // What `npx pglite-dev-db` runs (npx itself answers a signal with its own status, 130, whatever the bin's).
      const child = spawn(path.join('node_modules', '.bin', 'pglite-dev-db'), ['--port', '0', '--memory'], {
        cwd: consumer,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      try {
        const lines = createInterface({ input: child.stdout })
        const firstLine = once(lines, 'line').then(([line]) => line as string)
        const early = exited.then(([code]) =>
          Promise.reject(new Error(`the bin exited ${code} before printing a URL:\n${stderr}`)),
        )
        const url = await withDeadline(Promise.race([firstLine, early]), 120_000, 'the URL line')
        expect(url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/)
        const client = new pg.Client(url)
        await client.connect()
        try {
          expect((await client.query('select 6 * 7 as n')).rows).toEqual([{ n: 42 }])
          // Stopping a statement reaches into the database thread through node:inspector (host/engine/interrupt.ts),
          // which each Node major may change: a loop of pure computation, ended by statement_timeout, on this Node.
          await client.query('set statement_timeout = 300')
          await expect(client.query('do $$begin loop end loop; end$$')).rejects.toMatchObject({
            code: '57014',
            message: 'canceling statement due to statement timeout',
          })
          expect((await client.query('select 1 as n')).rows).toEqual([{ n: 1 }])
        } finally {
          await client.end()
        }
        child.kill('SIGINT')
        const [code] = await withDeadline(exited, 60_000, 'the bin to stop')
        expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' })
      } finally {
        child.kill('SIGKILL')
      }
    },
  )

  it(
    'import: an .mjs file starts a database and queries it, in process and in a worker-thread database',
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      const result = lastJsonLine(await must('node consumer.mjs', 'node', ['consumer.mjs'], { cwd: consumer, env }))
      expect(result).toEqual({ answer: 42, wire: [9, 6, 7], inThread: true, sameServerClass: true })
    },
  )

  it('require: a .cjs file starts a database and queries it', { timeout: TIMEOUT_MS }, async () => {
    onTestFailed(() => void (keep = true))
    const result = lastJsonLine(await must('node consumer.cjs', 'node', ['consumer.cjs'], { cwd: consumer, env }))
    expect(result).toEqual({ answer: 42, wire: [9], sameServerClass: true })
  })
})

describe('for pglite-socket users', () => {
  /** Every client query right, none failed: what stock pglite-socket does not give under this load. */
  const FIXED = { patchedBy: 'pglite-dev-db', ok: 100, wrong: 0, errors: [] }

  it('the drop-in: PGLiteSocketServer from pglite-dev-db/socket', { timeout: TIMEOUT_MS }, async () => {
    onTestFailed(() => void (keep = true))
    const result = lastJsonLine(
      await must('the drop-in check', process.execPath, ['pglite-socket-check.mjs', 'pglite-dev-db/socket'], {
        cwd: consumer,
      }),
    )
    expect(result).toEqual(FIXED)
  })

  it(
    'an npm override gives a package that depends on @electric-sql/pglite-socket this server',
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      // A third-party package as @prisma/dev is one: it depends on stock pglite-socket and re-exports its server.
      const thirdParty = await project('third-party', {
        type: 'module',
        main: 'index.js',
        dependencies: { '@electric-sql/pglite-socket': '0.2.17' },
      })
      await writeFile(
        path.join(thirdParty, 'index.js'),
        "export { PGLiteSocketServer, PATCHED_BY } from '@electric-sql/pglite-socket'\n",
      )
      const packed = await must('npm pack third-party', 'npm', ['pack', '--json', '--pack-destination', work], {
        cwd: thirdParty,
      })
      const thirdPartyTarball = path.join(work, (JSON.parse(packed) as Array<{ filename: string }>)[0]!.filename)
      const app = await project('override-app', { overrides: { '@electric-sql/pglite-socket': `file:${tarball}` } })
      await copyFile(path.join(FIXTURES, 'pglite-socket-check.mjs'), path.join(app, 'pglite-socket-check.mjs'))
      await must(
        'installing with the override',
        'npm',
        ['install', ...INSTALL_FLAGS, thirdPartyTarball, pin('@electric-sql/pglite'), pin('pg')],
        { cwd: app, deadlineMs: 180_000 },
      )
      const installed = JSON.parse(
        await readFile(path.join(app, 'node_modules', '@electric-sql', 'pglite-socket', 'package.json'), 'utf8'),
      ) as { name: string }
      expect(installed.name).toBe('pglite-dev-db')
      const result = lastJsonLine(
        await must('the override check', process.execPath, ['pglite-socket-check.mjs', 'third-party'], { cwd: app }),
      )
      expect(result).toEqual(FIXED)
    },
  )

  it(
    '@prisma/dev (prisma dev, on pglite-socket 0.1.3) under the override: its server runs on this one, and clients stop colliding',
    { timeout: TIMEOUT_MS },
    async () => {
      onTestFailed(() => void (keep = true))
      // @prisma/dev needs Node 22.5+ (node:sqlite).
      const bin = CAN_FETCH_NODE ? await nodeBinDir('22.23.3') : path.dirname(process.execPath)
      const env = npmEnv({ PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`, NODE_NO_WARNINGS: '1' })
      const app = await project('prisma-dev-app', {
        type: 'module',
        overrides: { '@electric-sql/pglite-socket': `file:${tarball}` },
      })
      await copyFile(path.join(FIXTURES, 'prisma-dev-check.mjs'), path.join(app, 'prisma-dev-check.mjs'))
      await must(
        'installing @prisma/dev with the override',
        'npm',
        ['install', ...INSTALL_FLAGS, PRISMA_DEV, pin('postgres')],
        { cwd: app, env, deadlineMs: 240_000 },
      )
      const result = lastJsonLine(
        await must('the @prisma/dev check', 'node', ['prisma-dev-check.mjs'], { cwd: app, env }),
      )
      expect(result).toEqual({ patchedBy: 'pglite-dev-db', ok: 120, wrong: 0, errors: [] })
    },
  )

  it('the patch file with patch-package, following docs/pglite-socket.md', { timeout: TIMEOUT_MS }, async () => {
    onTestFailed(() => void (keep = true))
    const app = await project('patched-app')
    await copyFile(path.join(FIXTURES, 'pglite-socket-check.mjs'), path.join(app, 'pglite-socket-check.mjs'))
    await must(
      'installing stock pglite-socket',
      'npm',
      ['install', ...INSTALL_FLAGS, STOCK_SOCKET, pin('@electric-sql/pglite'), pin('pg')],
      { cwd: app, deadlineMs: 180_000 },
    )
    const stock = lastJsonLine(
      await must('the stock check', process.execPath, ['pglite-socket-check.mjs', '@electric-sql/pglite-socket'], {
        cwd: app,
      }),
    )
    expect(stock.patchedBy).toBeNull()
    // docs/pglite-socket.md's steps, with the tarball.
    await must('npm i -D patch-package', 'npm', ['install', ...INSTALL_FLAGS, '-D', pin('patch-package')], {
      cwd: app,
      deadlineMs: 180_000,
    })
    await must('npm pkg set scripts.postinstall', 'npm', ['pkg', 'set', 'scripts.postinstall=patch-package'], {
      cwd: app,
    })
    await mkdir(path.join(app, 'patches'))
    await must(
      'extracting the patch',
      'tar',
      [
        '-xzf',
        tarball,
        '-C',
        'patches',
        '--strip-components=2',
        'package/patches/@electric-sql+pglite-socket+0.2.17.patch',
      ],
      { cwd: app },
    )
    await must('npm install', 'npm', ['install', ...INSTALL_FLAGS], { cwd: app, deadlineMs: 180_000 })
    const result = lastJsonLine(
      await must('the patched check', process.execPath, ['pglite-socket-check.mjs', '@electric-sql/pglite-socket'], {
        cwd: app,
      }),
    )
    expect(result).toEqual(FIXED)
  })
})
