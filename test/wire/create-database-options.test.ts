// CREATE DATABASE with options Postgres refuses (an unknown or repeated option, a role or tablespace that does not
// exist, a bad value) gets Postgres's own error: code, message, position and hint, in the order Postgres checks
// them, over the simple protocol and the extended one. The same table runs against PostgreSQL 18, the version PGlite
// is, when PG_ORACLE_18_URL is set (npm test starts one).
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { connectRaw } from '../../harness/raw-client.ts'
import * as wire from '../../harness/wire.ts'

const { start } = useDevDbs()
const oracleUrl = process.env.PG_ORACLE_18_URL
const targets: Array<[string, () => Promise<string>]> = [['pglite-dev-db', async () => (await start()).url]]
if (oracleUrl) targets.push(['postgres 18 oracle (PG_ORACLE_18_URL)', async () => oracleUrl])

/** What a statement got: each notice and error as "severity code message [P position] [H hint]", or its tag. */
type Outcome = string[]

const describeFields = (fields: Record<string, string>): string =>
  [fields.V ?? fields.S, fields.C, fields.M, fields.P && `P${fields.P}`, fields.H && `H ${fields.H}`]
    .filter(Boolean)
    .join(' ')

function outcome(replies: wire.BackendMessage[]): Outcome {
  return replies.flatMap((message) => {
    if (message.code === 'E' || message.code === 'N') return [describeFields(wire.decodeErrorFields(message.body))]
    if (message.code === 'C') return [wire.decodeCommandComplete(message.body)]
    return []
  })
}

const at = (sql: string, text: string): string => `P${sql.indexOf(text) + 1}`

/** Each statement (`D`: a name of this run's own) and what Postgres 18 answers it. */
function cases(d: string): Array<[string, Outcome]> {
  const location = `create database ${d} location '/tmp' foo 1`
  const unknown = `create database ${d} foo bar`
  const repeated = `create database ${d} encoding 'UTF8' encoding 'UTF8'`
  const reserved = `create database ${d} owner = current_user`
  return [
    [`create database ${d} owner nosuch_role`, ['ERROR 42704 role "nosuch_role" does not exist']],
    [unknown, [`ERROR 42601 option "foo" not recognized ${at(unknown, 'foo')}`]],
    [repeated, [`ERROR 42601 conflicting or redundant options P${repeated.lastIndexOf('encoding') + 1}`]],
    [reserved, [`ERROR 42601 syntax error at or near "current_user" ${at(reserved, 'current_user')}`]],
    [
      location,
      [
        `WARNING 0A000 LOCATION is not supported anymore ${at(location, 'location')} H Consider using tablespaces instead.`,
        `ERROR 42601 option "foo" not recognized ${at(location, 'foo')}`,
      ],
    ],
    [`create database ${d} tablespace nosuch_space`, ['ERROR 42704 tablespace "nosuch_space" does not exist']],
    [`create database ${d} tablespace pg_global`, ['ERROR 22023 pg_global cannot be used as default tablespace']],
    [
      `create database ${d} strategy nosuch`,
      ['ERROR 22023 invalid create database strategy "nosuch" H Valid strategies are "wal_log" and "file_copy".'],
    ],
    [`create database ${d} connection limit = -5`, ['ERROR 22023 invalid connection limit: -5']],
    [`create database ${d} is_template = maybe`, ['ERROR 42601 is_template requires a Boolean value']],
    [`create database ${d} oid = 99`, ['ERROR 22023 OIDs less than 16384 are reserved for system objects']],
    // Postgres's order: the role before the template, the template before the strategy, all before the name.
    [`create database ${d} owner nosuch_role template nosuch_tpl`, ['ERROR 42704 role "nosuch_role" does not exist']],
    [
      `create database ${d} template nosuch_tpl strategy nosuch`,
      ['ERROR 3D000 template database "nosuch_tpl" does not exist'],
    ],
    ['create database postgres owner nosuch_role', ['ERROR 42704 role "nosuch_role" does not exist']],
    [
      `create database ${d} with owner = postgres connection limit -1 strategy FILE_COPY tablespace pg_default is_template off`,
      ['CREATE DATABASE'],
    ],
    [`drop database ${d}`, ['DROP DATABASE']],
  ]
}

