// Where startDevDb and the command look for migrations when none is named: where drizzle-kit puts them. The `out` of
// a drizzle.config.* in the working directory, else ./drizzle (drizzle-kit's default `out`), else ./migrations.

import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'

/** The names drizzle-kit reads its config from, in the order it tries them. */
const CONFIG_FILES = [
  'drizzle.config.ts',
  'drizzle.config.mts',
  'drizzle.config.cts',
  'drizzle.config.js',
  'drizzle.config.mjs',
  'drizzle.config.cjs',
  'drizzle.config.json',
]
const FALLBACKS = ['./drizzle', './migrations']

export interface MigrationsLookup {
  /** The folder to apply, as the user would write it (relative to `cwd`); null when none was found. */
  dir: string | null
  /** Where `dir` came from: a config file's name, or 'default'. */
  from: string
  /** Something the user should know (an `out` that cannot be read, or that names a missing folder). */
  note: string | null
}

/**
 * Find the migrations folder under `cwd`. The config is read, not run (running it would run the user's imports, and a
 * .ts file needs a loader Node 20 lacks): `out` must be written as a string literal, as drizzle-kit's docs show it.
 */
export function findMigrations(cwd: string): MigrationsLookup {
  const config = CONFIG_FILES.find((name) => existsSync(path.join(cwd, name)))
  let note: string | null = null
  if (config) {
    const out = readOut(readFileSync(path.join(cwd, config), 'utf8'))
    if (out.kind === 'literal') {
      if (existsSync(path.join(cwd, out.value))) return { dir: out.value, from: config, note: null }
      note = `${config} sets out to '${out.value}', which does not exist (yet: drizzle-kit generate writes it)`
    } else if (out.kind === 'unreadable') {
      note = `${config} sets out to something other than a string literal; pass --migrations DIR to name the folder`
    }
  }
  const fallback = FALLBACKS.find((dir) => existsSync(path.join(cwd, dir)))
  return { dir: fallback ?? null, from: 'default', note }
}

type Out = { kind: 'literal'; value: string } | { kind: 'absent' } | { kind: 'unreadable' }

/** The `out` property of a drizzle config's source, with comments taken out first (a commented-out `out` is not one). */
export function readOut(source: string): Out {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
  const literal = /(?:^|[\s,{])["']?out["']?\s*:\s*(["'`])([^"'`\n]+)\1/m.exec(code)
  if (literal) return { kind: 'literal', value: literal[2]! }
  return /(?:^|[\s,{])["']?out["']?\s*[:,}]/m.test(code) ? { kind: 'unreadable' } : { kind: 'absent' }
}
