import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'

test('the job has a migrated database at DATABASE_URL', async () => {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
  await client.connect()
  try {
    const { rows } = await client.query('select count(*)::int as n from customers')
    assert.deepEqual(rows, [{ n: 0 }])
  } finally {
    await client.end()
  }
})
