// Start-up progress as a person (or a CI log parser) sees it through the CLI: one line per applied migration with
// its time, and a line naming a step still running past --progress-after-ms; with --log-format json, every line is JSON.
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { main } from '../../src/cli/main.ts'
import { captureIo } from '../helpers/cli-io.ts'
import { scratchRoot } from '../helpers/db.ts'

const VECTOR_MIGRATIONS = path.resolve('test/fixtures/vector-migrations')

interface JsonLine {
  time: string
  level: string
  msg: string
  [field: string]: unknown
}

describe('start-up progress', () => {
  it('--log-format json: migrations applied with their time, the slow template build named, every line JSON', async () => {
    const cacheDir = await mkdtemp(path.join(await scratchRoot(), 'pglite-progress-cache-'))
    onTestFinished(() => rm(cacheDir, { recursive: true, force: true }))
    const c = captureIo()
    // 0 ms: every step that lets the event loop turn is reported, so the line does not depend on how fast this machine is.
    const argv = [
      '--memory',
      '--port',
      '0',
      '--migrations',
      VECTOR_MIGRATIONS,
      '--extensions',
      'vector',
      '--cache-dir',
      cacheDir,
    ]
    const exit = main([...argv, '--progress-after-ms', '0', '--log-format', 'json', '--log-level', 'info'], c.io)
    const url = await c.firstLine
    c.stop()
    expect(await exit).toBe(0)
    expect(c.stdout).toEqual([url])

    const lines = c.stderr.map((line) => JSON.parse(line) as JsonLine)
    expect(lines.every((line) => typeof line.time === 'string' && line.level === 'info')).toBe(true)
    const messages = lines.map((line) => line.msg)
    expect(messages).toContain('still working')
    expect(lines.find((line) => line.msg === 'still working')).toMatchObject({
      step: 'building the database template (initdb + 2 migrations)',
      ms: expect.any(Number),
    })
    const applied = lines.filter((line) => line.msg === 'migration applied')
    expect(applied.map((line) => path.basename(String(line.file)))).toEqual([
      '0000_enable_vector.sql',
      '0001_documents.sql',
    ])
    for (const line of applied) expect(line.ms).toEqual(expect.any(Number))
    // In the order things happened: the build's progress line before its migrations, ready before stopping.
    expect(messages.indexOf('still working')).toBeLessThan(messages.indexOf('migration applied'))
    expect(messages.slice(-3)).toEqual(['ready', 'stopping', 'stopped'])
  })

  it('the pretty format names the step in words and lists each migration applied', async () => {
    const cacheDir = await mkdtemp(path.join(await scratchRoot(), 'pglite-progress-cache-'))
    onTestFinished(() => rm(cacheDir, { recursive: true, force: true }))
    const argv = [
      '--memory',
      '--port',
      '0',
      '--migrations',
      VECTOR_MIGRATIONS,
      '--extensions',
      'vector',
      '--cache-dir',
      cacheDir,
      '--log-level',
      'info',
    ]
    const first = captureIo()
    const exit = main([...argv, '--progress-after-ms', '0'], first.io)
    await first.firstLine
    first.stop()
    expect(await exit).toBe(0)
    expect(first.stderr.join('\n')).toMatch(
      / INFO {2}still working step="building the database template \(initdb \+ 2 migrations\)" ms=\d+/,
    )
    expect(first.stderr.filter((line) => line.includes(' migration applied file=')).length).toBe(2)
  })
})
