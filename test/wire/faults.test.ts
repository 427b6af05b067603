// Failures inside the server's call into PGlite. Stock's queue keeps `processing` set after one thrown error, so
// nobody is served again; ours fails only the client whose batch threw, unless PGlite itself died.
import { describe, expect, it } from 'vitest'
import type { PGlite } from '@electric-sql/pglite'
import * as wire from '../../harness/wire.ts'
import { withDeadline } from '../../harness/raw-client.ts'
import { targets, useInProcessTarget } from '../helpers/targets.ts'

const MARKER = 'inject-fault'
const STALL_MS = 2_000

/** Makes the next call into PGlite whose bytes mention MARKER throw `error`, before PGlite sees them. */
function injectFault(db: PGlite, error: Error): void {
  const original = db.execProtocolRawStream.bind(db)
  const marker = Buffer.from(MARKER)
  db.execProtocolRawStream = (async (message: Uint8Array, options: Parameters<PGlite['execProtocolRawStream']>[1]) => {
    if (Buffer.from(message.buffer, message.byteOffset, message.byteLength).includes(marker)) throw error
    return original(message, options)
  }) as PGlite['execProtocolRawStream']
}

/** What PGlite throws when its Postgres has exited: the instance is unusable from then on. */
function pgliteExit(): Error {
  const error = new Error('Program terminated with exit(1)')
  error.name = 'ExitStatus'
  return error
}

describe.each(targets)('faults on $name', (target) => {
  const ours = target.name === 'patched'
  const { start, connect } = useInProcessTarget(target)

  it('an exception inside one batch fails that client; the next client still works', async () => {
    const server = await start()
    const bystander = await connect(server.url)
    const victim = await connect(server.url)
    injectFault(server.db, new Error('injected failure'))

    await victim.send(wire.query(`select '${MARKER}'`))
    if (ours) {
      const error = await victim.next('ErrorResponse')
      expect(wire.decodeError(error.body)).toMatchObject({ severity: 'FATAL', code: 'XX000' })
      await withDeadline(victim.closed, 3_000, 'the failed client closed')
      expect((await bystander.query('select 1 as one')).rows).toEqual([['1']])
      const late = await connect(server.url)
      expect((await late.extended('select $1::int + 1 as two', ['1'])).rows).toEqual([['2']])
    } else {
      // Stock's queue is latched: the bystander waits forever.
      await expect(bystander.query('select 1 as one', { deadlineMs: STALL_MS })).rejects.toThrow(/stalled/i)
    }
  })

  it('PGlite dying fails every client with FATAL and new clients are refused, not hung', async () => {
    const server = await start()
    const errors: unknown[] = []
    const events = server.server as unknown as EventTarget
    events.addEventListener('error', (event: Event) => errors.push((event as CustomEvent).detail))
    const bystander = await connect(server.url)
    const victim = await connect(server.url)
    injectFault(server.db, pgliteExit())

    await victim.send(wire.query(`select '${MARKER}'`))
    if (ours) {
      for (const client of [victim, bystander]) {
        const error = await client.next('ErrorResponse')
        expect(wire.decodeError(error.body)).toMatchObject({ severity: 'FATAL', code: 'XX000' })
        await withDeadline(client.closed, 3_000, 'a client closed after PGlite died')
      }
      expect(errors.length).toBe(1)
      const late = await connect(server.url).then(
        () => null,
        (error: Error) => error,
      )
      expect(late?.message).toMatch(/XX000|PGlite failed/)
    } else {
      await expect(bystander.query('select 1 as one', { deadlineMs: STALL_MS })).rejects.toThrow(/stalled/i)
    }
  })
})
