// COPY FROM STDIN is held in memory until complete (PGlite takes it in one call), so its size is bounded: past
// `maxCopyBytes` the client gets ERROR 54000, the rest of its data is dropped as Postgres drops it after a COPY
// error, nothing of the COPY stays, PGlite carries on, and the session is free for the next client at once.
import { afterEach, describe, expect, it } from 'vitest'
import * as wire from '../../harness/wire.ts'
import { connectRaw, withDeadline, type RawClient } from '../../harness/raw-client.ts'
import { patched, type InProcessTarget } from '../helpers/targets.ts'

const LIMIT = 64 * 1024

describe('COPY FROM STDIN size limit (ours)', () => {
  let server: InProcessTarget | undefined
  const clients: RawClient[] = []
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy()
    await server?.close()
  })
  const connect = async (url: string) => {
    const client = await connectRaw(url)
    clients.push(client)
    return client
  }

  it('answers 54000 past the limit, keeps nothing, and frees the session for the next client', async () => {
    server = await patched.start({ maxCopyBytes: LIMIT })
    const copier = await connect(server.url)
    const other = await connect(server.url)
    expect((await copier.query('create table big (line text)')).errors).toEqual([])

    await copier.send(wire.query('copy big from stdin'))
    await copier.next('CopyInResponse')
    const row = Buffer.from(`${'x'.repeat(1023)}\n`)
    // Twice the limit, then CopyDone: the error comes when the limit is passed, the rest is dropped.
    for (let i = 0; i < (2 * LIMIT) / row.length; i++) await copier.send(wire.copyData(row))
    const failed = wire.summarize(await copier.until('ReadyForQuery'))
    expect(failed.errors.map((e) => e.code)).toEqual(['54000'])
    expect(failed.status).toBe('I')
    await copier.send(wire.copyDone())

    // The session is not held by the failed COPY: another client runs now, and sees no rows.
    expect(
      (await withDeadline(other.query('select count(*) from big'), 3_000, 'other client after the failed COPY')).rows,
    ).toEqual([['0']])
    // The copier carries on too, and a COPY within the limit works.
    await copier.send(wire.query('copy big from stdin'))
    await copier.next('CopyInResponse')
    await copier.send(wire.copyData('small\n'), wire.copyDone())
    const ok = wire.summarize(await copier.until('ReadyForQuery'))
    expect(ok.errors).toEqual([])
    expect(ok.commands).toEqual(['COPY 1'])
  })

  it('inside a transaction, the refused COPY aborts it (status E), as a failed COPY does in Postgres', async () => {
    server = await patched.start({ maxCopyBytes: LIMIT })
    const copier = await connect(server.url)
    expect((await copier.query('create table big (line text)')).errors).toEqual([])
    expect((await copier.query("begin; insert into big values ('before')")).status).toBe('T')
    await copier.send(wire.query('copy big from stdin'))
    await copier.next('CopyInResponse')
    await copier.send(wire.copyData(Buffer.alloc(LIMIT + 1, 0x61)), wire.copyDone())
    const failed = wire.summarize(await copier.until('ReadyForQuery'))
    expect(failed.errors.map((e) => e.code)).toEqual(['54000'])
    expect(failed.status).toBe('E')
    expect((await copier.query('rollback')).status).toBe('I')
    expect((await copier.query('select count(*) from big')).rows).toEqual([['0']])
  })

  it('in the extended protocol, messages are discarded until Sync, and the pipeline before the COPY is rolled back', async () => {
    server = await patched.start({ maxCopyBytes: LIMIT })
    const copier = await connect(server.url)
    const other = await connect(server.url)
    expect((await copier.query('create table big (line text)')).errors).toEqual([])
    await copier.send(
      wire.parse('', "insert into big values ('in the pipeline')"),
      wire.bind('', ''),
      wire.execute(''),
      wire.parse('', 'copy big from stdin'),
      wire.bind('', ''),
      wire.execute(''),
    )
    await copier.next('CopyInResponse')
    await copier.send(wire.copyData(Buffer.alloc(LIMIT + 1, 0x61)), wire.copyDone(), wire.sync())
    const failed = wire.summarize(await copier.until('ReadyForQuery'))
    expect(failed.errors.map((e) => e.code)).toEqual(['54000'])
    expect(failed.status).toBe('I')
    expect((await withDeadline(other.query('select count(*) from big'), 3_000, 'other client')).rows).toEqual([['0']])
  })
})
