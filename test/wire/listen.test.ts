// The process id a notification carries: the notifying client's, from its BackendKeyData, as Postgres names the
// notifying backend. (Reading LISTEN/UNLISTEN out of SQL text: test/unit/sql.test.ts.)
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'
import { BackendError, withDeadline } from '../../harness/raw-client.ts'

describe('notifications', () => {
  const { start, connect } = useDevDbs()

  it("carry the notifying client's process id; a listener idle at the time gets it at once", async () => {
    const dev = await start()
    const listener = await connect(dev.url)
    const sender = await connect(dev.url)
    expect((await listener.query('LISTEN jobs')).errors).toEqual([])
    expect((await sender.query("NOTIFY jobs, 'go'")).errors).toEqual([])
    const message = await listener.next('NotificationResponse')
    expect(message.body.readInt32BE(0)).toBe(sender.backendKey!.pid)
    expect(message.body.subarray(4).toString()).toBe('jobs\0go\0')
  })
})

describe('a listener that does not read', () => {
  const { start, connect } = useDevDbs()

  it('is closed with FATAL 53200 once 32 MB of notifications wait for it; the notifier and others carry on', async () => {
    const dev = await start()
    const listener = await connect(dev.url)
    const sender = await connect(dev.url)
    const bystander = await connect(dev.url)
    expect((await listener.query('LISTEN flood')).errors).toEqual([])
    listener.socket.pause()
    // Distinct payloads (Postgres folds identical notifications of one transaction into one): 8 MB per statement.
    const flood = "select pg_notify('flood', g || repeat('x', 7900)) from generate_series(1, 1000) g"
    for (let i = 0; i < 6; i++) expect((await sender.query(flood)).errors, `flood statement ${i}`).toEqual([])
    listener.socket.resume()
    let notifications = 0
    let ended: unknown
    while (ended === undefined) {
      await listener.next('NotificationResponse', { deadlineMs: 20_000 }).then(
        () => notifications++,
        (error: unknown) => (ended = error),
      )
    }
    expect(ended).toBeInstanceOf(BackendError)
    expect(ended).toMatchObject({ severity: 'FATAL', code: '53200' })
    await withDeadline(listener.closed, 5_000, 'the listener closed after its FATAL')
    // It got what fit in the bound, in order, and not the rest.
    expect(notifications).toBeGreaterThan(3_000)
    expect(notifications).toBeLessThan(6_000)
    expect((await sender.query('select 1')).errors).toEqual([])
    expect((await bystander.query('select 1')).errors).toEqual([])
  })
})
