// examples/vitest/orders.test.ts: the same isolation, with an order written in a transaction.
import { describe, expect, it } from 'vitest'
import { database, sql } from './db.ts'

describe(`orders in ${database}`, () => {
  it('places an order in a transaction', async () => {
    await sql.begin(async (tx) => {
      const [customer] = await tx`insert into customers (email, name) values ('grace@orders.test', 'Grace') returning id`
      const [product] = await tx`insert into products (sku, name, price) values ('PEN-1', 'Pen', 2.50) returning id`
      const [order] = await tx`insert into orders (customer_id, total) values (${customer!.id}, 7.50) returning id`
      await tx`insert into order_items (order_id, product_id, quantity, unit_price) values (${order!.id}, ${product!.id}, 3, 2.50)`
    })
    expect(await sql`select c.email, o.total, o.status from orders o join customers c on c.id = o.customer_id`).toEqual([
      { email: 'grace@orders.test', total: '7.50', status: 'pending' },
    ])
    expect(await sql`select email from customers`).toEqual([{ email: 'grace@orders.test' }])
  })

  it('starts the next test from the migrated state', async () => {
    expect(await sql`select (select count(*)::int from orders) + (select count(*)::int from customers) as n`).toEqual([{ n: 0 }])
  })
})
