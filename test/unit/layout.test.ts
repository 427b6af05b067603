// The layout docs/ARCHITECTURE.md describes, checked from the sources' own imports: each part of src/ imports only
// from the parts below it, no file imports itself back through others, and src/ takes nothing from the tests or
// the tools.
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const REPO = fileURLToPath(new URL('../..', import.meta.url))

/** The parts of src/, from the top (0) down: a part may import its own files and those of parts with a higher rank. */
const RANKS: ReadonlyArray<[part: string, rank: number]> = [
  ['src/index.ts', 0],
  ['src/cli', 0],
  ['src/runners', 0],
  ['src/databases', 1],
  ['src/engine', 2],
  ['src/server/index.ts', 3],
  ['src/server/server.ts', 4],
  ['src/server/handler.ts', 4],
  ['src/server/options.ts', 5],
  ['src/server/connection', 6],
  ['src/server/features', 7],
  ['src/server/session', 8],
  ['src/server/trace', 8],
  ['src/server/protocol', 9],
  ['src/server/sql', 10],
  ['src/log.ts', 10],
  ['src/errors.ts', 10],
]

function sources(dir: string): string[] {
  return readdirSync(path.join(REPO, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = `${dir}/${entry.name}`
    if (entry.isDirectory()) return sources(relative)
    return entry.name.endsWith('.ts') ? [relative] : []
  })
}

/** The repo-relative files a source imports (relative specifiers only: packages and builtins are not ours). */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(REPO, file), 'utf8')
  const found: string[] = []
  for (const match of text.matchAll(/^(?:import|export)[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/gm)) {
    found.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), match[1]!)))
  }
  return found
}

function partOf(file: string): [string, number] {
  const part = RANKS.find(([prefix]) => file === prefix || file.startsWith(`${prefix}/`))
  if (!part) throw new Error(`${file} is in no part of the layout: add it to RANKS and docs/ARCHITECTURE.md`)
  return part
}

const files = sources('src')
const graph = new Map(files.map((file) => [file, importsOf(file)]))

describe('the layout of src/', () => {
  it('imports nothing from test/, harness/ or scripts/', () => {
    const outside = [...graph].flatMap(([file, imports]) =>
      imports.filter((target) => !target.startsWith('src/')).map((target) => `${file} -> ${target}`),
    )
    expect(outside).toEqual([])
  })

  it('each part imports only its own files and the parts below it', () => {
    const upward: string[] = []
    for (const [file, imports] of graph) {
      const [part, rank] = partOf(file)
      for (const target of imports) {
        const [targetPart, targetRank] = partOf(target)
        if (targetPart !== part && targetRank <= rank) upward.push(`${file} -> ${target}`)
      }
    }
    expect(upward).toEqual([])
  })

  it('has no import circles', () => {
    const circles: string[] = []
    const state = new Map<string, 'open' | 'done'>()
    const visit = (file: string, trail: string[]): void => {
      if (state.get(file) === 'done') return
      if (state.get(file) === 'open') {
        circles.push([...trail.slice(trail.indexOf(file)), file].join(' -> '))
        return
      }
      state.set(file, 'open')
      for (const target of graph.get(file) ?? []) visit(target, [...trail, file])
      state.set(file, 'done')
    }
    for (const file of files) visit(file, [])
    expect(circles).toEqual([])
  })
})
