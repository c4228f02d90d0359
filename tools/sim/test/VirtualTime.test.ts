import { describe, expect, it } from '@effect/vitest'
import { Effect, Runtime } from 'effect'
import { type Gate, VirtualTime } from '../src/VirtualTime.js'

describe('virtual time', () => {
  it('fires timers in time order, then insertion order, only when the driver moves the clock', async () => {
    const vt = new VirtualTime()
    const fired: Array<string> = []
    vt.schedule(20, () => fired.push('b'))
    vt.schedule(10, () => fired.push('a'))
    vt.schedule(20, () => fired.push('c'))
    await vt.advanceTo(15)
    expect(fired).toEqual(['a'])
    expect(vt.now()).toBe(15)
    await vt.advanceTo(20)
    expect(fired).toEqual(['a', 'b', 'c'])
  })

  it('a node clock adds its skew to the time, not to its sleeps; a paused gate holds due sleeps until it resumes', async () => {
    const vt = new VirtualTime()
    let offset = 60_000
    const gate: Gate = { paused: false, parked: [] }
    const clock = vt.clock(() => offset, gate)
    expect(clock.unsafeCurrentTimeMillis()).toBe(60_000)
    offset = -5_000
    expect(clock.unsafeCurrentTimeMillis()).toBe(-5_000)
    let woke = -1
    Runtime.runFork(Runtime.defaultRuntime)(Effect.sleep(100).pipe(Effect.andThen(() => (woke = vt.now())), Effect.withClock(clock)))
    await vt.advanceTo(50)
    gate.paused = true
    await vt.advanceTo(500)
    expect(woke).toBe(-1)
    gate.paused = false
    for (const wake of gate.parked.splice(0)) wake()
    await vt.settle()
    expect(woke).toBe(500)
  })

  it('while installed, setTimeout runs on the virtual clock and a cleared one never fires; uninstall restores the real timers', async () => {
    const realSetTimeout = globalThis.setTimeout
    const vt = new VirtualTime()
    vt.install()
    try {
      expect(() => new VirtualTime().install()).toThrow(/already running/)
      const fired: Array<number> = []
      setTimeout(() => fired.push(vt.now()), 1_000)
      const cancelled = setTimeout(() => fired.push(-1), 500)
      clearTimeout(cancelled)
      await vt.advanceTo(999)
      expect(fired).toEqual([])
      await vt.advanceTo(5_000)
      expect(fired).toEqual([1_000])
    } finally {
      vt.uninstall()
    }
    expect(globalThis.setTimeout).toBe(realSetTimeout)
  })
})
