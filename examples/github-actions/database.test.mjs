// examples/github-actions/database.test.mjs: the workflow's test step (node --test), against DATABASE_URL.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import pg from 'pg'

const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
before(() => client.connect())
after(() => client.end())

test('sees the rows the seed step wrote', async () => {
  const { rows } = await client.query('select email from customers order by email')
  assert.deepEqual(rows, [{ email: 'ada@example.com' }, { email: 'alan@example.com' }])
})

test('a test database of its own starts migrated and empty', async () => {
  const url = new URL(process.env.DATABASE_URL)
  url.pathname = '/ci_test'
  const own = new pg.Client({ connectionString: url.href })
  await own.connect()
  try {
    const { rows } = await own.query('select count(*)::int as n from customers')
    assert.deepEqual(rows, [{ n: 0 }])
  } finally {
    await own.end()
  }
})
