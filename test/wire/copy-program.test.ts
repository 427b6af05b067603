// COPY ... PROGRAM: PGlite cannot run programs, and its JavaScript threw from inside Postgres, which left the client
// waiting for an answer. Now the statement fails as a command that cannot run, and the session goes on. (PostgreSQL
// runs the program for a superuser, so there is no oracle to compare with.)
import { describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import type { RawClient } from '../../harness/raw-client.ts'
import { useDevDbs } from '../helpers/dev-db.ts'
import { targets, useInProcessTarget } from '../helpers/targets.ts'

const STALL_MS = 3_000
const STATEMENTS = ["copy (select 1) to program 'cat > /dev/null'", "copy copy_program from program 'echo 1'"]
const REFUSED = STATEMENTS.map((sql) => [
  sql,
  'XX000',
  `could not execute command "${/'(.*)'/.exec(sql)![1]}": Function not implemented`,
])

async function tryPrograms(client: RawClient): Promise<Array<[string, string, string]>> {
  expect((await client.query('create table copy_program (n int)')).errors).toEqual([])
  const seen: Array<[string, string, string]> = []
  for (const sql of STATEMENTS) {
    const [error] = (await client.query(sql)).errors
    seen.push([sql, error?.code ?? '', error?.message ?? ''])
  }
  expect((await client.query('select count(*) from copy_program')).rows).toEqual([['0']])
  return seen
}

describe('COPY ... PROGRAM on a database thread', () => {
  const { start, connect } = useDevDbs()

  it('fails with XX000 and the session goes on', async () => {
    const dev = await start()
    expect(await tryPrograms(await connect(dev.url))).toEqual(REFUSED)
  })
})

describe.each(targets)('COPY ... PROGRAM on $name', (target) => {
  const { start, connect } = useInProcessTarget(target)

  it(target.name === 'patched' ? 'fails with XX000 and the session goes on' : 'leaves the client waiting', async () => {
    const server = await start()
    const client = await connect(server.url)
    if (target.name === 'patched') {
      expect(await tryPrograms(client)).toEqual(REFUSED)
    } else {
      await client.send(wire.query(STATEMENTS[0]!))
      await expect(client.next('ReadyForQuery', { deadlineMs: STALL_MS })).rejects.toThrow(/stalled/)
    }
  })
})
