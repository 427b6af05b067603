// The schema `drizzle-kit push` applies in the drizzle-kit scenario: one table beside the example app's.
import { integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core'

export const drizzlePushed = pgTable('drizzle_pushed', {
  id: integer('id').primaryKey(),
  label: text('label').notNull(),
  meta: jsonb('meta'),
  createdAt: timestamp('created_at', { withTimezone: true }).defaultNow(),
})
