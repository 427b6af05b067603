// OwnerScheduler with a fake executor: turns, FIFO fairness, affinity, and that nothing ever latches.
import { describe, expect, it } from 'vitest'
import { OwnerScheduler, SchedulerClosedError } from '../../src/server/session/scheduler.ts'

/** A fake executor: each job acquires, logs its steps, and either releases or keeps the session. */
async function job(s: OwnerScheduler<string>, id: string, log: string[], keep = false): Promise<void> {
  const wait = s.acquire(id)
  if (wait) await wait
  log.push(id)
  if (!keep) s.release(id)
}

describe('OwnerScheduler', () => {
  it('grants a free session at once, without a promise', () => {
    const s = new OwnerScheduler<string>()
    expect(s.acquire('a')).toBeNull()
    expect(s.owner).toBe('a')
    expect(s.acquire('a')).toBeNull()
  })

  it('cancelWait takes one waiter out of the line; the others keep their order', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    expect(s.acquire('owner')).toBeNull()
    const b = job(s, 'b', log)
    const c = job(s, 'c', log)
    const d = job(s, 'd', log)
    const reason = new Error('canceled')
    expect(s.cancelWait('c', reason)).toBe(true)
    expect(s.cancelWait('c', reason)).toBe(false)
    expect(s.cancelWait('owner', reason)).toBe(false)
    await expect(c).rejects.toBe(reason)
    s.release('owner')
    await Promise.all([b, d])
    expect(log).toEqual(['b', 'd'])
  })

  it('serves waiters first-come first-served after the owner releases', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    expect(s.acquire('owner')).toBeNull()
    const jobs = ['b', 'c', 'd'].map((id) => job(s, id, log))
    expect(s.waiting).toBe(3)
    s.release('owner')
    await Promise.all(jobs)
    expect(log).toEqual(['b', 'c', 'd'])
    expect(s.owner).toBeNull()
  })

  it('lets the owner run again ahead of waiters while it keeps the session (pipeline/transaction affinity)', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    await job(s, 'a', log, true)
    const b = job(s, 'b', log)
    await job(s, 'a', log, true)
    await job(s, 'a', log, true)
    expect(log).toEqual(['a', 'a', 'a'])
    s.release('a')
    await b
    expect(log).toEqual(['a', 'a', 'a', 'b'])
  })

  it('does not latch when a job throws: the next waiter still runs once the failed owner is forgotten', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    const failing = (async () => {
      const wait = s.acquire('bad')
      if (wait) await wait
      try {
        throw new Error('boom')
      } finally {
        s.forget('bad')
      }
    })()
    const next = job(s, 'good', log)
    await expect(failing).rejects.toThrow('boom')
    await next
    expect(log).toEqual(['good'])
  })

  it('forget() drops a waiter with SchedulerClosedError and leaves the others in order', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    expect(s.acquire('owner')).toBeNull()
    const gone = s.acquire('gone')!
    const stays = job(s, 'stays', log)
    s.forget('gone')
    await expect(gone).rejects.toBeInstanceOf(SchedulerClosedError)
    s.release('owner')
    await stays
    expect(log).toEqual(['stays'])
  })

  it('forget() of the owner hands the session to the next waiter', async () => {
    const s = new OwnerScheduler<string>()
    const log: string[] = []
    expect(s.acquire('owner')).toBeNull()
    const next = job(s, 'next', log)
    s.forget('owner')
    await next
    expect(log).toEqual(['next'])
  })

  it('a waiter taken out of line (its queue timeout) leaves nothing behind: the next free session is granted at once', async () => {
    const s = new OwnerScheduler<string>()
    expect(s.acquire('owner')).toBeNull()
    const timedOut = s.acquire('slow')!
    expect(s.cancelWait('slow', new Error('queue timeout'))).toBe(true)
    await expect(timedOut).rejects.toThrow('queue timeout')
    expect(s.waiting).toBe(0)
    s.release('owner')
    expect(s.acquire('later')).toBeNull()
  })

  it('release() by a non-owner changes nothing', () => {
    const s = new OwnerScheduler<string>()
    expect(s.acquire('a')).toBeNull()
    s.release('b')
    expect(s.owner).toBe('a')
  })

  it('close() rejects every waiter and refuses new ones', async () => {
    const s = new OwnerScheduler<string>()
    expect(s.acquire('a')).toBeNull()
    const waiting = s.acquire('b')!
    s.close(new Error('database gone'))
    await expect(waiting).rejects.toThrow('database gone')
    await expect(s.acquire('c')!).rejects.toThrow('database gone')
  })

  it('under a random interleaving of 200 jobs, at most one runs at a time and all finish', async () => {
    const s = new OwnerScheduler<number>()
    let running = 0
    let maxRunning = 0
    let seed = 42
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31
    const jobs = Array.from({ length: 200 }, async (_, id) => {
      const wait = s.acquire(id)
      if (wait) await wait
      running++
      maxRunning = Math.max(maxRunning, running)
      for (let i = Math.floor(random() * 3); i > 0; i--) await Promise.resolve()
      running--
      s.release(id)
    })
    await Promise.all(jobs)
    expect(maxRunning).toBe(1)
    expect(s.owner).toBeNull()
  })
})
