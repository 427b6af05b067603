// The name a mistyped one most likely meant, for "did you mean" (the CLI's flags).

/**
 * The one of `names` that `name` most likely meant: one it starts, or one within a few edits (about one in three of
 * its letters). Written here rather than taken from a package: ten lines, and the table is small.
 */
export function nearestName(name: string, names: readonly string[]): string | null {
  const prefixed = names.filter((candidate) => name.length >= 3 && candidate.startsWith(name))
  if (prefixed.length === 1) return prefixed[0]!
  let best: { name: string; distance: number } | null = null
  for (const candidate of names) {
    const distance = editDistance(name, candidate)
    if (distance <= Math.max(2, Math.floor(candidate.length / 3)) && (!best || distance < best.distance))
      best = { name: candidate, distance }
  }
  return best?.name ?? null
}

/** Levenshtein distance: insertions, deletions and substitutions, one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    previous = row
  }
  return previous[b.length]!
}
