// Seed the database at DATABASE_URL and print what it holds. Run it under the server:
//   npx pglite-dev-db --memory --port 0 --run "node seed.mjs"
// An error exits non-zero, and the server exits with the same status.
import pg from 'pg'

if (!process.env.DATABASE_URL) {
  console.error('DATABASE_URL is not set: run this under pglite-dev-db --run')
  process.exit(2)
}
const client = new pg.Client({ connectionString: process.env.DATABASE_URL })
await client.connect()
try {
  await client.query(`
    insert into customers (email, name) values ('ada@example.com', 'Ada'), ('alan@example.com', 'Alan')
    on conflict (email) do nothing`)
  await client.query(`
    insert into products (sku, name, price) values ('MUG-1', 'Mug', 9.99) on conflict (sku) do nothing`)
  const { rows } = await client.query(`
    select (select count(*)::int from customers) as customers, (select count(*)::int from products) as products`)
  console.log(`seeded: ${rows[0].customers} customers, ${rows[0].products} products`)
} finally {
  await client.end()
}
