// The connection's states and their timers, with fake timers (no socket here): each state runs its own timer, from
// the moment it is entered; nothing leaves closing; the authentication deadline ends with startup.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  AUTHENTICATION_TIMEOUT_MS,
  ConnectionStates,
  MAX_TIMER_MS,
  type Timeout,
} from '../../src/server/connection/connection-state.ts'

const TIMEOUTS = { idleTimeoutMs: 100, idleInTransactionTimeoutMs: 200, queueTimeoutMs: 300 }

function states(timeouts = TIMEOUTS): { machine: ConnectionStates; fired: Array<[Timeout, number]> } {
  const fired: Array<[Timeout, number]> = []
  return { machine: new ConnectionStates(timeouts, (timeout, ms) => fired.push([timeout, ms])), fired }
}

describe('ConnectionStates', () => {
  beforeEach(() => void vi.useFakeTimers())
  afterEach(() => void vi.useRealTimers())

  it('each state runs its own timer: idle 57P05, holding 25P03, waiting the queue timeout, active none', () => {
    for (const [state, timeout, ms] of [
      ['idle', 'idle-session', 100],
      ['holding', 'idle-in-transaction', 200],
      ['waiting', 'queue', 300],
    ] as const) {
      const { machine, fired } = states()
      machine.enter(state)
      vi.advanceTimersByTime(ms - 1)
      expect(fired, state).toEqual([])
      vi.advanceTimersByTime(1)
      expect(fired, state).toEqual([[timeout, ms]])
    }
    const { machine, fired } = states()
    machine.enter('active')
    vi.advanceTimersByTime(AUTHENTICATION_TIMEOUT_MS * 2)
    expect(fired).toEqual([])
  })

  it('entering a state again starts its timer afresh; leaving it stops it', () => {
    const { machine, fired } = states()
    machine.enter('holding')
    vi.advanceTimersByTime(150)
    machine.enter('holding')
    vi.advanceTimersByTime(150)
    expect(fired).toEqual([])
    machine.enter('active')
    vi.advanceTimersByTime(1000)
    expect(fired).toEqual([])
  })

  it("a state's timer counts from its entry, whether the state left had a shorter one or a longer one", () => {
    const { machine, fired } = states()
    machine.enter('idle')
    vi.advanceTimersByTime(50)
    machine.enter('waiting')
    vi.advanceTimersByTime(299)
    expect(fired).toEqual([])
    vi.advanceTimersByTime(1)
    expect(fired).toEqual([['queue', 300]])
    machine.enter('holding')
    vi.advanceTimersByTime(100)
    machine.enter('idle')
    vi.advanceTimersByTime(99)
    expect(fired).toEqual([['queue', 300]])
    vi.advanceTimersByTime(1)
    expect(fired).toEqual([
      ['queue', 300],
      ['idle-session', 100],
    ])
  })

  it("a timeout past Node's timer range (2^31-1 ms, 24.8 days) fires when due: armed in steps, not at once", () => {
    const days30 = 30 * 24 * 3600 * 1000
    const { machine, fired } = states({ idleTimeoutMs: days30, idleInTransactionTimeoutMs: 0, queueTimeoutMs: 0 })
    const start = performance.now()
    machine.enter('idle')
    vi.advanceTimersToNextTimer()
    expect([performance.now() - start, fired]).toEqual([MAX_TIMER_MS, []])
    vi.advanceTimersToNextTimer()
    expect([performance.now() - start, fired]).toEqual([days30, [['idle-session', days30]]])
  })

  it('a timeout of 0 is no timer', () => {
    const { machine, fired } = states({ idleTimeoutMs: 0, idleInTransactionTimeoutMs: 0, queueTimeoutMs: 0 })
    for (const state of ['idle', 'holding', 'waiting'] as const) machine.enter(state)
    vi.advanceTimersByTime(10 ** 7)
    expect(fired.filter(([timeout]) => timeout !== 'authentication')).toEqual([])
  })

  it('the authentication deadline runs from the start and ends with startup, whatever else happens in between', () => {
    const slow = states()
    slow.machine.enter('startup')
    vi.advanceTimersByTime(AUTHENTICATION_TIMEOUT_MS)
    expect(slow.fired.map(([timeout]) => timeout)).toContain('authentication')
    const quick = states({ idleTimeoutMs: 0, idleInTransactionTimeoutMs: 0, queueTimeoutMs: 0 })
    quick.machine.enter('idle')
    vi.advanceTimersByTime(AUTHENTICATION_TIMEOUT_MS * 2)
    expect(quick.fired).toEqual([])
  })

  it('nothing leaves closing but closed, and neither runs a timer', () => {
    const { machine, fired } = states()
    machine.enter('holding')
    machine.enter('closing')
    machine.enter('idle')
    expect(machine.current).toBe('closing')
    expect([machine.isClosing, machine.isServing]).toEqual([true, false])
    machine.enter('closed')
    expect(machine.current).toBe('closed')
    vi.advanceTimersByTime(AUTHENTICATION_TIMEOUT_MS * 2)
    expect(fired).toEqual([])
  })
})
