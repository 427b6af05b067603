import { databaseName, resetDatabase } from 'pglite-dev-db/vitest'
import postgres from 'postgres'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'

const sql = postgres(process.env.DATABASE_URL!)
beforeEach(resetDatabase)
afterAll(() => sql.end())

describe(`signup in ${databaseName()}`, () => {
  it('refuses a second customer with the same email', async () => {
    await sql`insert into customers (email, name) values ('linus@signup.test', 'Linus')`
    await expect(
      sql`insert into customers (email, name) values ('linus@signup.test', 'Linus again')`,
    ).rejects.toMatchObject({ code: '23505' })
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
  })
})
