// The README's flags table is the command's own table (src/cli/flags.ts): `npm run docs:flags` writes it.
import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { FLAGS } from '../../src/cli/flags.ts'
import { END_MARKER, flagsTable, START_MARKER, withFlagsTable } from '../../scripts/flags-table.ts'

describe('the README flags table', () => {
  it('is what src/cli/flags.ts makes (npm run docs:flags writes it)', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
    expect(readme, 'README.md differs from src/cli/flags.ts: run npm run docs:flags').toBe(withFlagsTable(readme))
  })

  it('has a row for every flag, and the markers fence exactly the table', () => {
    const table = flagsTable()
    for (const flag of FLAGS) expect(table).toContain(`\`--${flag.name}`)
    expect(table.split('\n')).toHaveLength(FLAGS.length + 2)
    const readme = withFlagsTable(`intro\n${START_MARKER}\nold table\n${END_MARKER}\nafter\n`)
    expect(readme).toBe(`intro\n${START_MARKER}\n\n${table}\n\n${END_MARKER}\nafter\n`)
    expect(() => withFlagsTable('no markers')).toThrow(/needs the markers/)
  })
})
