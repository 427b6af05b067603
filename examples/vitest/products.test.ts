// examples/vitest/products.test.ts: the same isolation, with products beside the customers.
import { describe, expect, it } from 'vitest'
import { database, sql } from './db.ts'

describe(`products in ${database}`, () => {
  it('keeps prices exact and attributes as jsonb', async () => {
    await sql`insert into customers (email, name) values ('buyer@products.test', 'Buyer')`
    await sql`insert into products (sku, name, price, attributes) values ('MUG-1', 'Mug', 9.99, ${sql.json({ color: 'blue' })})`
    expect(await sql`select sku, price, attributes from products`).toEqual([{ sku: 'MUG-1', price: '9.99', attributes: { color: 'blue' } }])
    expect(await sql`select email from customers`).toEqual([{ email: 'buyer@products.test' }])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select (select count(*)::int from products) + (select count(*)::int from customers) as n`).toEqual([{ n: 0 }])
  })
})
