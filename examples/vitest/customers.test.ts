import { databaseName, resetDatabase } from 'pglite-dev-db/vitest'
import postgres from 'postgres'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'

const sql = postgres(process.env.DATABASE_URL!)
beforeEach(resetDatabase)
afterAll(() => sql.end())

describe(`customers in ${databaseName()}`, () => {
  it('sees the customers it signed up, and no one else', async () => {
    await sql`insert into customers (email, name) values ('ada@customers.test', 'Ada'), ('alan@customers.test', 'Alan')`
    expect(await sql`select email from customers order by email`).toEqual([
      { email: 'ada@customers.test' },
      { email: 'alan@customers.test' },
    ])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
  })
})
