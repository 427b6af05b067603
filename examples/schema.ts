// Example app schema (a tiny shop): the source drizzle-kit generates migrations/ from.
// Small on purpose, but it covers the types a real app leans on: uuid, jsonb, timestamptz, numeric, an enum.
import { index, integer, jsonb, numeric, pgEnum, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

export const orderStatus = pgEnum('order_status', ['pending', 'paid', 'shipped', 'cancelled'])

export const customers = pgTable('customers', {
  id: uuid('id').primaryKey().defaultRandom(),
  email: text('email').notNull().unique(),
  name: text('name').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
})

export const products = pgTable('products', {
  id: uuid('id').primaryKey().defaultRandom(),
  sku: text('sku').notNull().unique(),
  name: text('name').notNull(),
  // numeric, not float: money must round-trip exactly (drizzle hands it back as a string).
  price: numeric('price', { precision: 12, scale: 2 }).notNull(),
  attributes: jsonb('attributes').$type<Record<string, unknown>>().notNull().default({}),
})

export const orders = pgTable(
  'orders',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    // restrict: a customer with order history is not silently deleted.
    customerId: uuid('customer_id')
      .notNull()
      .references(() => customers.id, { onDelete: 'restrict' }),
    status: orderStatus('status').notNull().default('pending'),
    total: numeric('total', { precision: 12, scale: 2 }).notNull(),
    metadata: jsonb('metadata').$type<{ source?: string; notes?: string }>(),
    placedAt: timestamp('placed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  // The usual query: one customer's orders, newest first.
  (t) => [index('orders_customer_placed_idx').on(t.customerId, t.placedAt.desc())],
)

export const orderItems = pgTable(
  'order_items',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.id, { onDelete: 'cascade' }),
    productId: uuid('product_id')
      .notNull()
      .references(() => products.id),
    quantity: integer('quantity').notNull(),
    // Price at the time of the order; products.price may change later.
    unitPrice: numeric('unit_price', { precision: 12, scale: 2 }).notNull(),
  },
  (t) => [index('order_items_order_idx').on(t.orderId)],
)
