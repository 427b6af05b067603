// The command's defaults that follow the ecosystem: where drizzle-kit's migrations are (read from its config, never
// run), and the flag a mistyped one most likely meant.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { findMigrations, readOut } from '../../src/databases/migrations-dir.ts'
import { nearestFlag } from '../../src/cli/flags.ts'

async function projectWith(files: Record<string, string>, dirs: string[] = []): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pglite-cli-defaults-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  for (const sub of dirs) await mkdir(path.join(dir, sub), { recursive: true })
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text)
  return dir
}

describe('readOut: the out of a drizzle config, as written', () => {
  it.each([
    [
      `export default defineConfig({ dialect: 'postgresql', schema: './src/schema.ts', out: './db/migrations' })`,
      { kind: 'literal', value: './db/migrations' },
    ],
    [
      `export default {\n  out: "drizzle",\n  dbCredentials: { url: 'postgres://u@h:5432/db' },\n}`,
      { kind: 'literal', value: 'drizzle' },
    ],
    ['{ "dialect": "postgresql", "out": "./sql" }', { kind: 'literal', value: './sql' }],
    ["// out: './old'\nexport default defineConfig({ out: `./new` })", { kind: 'literal', value: './new' }],
    ["/* out: './old' */ export default defineConfig({ schema: './s.ts' })", { kind: 'absent' }],
    ['export default defineConfig({ out: process.env.OUT })', { kind: 'unreadable' }],
    ['const out = dir; export default defineConfig({ out, schema })', { kind: 'unreadable' }],
    [
      "export default defineConfig({ schema: './s.ts', dbCredentials: { url: 'postgres://x/out' } })",
      { kind: 'absent' },
    ],
  ])('%s', (source, expected) => {
    expect(readOut(source)).toEqual(expected)
  })
})

describe('findMigrations: the config out, else ./drizzle, else ./migrations', () => {
  it('follows the config out when that folder exists', async () => {
    const dir = await projectWith({ 'drizzle.config.ts': "export default { out: './db/out' }" }, [
      'db/out',
      'drizzle',
      'migrations',
    ])
    expect(findMigrations(dir)).toEqual({ dir: './db/out', from: 'drizzle.config.ts', note: null })
  })

  it('falls back with a note when the config out is missing or cannot be read', async () => {
    const missing = await projectWith({ 'drizzle.config.mjs': "export default { out: './nope' }" }, ['migrations'])
    expect(findMigrations(missing)).toMatchObject({
      dir: './migrations',
      from: 'default',
      note: expect.stringContaining("'./nope', which does not exist"),
    })
    const computed = await projectWith({ 'drizzle.config.js': 'export default { out: dir }' }, ['drizzle'])
    expect(findMigrations(computed)).toMatchObject({
      dir: './drizzle',
      from: 'default',
      note: expect.stringContaining('--migrations DIR'),
    })
  })

  it('takes ./drizzle (drizzle-kit default out) before ./migrations, and finds none in an empty project', async () => {
    expect(findMigrations(await projectWith({}, ['drizzle', 'migrations']))).toEqual({
      dir: './drizzle',
      from: 'default',
      note: null,
    })
    expect(findMigrations(await projectWith({}, ['migrations']))).toEqual({
      dir: './migrations',
      from: 'default',
      note: null,
    })
    expect(findMigrations(await projectWith({}))).toEqual({ dir: null, from: 'default', note: null })
  })
})

describe('nearestFlag', () => {
  it.each([
    ['prot', 'port'],
    ['data_dir', 'data-dir'],
    ['datadir', 'data-dir'],
    ['mem', 'memory'],
    ['migration', 'migrations'],
    ['max-connection', 'max-connections'],
    ['frobnicate', null],
    ['x', null],
  ])('--%s → %s', (given, expected) => {
    expect(nearestFlag(given)).toBe(expected)
  })
})
