// The live fuzz's bad clients, one after another per worker: startup-phase cases (bad-startups.ts) on their own
// sockets, and connections that misbehave a few times (bad-sessions.ts) before they end badly. Failures are
// collected with the input that caused them, not thrown, so one run reports every kind.
import { connectRaw, toAddress, type RawClient } from '../../harness/raw-client.ts'
import { startupCase } from './bad-startups.ts'
import { ending, sessionCase } from './bad-sessions.ts'
import { CaseMismatch } from './shown.ts'
import type { Rng } from '../../harness/seed.ts'

export interface Failure {
  kind: string
  description: string
  detail: string
}

export interface LiveRun {
  cases: Map<string, number>
  failures: Failure[]
}

/**
 * One bad client after another: a startup-phase case on its own socket, or a connection that misbehaves a few
 * times in ways it survives and then ends badly. Every case is drawn before any runs, so the inputs depend on the
 * seed only, never on how the server answered.
 */
export async function badWorker(
  index: number,
  rng: Rng,
  url: string,
  deadlineMs: number,
  budget: number,
  run: LiveRun,
): Promise<void> {
  const address = toAddress(url)
  let n = 0
  const attempt = async (
    id: number,
    kind: string,
    description: string,
    body: () => Promise<void>,
  ): Promise<boolean> => {
    run.cases.set(kind, (run.cases.get(kind) ?? 0) + 1)
    try {
      await body()
      return true
    } catch (error) {
      const detail =
        error instanceof CaseMismatch ? error.message : `${(error as Error).name}: ${(error as Error).message}`
      run.failures.push({ kind, description: `worker ${index} case ${id}: ${description}`, detail })
      return false
    }
  }
  while (n < budget) {
    if (rng.chance(0.3)) {
      const id = n++
      const c = startupCase(rng, address, deadlineMs, () => `fz${index}_${id}`)
      await attempt(id, c.kind, c.description, c.run)
      continue
    }
    const cases = Array.from({ length: Math.min(rng.int(0, 6), budget - n - 1) }, () => {
      const id = n++
      return { id, ...sessionCase(rng, deadlineMs, `fz${index}_${id}`) }
    })
    const lastId = n++
    const last = ending(rng, deadlineMs, `fz${index}_${lastId}`)
    let client: RawClient | undefined
    const connected = await attempt(lastId, 'connect', 'connect and start up', async () => {
      client = await connectRaw(url, { deadlineMs })
    })
    if (!client || !connected) continue
    const connection = client
    try {
      let isUsable = true
      for (const c of cases)
        if (!(isUsable = await attempt(c.id, c.kind, c.description, () => c.run(connection)))) break
      if (isUsable) await attempt(lastId, last.kind, last.description, () => last.run(connection))
    } finally {
      connection.destroy()
    }
  }
}

export function summarize(run: LiveRun): string {
  const byKind = new Map<string, Failure[]>()
  for (const f of run.failures) byKind.set(f.kind, [...(byKind.get(f.kind) ?? []), f])
  const lines = [...byKind].map(([kind, failures]) => {
    const examples = failures.slice(0, 3).map((f) => `    ${f.description}\n      ${f.detail}`)
    return `  ${kind}: ${failures.length} of ${run.cases.get(kind)} failed, e.g.\n${examples.join('\n')}`
  })
  return `${run.failures.length} bad-client cases answered wrongly:\n${lines.join('\n')}`
}
