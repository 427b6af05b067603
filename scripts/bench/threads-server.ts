// The server process of `npm run bench:threads`: one PGLiteSocketServer per data dir, all in this process, with each
// PGlite in the main thread (--mode main) or in its own worker thread (--mode thread). Prints one JSON line
// {"urls":[...]} once every server listens; stops cleanly on SIGTERM.
// Usage: tsx scripts/bench/threads-server.ts --mode main|thread DATA_DIR...

import { parseArgs } from 'node:util'
import { PGlite } from '@electric-sql/pglite'
import { DbThread } from '../../src/engine/thread.ts'
import { PGLiteSocketServer } from '../../src/server/server.ts'

/** As startDevDb opens its database (src/dev-server.ts SERVER_SETTINGS). */
const START_PARAMS = [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB']

const { values, positionals } = parseArgs({ options: { mode: { type: 'string' } }, allowPositionals: true })
const mode = values.mode
if ((mode !== 'main' && mode !== 'thread') || positionals.length === 0)
  throw new Error('usage: threads-server.ts --mode main|thread DATA_DIR...')

type Db = PGlite | DbThread
const dbs: Db[] = await Promise.all(
  positionals.map((dataDir) =>
    mode === 'main'
      ? PGlite.create({ dataDir, startParams: START_PARAMS })
      : DbThread.create({ dataDir, startParams: START_PARAMS }),
  ),
)
// DbThread has what the server calls of a PGlite; the server's option is typed PGlite until it names that subset.
const servers = dbs.map((db) => new PGLiteSocketServer({ db: db as PGlite, port: 0, maxConnections: 200 }))
await Promise.all(servers.map((server) => server.start()))
process.stdout.write(
  `${JSON.stringify({ urls: servers.map((server) => `postgres://postgres@127.0.0.1:${server.port}/postgres`) })}\n`,
)

async function stop(): Promise<void> {
  await Promise.all(servers.map((server) => server.stop()))
  await Promise.all(dbs.map((db) => db.close()))
}

process.once('SIGTERM', () => {
  stop().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`threads-server: stop failed: ${(error as Error).stack ?? String(error)}\n`)
      process.exit(1)
    },
  )
})
