// Reading LISTEN/UNLISTEN out of SQL text (what decides where a client listens), and the process id a
// notification carries: the notifying client's, from its BackendKeyData, as Postgres names the notifying backend.
import { describe, expect, it } from 'vitest'
import { listenCommands } from '../src/socket/client/listen.ts'
import { Keyword, keywordsIn } from '../src/socket/sql/tokens.ts'
import { useDevDbs } from './helpers/dev-db.ts'
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

  it('the quick byte test lets every LISTEN through and most other SQL not', () => {
    const listens = (sql: string) => (keywordsIn(Buffer.from(sql), 0, Buffer.byteLength(sql)) & Keyword.Listen) !== 0
    for (const sql of ['LISTEN a', 'unlisten *', 'select 1; Listen x']) expect(listens(sql), sql).toBe(true)
    for (const sql of ['select 1', 'insert into t values (1)', 'NOTIFY x']) expect(listens(sql), sql).toBe(false)
  })
})

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
