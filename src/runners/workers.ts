// How many workers a Vitest run will have, read from the project its globalSetup is handed.

import { availableParallelism } from 'node:os'

/** What a globalSetup reads of the test project Vitest hands it (the root's config too, for a multi-project run). */
export interface SetupProject {
  config?: { maxWorkers?: number | string }
  vitest?: { config?: { maxWorkers?: number | string; watch?: boolean } }
}

/**
 * How many workers the run will have, as Vitest works it out: the project's maxWorkers, else the root's, else all the
 * machine's cores but one (half of them in watch mode). A percentage ('50%') is of the cores.
 */
export function workersOf(project: SetupProject | undefined): number {
  const cores = availableParallelism()
  const given = project?.config?.maxWorkers ?? project?.vitest?.config?.maxWorkers
  if (typeof given === 'number' && Number.isInteger(given) && given > 0) return given
  if (typeof given === 'string' && /^\d+%$/.test(given))
    return Math.max(1, Math.floor((cores * Number.parseInt(given, 10)) / 100))
  return project?.vitest?.config?.watch ? Math.max(1, Math.floor(cores / 2)) : Math.max(1, cores - 1)
}
