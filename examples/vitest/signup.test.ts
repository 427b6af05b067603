// examples/vitest/signup.test.ts: a unique email taken in one test is free again in the next, after the reset.
import { describe, expect, it } from 'vitest'
import { database, sql } from './db.ts'

describe(`sign-up in ${database}`, () => {
  it('refuses a second account with the same email', async () => {
    await sql`insert into customers (email, name) values ('linus@signup.test', 'Linus')`
    await expect(sql`insert into customers (email, name) values ('linus@signup.test', 'Linus again')`).rejects.toMatchObject({ code: '23505' })
    expect(await sql`select email, name from customers`).toEqual([{ email: 'linus@signup.test', name: 'Linus' }])
  })

  it('can take the same email again after the reset', async () => {
    await sql`insert into customers (email, name) values ('linus@signup.test', 'Linus')`
    expect(await sql`select email from customers`).toEqual([{ email: 'linus@signup.test' }])
  })
})
