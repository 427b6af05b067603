// examples/vitest/global-setup.ts: once per run, one server in memory for every worker.
import type { TestProject } from 'vitest/node'
import { startDevDb } from '../../src/index.ts'

export default async function setup(project: TestProject) {
  const pg = await startDevDb({ migrations: './migrations' })
  project.provide('databaseUrl', pg.url)
  return () => pg.close()
}

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string
  }
}
