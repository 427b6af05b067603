// The order test files start in: the longest first, so that neither worker is left running a long file alone at the
// end. Without its results cache (a fresh checkout, as in CI) vitest starts the largest files first, and size says
// little here: test/wire/concurrency-stock.test.ts is 8 lines and runs 27 scenarios.
import { BaseSequencer, type TestSpecification } from 'vitest/node'
import path from 'node:path'

/** Files that took a minute or more in full runs on a 2-core machine, longest first; the rest follow vitest's order. */
const LONGEST = [
  'test/host/package.test.ts',
  'test/host/databases.test.ts',
  'test/wire/concurrency-patched.test.ts',
  'test/wire/concurrency-stock.test.ts',
  'test/wire/concurrency-oracle.test.ts',
  'test/host/recipes.test.ts',
  'test/host/template.test.ts',
]

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (spec: TestSpecification) => {
      const at = LONGEST.indexOf(path.relative(this.ctx.config.root, spec.moduleId).split(path.sep).join('/'))
      return at < 0 ? LONGEST.length : at
    }
    const sorted = await super.sort(files)
    const projects = [...new Set(sorted.map((spec) => spec.project.name))]
    // A stable sort: projects as vitest orders them; within each, the listed files first, in list order, and all
    // others in vitest's order.
    return sorted.sort(
      (a, b) => projects.indexOf(a.project.name) - projects.indexOf(b.project.name) || rank(a) - rank(b),
    )
  }
}
