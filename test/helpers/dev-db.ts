// startDevDb for a test file: servers on copies of the template data dir, raw clients, and an afterEach that
// destroys the clients, closes the servers (bounded) and removes the copies.
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, expect, onTestFinished } from 'vitest'
import { startDevDb, type DevDb, type DevDbOptions } from '../../src/databases/dev-db.ts'
import { copyTemplate, removeDataDir, scratchRoot } from './db.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'

const CLOSE_DEADLINE_MS = 5_000

export interface DevDbHarness {
  /** A fresh copy of the template data dir, removed after the test. */
  scratchDataDir(): Promise<string>
  /** startDevDb on a fresh copy unless `dataDir` is given, no migrations unless given; closed after the test. */
  start(options?: DevDbOptions): Promise<DevDb>
  /** A raw client that has finished startup (extra StartupMessage parameters optional); destroyed after the test. */
  connect(url: string, params?: Record<string, string>): Promise<RawClient>
  /**
   * A client holding the session in a transaction block opened by `sql`: units other clients send meanwhile wait for
   * it. Returns once the call that opened it has ended: the answer comes first, and a unit sent before that end may go
   * into that call (engine/more-units.ts), only to wait once the call ends.
   */
  holdSession(dev: DevDb, sql?: string): Promise<RawClient>
}

export function useDevDbs(): DevDbHarness {
  const devs: DevDb[] = []
  const clients: RawClient[] = []
  const scratch: string[] = []
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy()
    await withDeadline(Promise.all(devs.splice(0).map((dev) => dev.close())), CLOSE_DEADLINE_MS, 'close() after a test')
    await Promise.all(scratch.splice(0).map(removeDataDir))
  })
  const scratchDataDir = async () => {
    const dataDir = await copyTemplate()
    scratch.push(dataDir)
    return dataDir
  }
  const connect = async (url: string, params: Record<string, string> = {}): Promise<RawClient> => {
    const client = await connectRaw(url, { params: { user: 'postgres', database: 'postgres', ...params } })
    clients.push(client)
    return client
  }
  return {
    scratchDataDir,
    connect,
    async start(options = {}) {
      const dev = await startDevDb({
        migrations: false,
        ...options,
        dataDir: options.dataDir ?? (await scratchDataDir()),
      })
      devs.push(dev)
      return dev
    },
    async holdSession(dev, sql = 'begin; select 1') {
      const holder = await connect(dev.url)
      expect((await holder.query(sql)).status).toBe('T')
      // The holder's next statement runs in a call of its own, after the first one's end.
      expect((await holder.query('select 1')).status).toBe('T')
      return holder
    },
  }
}

/** A scratch directory named `pglite-<prefix>-...`, removed when the test finishes. */
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(await scratchRoot(), `pglite-${prefix}-`))
  onTestFinished(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** startDevDb (no migrations unless given, wherever the test runs), closed when the test finishes. */
export async function startForTest(options: DevDbOptions): Promise<DevDb> {
  const dev = await startDevDb({ migrations: false, ...options })
  onTestFinished(() => dev.close())
  return dev
}
