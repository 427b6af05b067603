// What a thread costs per call, in process and without sockets: the same protocol calls through an in-process PGlite
// and through a DbThread, each on its own copy of one data dir, alternating in rounds so both see the same load.

import { PGlite } from '@electric-sql/pglite'
import { DbThread } from '../../src/engine/thread.ts'
import { SYNC_MESSAGE } from '../../src/server/protocol/frontend-messages.ts'

export interface OverheadRow {
  call: string
  /** Output bytes per call. */
  bytes: number
  mainUs: number
  threadUs: number
  /** threadUs − mainUs: what crossing to the thread and back adds to one call. */
  addedUs: number
}

interface RawDb {
  runExclusive<T>(fn: () => Promise<T>): Promise<T>
  execProtocolRawStream(message: Uint8Array, options: { onRawData: (chunk: Uint8Array) => void }): Promise<void>
}

function simpleQuery(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`)
  const message = Buffer.allocUnsafe(5 + body.length)
  message[0] = 0x51 // Q
  message.writeInt32BE(4 + body.length, 1)
  body.copy(message, 5)
  return message
}

const CALLS: Array<{ call: string; message: Uint8Array; calls: number }> = [
  // Sync alone: PGlite answers ReadyForQuery and does nothing else, so this is the floor of a call.
  { call: 'Sync (ReadyForQuery only)', message: SYNC_MESSAGE, calls: 4000 },
  { call: 'select 1 (simple Query)', message: simpleQuery('select 1'), calls: 4000 },
  {
    call: '1 MB result (16 × 64 kB rows)',
    message: simpleQuery("select repeat('x', 65536) from generate_series(1, 16)"),
    calls: 100,
  },
]
const ROUNDS = 3

async function timeCalls(db: RawDb, message: Uint8Array, calls: number): Promise<{ us: number; bytes: number }> {
  let bytes = 0
  const onRawData = (chunk: Uint8Array): void => {
    bytes += chunk.byteLength
  }
  const started = performance.now()
  for (let i = 0; i < calls; i++) await db.runExclusive(() => db.execProtocolRawStream(message, { onRawData }))
  return { us: ((performance.now() - started) * 1000) / calls, bytes: bytes / calls }
}

/** Per-call time of each call, best round of ROUNDS for each side. */
export async function measureOverhead(mainDataDir: string, threadDataDir: string): Promise<OverheadRow[]> {
  const main = await PGlite.create({ dataDir: mainDataDir })
  const thread = await DbThread.create({ dataDir: threadDataDir })
  try {
    const rows: OverheadRow[] = []
    for (const { call, message, calls } of CALLS) {
      await timeCalls(main, message, Math.ceil(calls / 4))
      await timeCalls(thread, message, Math.ceil(calls / 4))
      let mainUs = Infinity
      let threadUs = Infinity
      let bytes = 0
      for (let round = 0; round < ROUNDS; round++) {
        const a = await timeCalls(main, message, calls)
        const b = await timeCalls(thread, message, calls)
        mainUs = Math.min(mainUs, a.us)
        threadUs = Math.min(threadUs, b.us)
        bytes = b.bytes
      }
      rows.push({ call, bytes, mainUs, threadUs, addedUs: threadUs - mainUs })
    }
    return rows
  } finally {
    await main.close()
    await thread.close()
  }
}
