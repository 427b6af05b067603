// Settings that end a backend: on PostgreSQL they end one client's connection, here they would end the database's
// one session, so every client of it (exit_on_error made `select 1/0` do so; transaction_timeout a long
// transaction). Every way of setting them is refused with 55P02, and the database and its other clients carry on.
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'

const { start, connect } = useDevDbs()

describe('settings that would end the session for everyone', () => {
  for (const databaseThreads of [true, false]) {
    it(`are refused however they are set (${databaseThreads ? 'a database thread' : 'no database threads'})`, async () => {
      const dev = await start({ databaseThreads })
      const bystander = await connect(dev.url)
      expect((await bystander.query('create temporary table kept (n int); insert into kept values (1)')).errors).toEqual([])
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
      ]) {
        const { errors } = await client.query(sql)
        refusals.push(errors.map((error) => `${error.code} ${error.message}`))
      }
      expect(refusals).toEqual([
        ['55P02 parameter "exit_on_error" cannot be changed'],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        ['55P02 parameter "transaction_timeout" cannot be changed'],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        ['55P02 parameter "transaction_timeout" cannot be changed'],
        ['55P02 parameter "exit_on_error" cannot be changed'],
        ['55P02 parameter "transaction_timeout" cannot be changed'],
      ])
      // An error stays an error, and the other client's session (its temporary table) lives on.
      expect((await client.query('select 1/0')).errors.map((error) => error.code)).toEqual(['22012'])
      expect((await client.query('show exit_on_error')).rows).toEqual([['off']])
      expect((await bystander.query('select n from kept')).rows).toEqual([['1']])
    })
  }
})
