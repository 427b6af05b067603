import { databaseName, resetDatabase } from 'pglite-dev-db/vitest'
import postgres from 'postgres'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'

const sql = postgres(process.env.DATABASE_URL!)
beforeEach(resetDatabase)
afterAll(() => sql.end())

describe(`products in ${databaseName()}`, () => {
  it('keeps prices exact and attributes as jsonb', async () => {
    await sql`insert into products (sku, name, price, attributes) values ('MUG-1', 'Mug', 9.99, ${sql.json({ color: 'blue' })})`
    expect(await sql`select sku, price, attributes from products`).toEqual([
      { sku: 'MUG-1', price: '9.99', attributes: { color: 'blue' } },
    ])
    expect(await sql`select count(*)::int as n from customers`).toEqual([{ n: 0 }])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select count(*)::int as n from products`).toEqual([{ n: 0 }])
  })
})
