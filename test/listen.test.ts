// Reading LISTEN/UNLISTEN out of SQL text (what decides where a client listens), and the process id a
// notification carries: the notifying client's, from its BackendKeyData, as Postgres names the notifying backend.
import { afterEach, describe, expect, it } from 'vitest'
import { startDevDb, type DevDb } from '../src/dev-server.ts'
import { listenCommands, mayListen } from '../src/socket/listen.ts'
import { copyTemplate, removeDataDir } from './helpers/db.ts'
import { connectRaw, withDeadline, type RawClient } from './helpers/raw-client.ts'
import * as wire from './helpers/wire.ts'

describe('listenCommands', () => {
  it('finds LISTEN and UNLISTEN statements, folding unquoted names and keeping quoted ones', () => {
    expect(listenCommands('LISTEN Orders; listen "Audit""s"; UNLISTEN orders; unlisten *; UNLISTEN "*"')).toEqual([
      { kind: 'listen', channel: 'orders' },
      { kind: 'listen', channel: 'Audit"s' },
      { kind: 'unlisten', channel: 'orders' },
      { kind: 'unlisten', channel: null },
      { kind: 'unlisten', channel: '*' },
    ])
  })

  it('ignores the word inside literals, comments, dollar quotes and other statements', () => {
    const sql = "select 'listen a', E'\\' listen b'; -- listen c\n/* listen /* d */ */ do $x$ begin execute 'listen e'; end $x$; select listen from t; listen 'f'"
    expect(listenCommands(sql)).toEqual([])
  })

  it('mayListen is a quick byte test that lets every LISTEN through and most other SQL not', () => {
    const frame = (sql: string) => wire.query(sql)
    for (const sql of ['LISTEN a', 'unlisten *', 'select 1; Listen x']) expect(mayListen(frame(sql), 0, frame(sql).length), sql).toBe(true)
    for (const sql of ['select 1', 'insert into t values (1)', 'NOTIFY x']) expect(mayListen(frame(sql), 0, frame(sql).length), sql).toBe(false)
  })
})

describe('notifications', () => {
  let dev: DevDb | null = null
  let dataDir = ''
  const clients: RawClient[] = []
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy()
    await withDeadline(dev?.close() ?? Promise.resolve(), 5_000, 'close')
    await removeDataDir(dataDir)
  })

  it("carry the notifying client's process id; a listener idle at the time gets it at once", async () => {
    dataDir = await copyTemplate()
    dev = await startDevDb({ dataDir })
    const listener = await connectRaw(dev.url)
    const sender = await connectRaw(dev.url)
    clients.push(listener, sender)
    expect((await listener.query('LISTEN jobs')).errors).toEqual([])
    expect((await sender.query("NOTIFY jobs, 'go'")).errors).toEqual([])
    const message = await listener.next('NotificationResponse')
    expect(message.body.readInt32BE(0)).toBe(sender.backendKey!.pid)
    expect(message.body.subarray(4).toString()).toBe('jobs\0go\0')
  })
})
