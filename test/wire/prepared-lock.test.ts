// A statement that waits for a lock a prepared transaction holds, whose client then leaves. On Postgres its backend
// waits alone and the others run. Here it holds the one session, and only another client's COMMIT PREPARED could end
// its wait, so the database would wait for good: a client that waits behind it past idleTransactionWaitMs has it
// canceled (its client is gone: nobody else can), and is answered. The same steps run against PostgreSQL 15.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw, type RawClient } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start } = useDevDbs()
const oracleUrl = process.env.PG_ORACLE_URL
const WAIT_MS = 300

/**
 * The answer to `select 42` from a client that connects once the departed client's statement waits for the lock
 * (`waiting` resolves then; it gets the table and a connection to look with). `beforeSending` resolves before the
 * departed client sends it.
 */
async function answerBehindDeparted(
  url: string,
  waiting: (table: string, admin: RawClient) => Promise<void>,
  beforeSending?: () => Promise<void>,
): Promise<Array<Array<string | null>>> {
  const id = Math.random().toString(36).slice(2, 10)
  const table = `held_${id}`
  const admin = await connectRaw(url, { deadlineMs: 20_000 })
  const leaver = await connectRaw(url)
  const asker = await connectRaw(url, { deadlineMs: 10_000 })
  try {
    expect((await admin.query(`create table ${table} (a int)`)).errors).toEqual([])
    expect((await admin.query(`begin; lock table ${table}; prepare transaction '${id}'`)).errors).toEqual([])
    await beforeSending?.()
    await leaver.send(wire.query(`select count(*) from ${table}`))
    await waiting(table, admin)
    leaver.socket.end()
    const reply = await asker.query('select 42')
    expect(reply.errors).toEqual([])
    return reply.rows
  } finally {
    // On Postgres the departed backend's statement ends here, once the lock is let go.
    expect((await admin.query(`rollback prepared '${id}'`)).errors).toEqual([])
    expect((await admin.query(`drop table ${table}`)).errors).toEqual([])
    leaver.destroy()
    asker.destroy()
    await admin.end()
  }
}

describe('a departed client whose statement waits for a lock a prepared transaction holds', () => {
  it('pglite-dev-db: a client waiting behind it has it canceled, and is answered', async () => {
    const dev = await start({ idleTransactionWaitMs: WAIT_MS })
    const rows = await answerBehindDeparted(dev.url, async () => {
      // The admin's statements let the session go after their answer; then the leaver's statement takes it.
      await expect.poll(() => dev.server.getStats().sessionHeld, { timeout: 10_000, interval: 5 }).toBe(true)
    })
    expect(rows).toEqual([['42']])
  })

  // Sent while the session is free and nobody else sends, its statement gets the client's socket lent to the
  // database's thread (docs/ARCHITECTURE.md), which reads nothing while the statement runs: the server reads the socket
  // again to see the client gone.
  it('pglite-dev-db: the same when it was sent alone, its socket lent to the database thread', async () => {
    const dev = await start({ idleTransactionWaitMs: WAIT_MS })
    const stats = () => dev.server.getStats()
    const rows = await answerBehindDeparted(
      dev.url,
      async () => {
        const lent = () => stats().sessionHeld && stats().clientsReadByDatabaseThreads === 1
        await expect.poll(lent, { timeout: 10_000, interval: 5 }).toBe(true)
      },
      async () => {
        // The socket is lent only to a client sending alone, the session free.
        const quiet = () => !stats().sessionHeld && stats().sendingClients === 0
        await expect.poll(quiet, { timeout: 10_000, interval: 5 }).toBe(true)
      },
    )
    expect(rows).toEqual([['42']])
  })

  it.runIf(oracleUrl)('PostgreSQL 15 (PG_ORACLE_URL): the other client is answered at once', async () => {
    const rows = await answerBehindDeparted(oracleUrl!, async (table, admin) => {
      const waits = async () =>
        (await admin.query(`select count(*) from pg_locks where not granted and relation = '${table}'::regclass`))
          .rows[0]?.[0]
      await expect.poll(waits, { timeout: 10_000, interval: 20 }).toBe('1')
    })
    expect(rows).toEqual([['42']])
  })
})
