// Writes the flags table into README.md from src/cli/flags.ts. test/unit/readme-flags.test.ts fails when they differ.
// Usage: npm run docs:flags
import { readFile, writeFile } from 'node:fs/promises'
import { withFlagsTable } from './flags-table.ts'

const README = new URL('../README.md', import.meta.url)
await writeFile(README, withFlagsTable(await readFile(README, 'utf8')))