describe('CREATE DATABASE options Postgres refuses', () => {
  for (const [name, open] of targets) {
    it(`${name}: each gets Postgres's error, by simple Query and by Parse/Bind/Execute`, async () => {
      const url = await open()
      const client = await connectRaw(url, { deadlineMs: 10_000 })
      try {
        const d = `options_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
        for (const [sql, expected] of cases(d)) {
          await client.send(wire.query(sql))
          expect(outcome(await client.until('ReadyForQuery')), `Query: ${sql}`).toEqual(expected)
        }
        for (const [sql, expected] of cases(d)) {
          await client.send(wire.parse('', sql), wire.bind('', ''), wire.execute(''), wire.sync())
          expect(outcome(await client.until('ReadyForQuery')), `extended: ${sql}`).toEqual(expected)
        }
        // A role made in the client's session is found, and the lookup leaves the client's unnamed statement be.
        const role = `options_role_${process.pid}`
        expect((await client.query(`create role ${role}`)).errors).toEqual([])
        await client.send(wire.parse('', 'select 42'), wire.sync())
        await client.until('ReadyForQuery')
        const create = `create database ${d} owner ${role}`
        await client.send(wire.parse('made', create), wire.bind('', 'made'), wire.execute(''), wire.sync())
        expect(outcome(await client.until('ReadyForQuery'))).toEqual(['CREATE DATABASE'])
        await client.send(wire.bind('', ''), wire.execute(''), wire.sync())
        expect(wire.summarize(await client.until('ReadyForQuery')).rows).toEqual([['42']])
        expect((await client.query(`drop database ${d}`)).errors).toEqual([])
        expect((await client.query(`drop role ${role}`)).errors).toEqual([])
      } finally {
        client.destroy()
      }
    })
  }

  for (const [name, open] of targets) {
    it(`${name}: in a pipeline, after another statement or a BEGIN, refused with 25001; after another CREATE, made`, async () => {
      const client = await connectRaw(await open(), { deadlineMs: 10_000 })
      const extended = (sql: string) => [wire.parse('', sql), wire.bind('', ''), wire.execute('')]
      const pipeline = async (...statements: string[]) => {
        await client.send(...statements.flatMap(extended), wire.sync())
        const replies = await client.until('ReadyForQuery')
        return [...outcome(replies), wire.summarize(replies).status]
      }
      try {
        const d = `pipelined_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
        const refused = (command: string) => `ERROR 25001 ${command} cannot run inside a transaction block`
        expect(await pipeline('select 1', `create database ${d}`, 'select 2')).toEqual([
          'SELECT 1',
          refused('CREATE DATABASE'),
          'I',
        ])
        expect(await pipeline('begin', `create database ${d}`)).toEqual(['BEGIN', refused('CREATE DATABASE'), 'E'])
        expect((await client.query('rollback')).status).toBe('I')
        // Neither was made; CREATE DATABASE commits, so a DROP DATABASE may follow it in the same pipeline.
        expect(await pipeline(`create database ${d}`, `drop database ${d}`)).toEqual([
          'CREATE DATABASE',
          'DROP DATABASE',
          'I',
        ])
        expect(await pipeline(`create database ${d}`, 'select 1', `drop database ${d}`)).toEqual([
          'CREATE DATABASE',
          'SELECT 1',
          refused('DROP DATABASE'),
          'I',
        ])
        expect(await pipeline(`drop database ${d}`)).toEqual(['DROP DATABASE', 'I'])
      } finally {
        client.destroy()
      }
    })
  }
})
