// examples/vitest/customers.test.ts: rows this file writes are the only rows it sees; the next test starts clean.
import { describe, expect, it } from 'vitest'
import { database, sql } from './db.ts'

describe(`customers in ${database}`, () => {
  it('sees the customers it signed up, and no one else', async () => {
    await sql`insert into customers (email, name) values ('ada@customers.test', 'Ada'), ('alan@customers.test', 'Alan')`
    expect(await sql`select email from customers order by email`).toEqual([{ email: 'ada@customers.test' }, { email: 'alan@customers.test' }])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
  })
})
