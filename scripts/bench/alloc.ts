// --alloc WORKLOAD:CLIENTS:DRIVER: what the server's thread allocates per query. One cell warms the server up, then a
// second runs under V8's sampling heap profiler (alloc-sampler.mjs); the total sampled, over the cell's queries, is
// the bytes per query (its connects included), and the functions that allocate most are listed by self bytes.
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeCell, runWireCell, type Timing } from './cells.ts'
import { placeOf } from './extras.ts'
import type { DriverName } from './drivers.ts'
import { REPO_ROOT, startOurs } from './targets.ts'
import type { Workload } from './workloads.ts'

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  selfSize: number
  children: ProfileNode[]
}

const SAMPLER = join(REPO_ROOT, 'scripts', 'bench', 'alloc-sampler.mjs')
const WRITE_DEADLINE_MS = 10_000

export async function runAllocProfile(
  workload: Workload,
  clients: number,
  driver: DriverName,
  timing: Timing,
  server: { template: string; checkout?: string },
  scratch: string,
  progress: (line: string) => void,
): Promise<string> {
  const file = join(scratch, 'alloc.heapprofile')
  const target = await startOurs({ ...server, allocProfile: { preload: SAMPLER, file } })
  let sampled: { cell: string; ops: number; profile: ProfileNode }
  try {
    progress(`warm-up: ${describeCell(await runWireCell(target, workload, clients, driver, timing))}`)
    target.signal!('SIGUSR1')
    const cell = await runWireCell(target, workload, clients, driver, timing)
    target.signal!('SIGUSR2')
    progress(describeCell(cell))
    sampled = { cell: describeCell(cell), ops: cell.ops, profile: await readProfile(file) }
  } finally {
    await target.stop()
  }
  const self = new Map<string, number>()
  const walk = async (node: ProfileNode): Promise<void> => {
    const key = `| ${node.callFrame.functionName || '(anonymous)'} | ${(await placeOf(node.callFrame)).where} |`
    self.set(key, (self.get(key) ?? 0) + node.selfSize)
    for (const child of node.children) await walk(child)
  }
  await walk(sampled.profile)
  const total = [...self.values()].reduce((sum, bytes) => sum + bytes, 0)
  const perOp = sampled.ops > 0 ? Math.round(total / sampled.ops) : 0
  const rows = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25)
    .map(
      ([key, bytes]) =>
        `${key} ${Math.round(bytes / Math.max(1, sampled.ops))} | ${((100 * bytes) / total).toFixed(1)}% |`,
    )
  return [
    `Allocations of ${server.checkout ? `the pglite-dev-db of ${server.checkout}` : 'pglite-dev-db'}'s server thread, serving ${workload.name} ×${clients} ${driver} (${sampled.cell}): ${perOp} bytes a query (sampled every 512 bytes, freed objects included)`,
    '',
    '| function | where | bytes a query | share |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n')
}

/** The profile the sampler writes once told to stop. */
async function readProfile(file: string): Promise<ProfileNode> {
  const deadline = performance.now() + WRITE_DEADLINE_MS
  for (;;) {
    const written = await stat(file).then(
      (s) => s.size > 0,
      () => false,
    )
    if (written) {
      try {
        return (JSON.parse(await readFile(file, 'utf8')) as { head: ProfileNode }).head
      } catch {
        // Still being written.
      }
    }
    if (performance.now() > deadline)
      throw new Error(`the server wrote no allocation profile to ${file} within ${WRITE_DEADLINE_MS} ms`)
    await sleep(50)
  }
}
