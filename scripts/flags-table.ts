// The README's flags table, made from the command's own table (src/cli/flags.ts), between two markers in README.md.

import { FLAGS } from '../src/cli/flags.ts'

export const START_MARKER = '<!-- flags: generated from src/cli/flags.ts by `npm run docs:flags`; do not edit -->'
export const END_MARKER = '<!-- flags: end -->'

/** One row per flag: as typed, its default, what it does. */
export function flagsTable(): string {
  const rows = FLAGS.map((flag) => {
    const name = `${flag.short ? `\`-${flag.short}\`, ` : ''}\`--${flag.name}${flag.value ? ` ${flag.value}` : ''}\``
    const fallback = flag.type === 'boolean' || flag.name === 'run' ? '' : 'none'
    return `| ${name} | ${(flag.defaultText ?? fallback).replaceAll('|', '\\|')} | ${flag.help.replaceAll('|', '\\|')} |`
  })
  return ['| flag | default | what it does |', '| --- | --- | --- |', ...rows].join('\n')
}

/** `readme` with the text between the markers replaced by the table; throws if the markers are not there once each. */
export function withFlagsTable(readme: string): string {
  const start = readme.indexOf(START_MARKER)
  const end = readme.indexOf(END_MARKER)
  if (start < 0 || end < start || readme.indexOf(START_MARKER, start + 1) >= 0)
    throw new Error(`README.md needs the markers ${START_MARKER} and ${END_MARKER}, once each, in that order`)
  return `${readme.slice(0, start + START_MARKER.length)}\n\n${flagsTable()}\n\n${readme.slice(end)}`
}
