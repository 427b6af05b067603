// Settings that end a backend: on PostgreSQL they end one client's connection, here they would end the database's
// one session, so every client of it (exit_on_error made `select 1/0` do so; transaction_timeout a long
// transaction). However they are set, exit_on_error gets 55P02 and a transaction_timeout but 0 is out of range
// (22023); 0, which pg_dump sets, is taken. The database and its other clients carry on.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'

const { start, connect } = useDevDbs()

describe('settings that would end the session for everyone', () => {
  for (const databaseThreads of [true, false]) {
    it(`are refused however they are set (${databaseThreads ? 'a database thread' : 'no database threads'})`, async () => {
      const dev = await start({ databaseThreads })
      const bystander = await connect(dev.url)
      expect(
        (await bystander.query('create temporary table kept (n int); insert into kept values (1)')).errors,
      ).toEqual([])
      const client = await connect(dev.url)
      const refusals: string[][] = []
      for (const sql of [
        'set exit_on_error = on',
        "select set_config('exit_on_error', 'on', false)",
        "set transaction_timeout = '100ms'",
        'alter role postgres set exit_on_error = on',
        "alter database postgres set transaction_timeout = '1s'",
        'alter system set exit_on_error = on',
        "create function ending() returns int language sql set transaction_timeout = '1s' as 'select 1'",
        'set transaction_timeout = 0',
      ]) {
        const { errors } = await client.query(sql)
        refusals.push(errors.map((error) => `${error.code} ${error.message}`))
      }
      const outOfRange = (ms: number) =>
        `22023 ${ms} ms is outside the valid range for parameter "transaction_timeout" (0 ms .. 0 ms)`
      expect(refusals).toEqual([
        ['55P02 parameter "exit_on_error" cannot be changed'],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        [outOfRange(100)],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        [outOfRange(1000)],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        [outOfRange(1000)],
        [],
      ])
      // An error stays an error, and the other client's session (its temporary table) lives on.
      expect((await client.query('select 1/0')).errors.map((error) => error.code)).toEqual(['22012'])
      expect((await client.query('show exit_on_error')).rows).toEqual([['off']])
      expect((await bystander.query('select n from kept')).rows).toEqual([['1']])
    })
  }
})
