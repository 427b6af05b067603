// The tar reader/rewriter used for snapshots, checked against GNU tar's own ustar archives. No PGlite.
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { listTar, rewriteTar, TarFormatError } from '../../src/databases/tar.ts'
import { scratchRoot } from '../helpers/db.ts'

async function ustar(files: Record<string, string>): Promise<{ dir: string; tar: Uint8Array }> {
  const dir = await mkdtemp(path.join(await scratchRoot(), 'pglite-tar-'))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content)
  execFileSync('tar', ['--format=ustar', '-cf', 'archive.tar', '-C', dir, ...Object.keys(files)], { cwd: dir })
  return { dir, tar: await readFile(path.join(dir, 'archive.tar')) }
}

describe('tar', () => {
  it('lists entries and rewrites them (one dropped, one moved last) into an archive tar reads back', async () => {
    const { dir, tar } = await ustar({
      PG_VERSION: '18\n',
      'big-file': 'x'.repeat(1500),
      'pglite-dev-db.lock': '123\n',
      zeta: '',
    })
    const entries = listTar(tar)
    expect(entries.map((e) => e.name)).toEqual(['PG_VERSION', 'big-file', 'pglite-dev-db.lock', 'zeta'])
    expect(entries[1]!.end - entries[1]!.start).toBe(512 + 1536)

    const out = rewriteTar(
      tar,
      entries,
      (name) => name === 'pglite-dev-db.lock',
      (name) => name === 'PG_VERSION',
    )
    await writeFile(path.join(dir, 'out.tar'), out)
    expect(execFileSync('tar', ['-tf', 'out.tar'], { cwd: dir, encoding: 'utf8' }).split('\n').filter(Boolean)).toEqual(
      ['big-file', 'zeta', 'PG_VERSION'],
    )
    expect(execFileSync('tar', ['-xOf', 'out.tar', 'big-file'], { cwd: dir, encoding: 'utf8' })).toBe('x'.repeat(1500))
    expect(listTar(out).map((e) => e.name)).toEqual(['big-file', 'zeta', 'PG_VERSION'])
  })

  it('rejects what is not a whole ustar archive', async () => {
    const { tar } = await ustar({ PG_VERSION: '18\n', data: 'y'.repeat(2000) })
    expect(() => listTar(tar.subarray(0, 1024))).toThrow(TarFormatError)
    expect(() => listTar(new TextEncoder().encode('hello'.repeat(200)))).toThrow(/no ustar header at byte 0/)
    // Entries without the end-of-archive blocks.
    expect(() => listTar(tar.subarray(0, 512 + 512 + 512 + 2048))).toThrow(/no end-of-archive marker/)
  })
})
