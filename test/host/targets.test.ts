// The harness itself: both ways of running a target, and that a spawned target can always be stopped.
import { describe, expect, onTestFinished, test } from 'vitest'
import { connectRaw, StalledError } from '../../harness/raw-client.ts'
import { stock, targets } from '../helpers/targets.ts'

describe.each(targets)('$name', (target) => {
  test('start() serves on 127.0.0.1 with the port read back', async () => {
    const running = await target.start()
    onTestFinished(() => running.close())
    expect(running.url).toBe(`postgres://postgres@127.0.0.1:${running.port}/postgres`)
    expect(running.server.getServerConn()).toBe(`127.0.0.1:${running.port}`)
    const client = await connectRaw(running.url)
    onTestFinished(async () => {
      await client.end()
    })
    expect((await client.query('select 1 as one')).rows).toEqual([['1']])
  })

  test('spawn() serves from a child process', async () => {
    const running = await target.spawn()
    onTestFinished(() => running.close())
    const client = await connectRaw(running.url)
    onTestFinished(async () => {
      await client.end()
    })
    expect((await client.extended('select $1::int as n', ['5'])).rows).toEqual([['5']])
  })
})

test('a spawned stock server whose PGlite wedged is still stopped by close()', async () => {
  const running = await stock.spawn()
  onTestFinished(() => running.close())
  const client = await connectRaw(running.url, { deadlineMs: 1_000 })
  onTestFinished(() => client.destroy())
  // An unknown message type reaches stock's PGlite as is; afterwards it never answers again.
  await client.send(Buffer.from([0xff, 0, 0, 0, 4]))
  await expect(client.query('select 1')).rejects.toThrow(StalledError)
  await running.close()
})
