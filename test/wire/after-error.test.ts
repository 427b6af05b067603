// After an error in an extended-protocol pipeline Postgres ignores every message until Sync, and in a failed
// transaction block it refuses every statement with 25P02: what the server carries out itself in a message's place
// (COPY FROM STDIN, CREATE and DROP DATABASE) is ignored or refused there too, and not done. The same steps run
// against PostgreSQL 15 when PG_ORACLE_URL is set.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start } = useDevDbs()
const oracleUrl = process.env.PG_ORACLE_URL
const targets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
if (oracleUrl) targets.push(['postgres 15 oracle (PG_ORACLE_URL)', async () => oracleUrl])

const extended = (sql: string): Buffer[] => [wire.parse('', sql), wire.bind('', ''), wire.execute('')]

/** The replies to a pipeline whose first statement fails, `after` it, then Sync; and the status it ends in. */
async function repliesAfterError(
  url: string,
  after: Buffer[],
  setup?: string,
): Promise<[string[], string | undefined]> {
  const client = await connectRaw(url, { deadlineMs: 10_000 })
  try {
    if (setup) expect((await client.query(setup)).errors).toEqual([])
    await client.send(...extended('select 1 / (select 0)'), ...after, wire.sync())
    const replies = await client.until('ReadyForQuery')
    return [replies.map((message) => message.name), wire.summarize(replies).status]
  } finally {
    client.destroy()
  }
}

const FAILED = ['ParseComplete', 'BindComplete', 'ErrorResponse', 'ReadyForQuery']

describe('messages after an error in a pipeline, up to its Sync', () => {
  for (const [name, open] of targets) {
    it(`${name}: a COPY FROM STDIN, by Execute or by Query, is ignored`, async () => {
      const url = await open()
      const table = `copy_after_error_${process.pid}`
      const setup = `create table if not exists ${table} (a int)`
      expect(await repliesAfterError(url, extended(`copy ${table} from stdin`), setup)).toEqual([FAILED, 'I'])
      expect(await repliesAfterError(url, [wire.query(`copy ${table} from stdin`)])).toEqual([FAILED, 'I'])
    })

    it(`${name}: in a failed transaction block, a COPY FROM STDIN or CREATE DATABASE is refused with 25P02`, async () => {
      const client = await connectRaw(await open(), { deadlineMs: 10_000 })
      try {
        const table = `copy_in_failed_${process.pid}`
        expect((await client.query(`create table if not exists ${table} (a int)`)).errors).toEqual([])
        expect((await client.query('begin; select 1 / (select 0)')).status).toBe('E')
        for (const sql of [`copy ${table} from stdin`, `create database failed_block_${process.pid}`]) {
          const reply = await client.query(sql)
          expect([reply.errors.map((error) => error.code), reply.status]).toEqual([['25P02'], 'E'])
        }
        expect((await client.query('rollback')).status).toBe('I')
      } finally {
        client.destroy()
      }
    })

    it(`${name}: in a failed transaction block, pg_terminate_backend is refused with 25P02 and ends nobody`, async () => {
      const url = await open()
      const victim = await connectRaw(url, { deadlineMs: 10_000 })
      const client = await connectRaw(url, { deadlineMs: 10_000 })
      try {
        expect((await client.query('begin; select 1 / (select 0)')).status).toBe('E')
        const reply = await client.query(`select pg_terminate_backend(${victim.backendKey!.pid})`)
        expect([reply.errors.map((error) => error.code), reply.status]).toEqual([['25P02'], 'E'])
        expect((await client.query('rollback')).status).toBe('I')
        expect((await victim.query('select 1')).rows).toEqual([['1']])
      } finally {
        victim.destroy()
        client.destroy()
      }
    })

    it(`${name}: a CREATE or DROP DATABASE is ignored, and the databases stay as they were`, async () => {
      const url = await open()
      const suffix = Math.random().toString(36).slice(2, 8)
      const [kept, never] = [`kept_${suffix}`, `never_${suffix}`]
      const admin = await connectRaw(url, { deadlineMs: 10_000 })
      try {
        expect((await admin.query(`create database ${kept}`)).errors).toEqual([])
        expect(await repliesAfterError(url, extended(`drop database ${kept}`))).toEqual([FAILED, 'I'])
        expect(await repliesAfterError(url, extended(`create database ${never}`))).toEqual([FAILED, 'I'])
        // The one still there, the other never made: creating them again says so.
        expect((await admin.query(`create database ${kept}`)).errors.map((error) => error.code)).toEqual(['42P04'])
        expect((await admin.query(`create database ${never}`)).errors).toEqual([])
      } finally {
        await admin.query(`drop database if exists ${kept}`)
        await admin.query(`drop database if exists ${never}`)
        await admin.end()
      }
    })
  }
})
