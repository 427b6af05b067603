import { databaseName, resetDatabase } from 'pglite-dev-db/vitest'
import postgres from 'postgres'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'

const sql = postgres(process.env.DATABASE_URL!)
beforeEach(resetDatabase)
afterAll(() => sql.end())

describe(`orders in ${databaseName()}`, () => {
  it('places an order for a customer in one transaction', async () => {
    await sql.begin(async (tx) => {
      const [customer] =
        await tx`insert into customers (email, name) values ('grace@orders.test', 'Grace') returning id`
      await tx`insert into orders (customer_id, total) values (${customer!.id}, 12.50)`
    })
    expect(await sql`select c.email from orders o join customers c on c.id = o.customer_id`).toEqual([
      { email: 'grace@orders.test' },
    ])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select (select count(*)::int from orders) + (select count(*)::int from customers) as n`).toEqual([
      { n: 0 },
    ])
  })
})
