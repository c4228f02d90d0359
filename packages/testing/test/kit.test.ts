import { describe, expect, it } from '@effect/vitest'
import { Effect } from 'effect'
import { activeResources, advanceUntil, captureLogs, isMesh, turns } from '../src/index.js'

describe('test kit', () => {
  it.effect('captureLogs keeps each line with its level and annotations', () => {
    const logs = captureLogs()
    return Effect.gen(function* () {
      yield* Effect.logWarning('stream limit reached', 'extra').pipe(Effect.annotateLogs({ peer: 'b', open: 100 }))
      expect(logs.lines).toEqual([{ message: 'stream limit reached extra', level: 'WARN', annotations: { peer: 'b', open: 100 } }])
    }).pipe(Effect.provide(logs.layer))
  })

  it.effect('advanceUntil moves the test clock until the condition holds, and fails past its limit', () =>
    Effect.gen(function* () {
      let reads = 0
      expect(yield* advanceUntil(() => ++reads > 3, 'three reads', 1_000, 50)).toBe(150)
      const error = yield* Effect.flip(advanceUntil(() => false, 'never', 200))
      expect(error.message).toBe('never did not hold within 200 ms of test-clock time')
    })
  )

  it('isMesh: every node sees exactly the ids', () => {
    const node = (ids: Array<string>) => ({ nodes: () => ids })
    expect(isMesh([node(['a', 'b']), node(['a', 'b'])], ['b', 'a'])).toBe(true)
    expect(isMesh([node(['a', 'b']), node(['a'])], ['a', 'b'])).toBe(false)
  })

  it.live('turns lets pending immediates run; activeResources counts them', () =>
    Effect.gen(function* () {
      let ran = false
      setImmediate(() => (ran = true))
      expect(activeResources()['Immediate']).toBeGreaterThanOrEqual(1)
      yield* turns(2)
      expect(ran).toBe(true)
    })
  )
})
