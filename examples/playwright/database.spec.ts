import { expect, test as base } from '@playwright/test'
import pg from 'pg'

// Each worker gets a database of its own (e2e_0, e2e_1, ...), made from the migrated template on first use.
const test = base.extend<{}, { db: pg.Client }>({
  db: [
    async ({}, use, workerInfo) => {
      const url = new URL(process.env.DATABASE_URL!)
      url.pathname = `/e2e_${workerInfo.parallelIndex}`
      const client = new pg.Client({ connectionString: url.href })
      await client.connect()
      await use(client)
      await client.end()
    },
    { scope: 'worker' },
  ],
})

test.beforeEach(async ({ db }) => {
  await db.query('select pglite_dev_db.reset()')
})

test('the migrated schema is there', async ({ db }) => {
  const { rows } = await db.query(
    `select table_name from information_schema.tables where table_schema = 'public' order by 1`,
  )
  expect(rows.map((row) => row.table_name)).toEqual(['customers', 'order_items', 'orders', 'products'])
})

test('a signed-up customer can be found by email', async ({ db }) => {
  await db.query(`insert into customers (email, name) values ('ada@example.com', 'Ada')`)
  const { rows } = await db.query('select name from customers where email = $1', ['ada@example.com'])
  expect(rows).toEqual([{ name: 'Ada' }])
})

test('each test starts from the migrated state', async ({ db }) => {
  const { rows } = await db.query('select count(*)::int as n from customers')
  expect(rows).toEqual([{ n: 0 }])
})
