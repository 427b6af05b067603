// The process id a notification carries: the notifying client's, from its BackendKeyData, as Postgres names the
// notifying backend. (Reading LISTEN/UNLISTEN out of SQL text: test/unit/sql.test.ts.)
import { describe, expect, it } from 'vitest'
import { useDevDbs } from '../helpers/dev-db.ts'

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
