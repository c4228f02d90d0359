import { describe, expect, it } from '@effect/vitest'
import * as Effect from 'effect/Effect'
import * as TestClock from 'effect/TestClock'
import { millisOf } from '../src/internal/clock.js'

describe('the shell clock', () => {
  it.live('on the live clock, agrees with its own reading and never goes back', () =>
    Effect.gen(function* () {
      const clock = yield* Effect.clock
      const now = millisOf(clock)
      let last = now()
      for (let i = 0; i < 10_000; i++) {
        const t = now()
        expect(t).toBeGreaterThanOrEqual(last)
        last = t
      }
      const before = Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
      const read = now()
      const after = Number(clock.unsafeCurrentTimeNanos()) / 1_000_000
      // the same source: within the microseconds between the three readings (and a float's rounding)
      expect(read).toBeGreaterThanOrEqual(before - 0.01)
      expect(read).toBeLessThanOrEqual(after + 0.01)
      // and the wall clock's epoch, not a process-relative origin
      expect(Math.abs(read - Date.now())).toBeLessThan(1_000)
    })
  )

  it.effect('on a TestClock, reads that clock: it moves only when the test moves it', () =>
    Effect.gen(function* () {
      const clock = yield* Effect.clock
      const now = millisOf(clock)
      const start = now()
      expect(start).toBe(Number(clock.unsafeCurrentTimeNanos()) / 1_000_000)
      yield* TestClock.adjust('1500 millis')
      expect(now() - start).toBe(1_500)
    })
  )
})
