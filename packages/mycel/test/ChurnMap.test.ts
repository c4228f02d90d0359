import { describe, expect, it } from '@effect/vitest'
import fc from 'fast-check'
import { ChurnMap, RENEW_AFTER } from '../src/internal/churn.js'

type Step = { readonly op: 'set'; readonly key: number; readonly value: number } | { readonly op: 'delete'; readonly key: number } | { readonly op: 'clear' }

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 600, arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 300 }), value: fc.integer() }) },
  { weight: 400, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) }
)

const apply = (m: Map<number, number> | ChurnMap<number, number>, s: Step) => {
  if (s.op === 'set') m.set(s.key, s.value)
  else if (s.op === 'delete') return m.delete(s.key)
  else m.clear()
  return undefined
}

describe('ChurnMap', () => {
  it('holds what a Map holds, in the same order, across its renewals', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: RENEW_AFTER * 2, maxLength: RENEW_AFTER * 5 }), (steps) => {
        const churn = new ChurnMap<number, number>()
        const map = new Map<number, number>()
        for (const [i, s] of steps.entries()) {
          expect(apply(churn, s)).toBe(apply(map, s))
          if (s.op !== 'clear') {
            expect(churn.get(s.key)).toBe(map.get(s.key))
            expect(churn.has(s.key)).toBe(map.has(s.key))
          }
          expect(churn.size).toBe(map.size)
          if (i % 256 === 0) expect([...churn]).toEqual([...map])
        }
        expect([...churn]).toEqual([...map])
        expect([...churn.keys()]).toEqual([...map.keys()])
        expect([...churn.values()]).toEqual([...map.values()])
      }),
      { numRuns: 30, endOnFailure: true }
    )
  })

  it('keeps insertion order when a renewal comes in the middle of a queue of waiting entries', () => {
    const churn = new ChurnMap<number, string>()
    // 64 entries always waiting, the oldest leaving as a new one comes: a request table's life
    for (let id = 0; id < RENEW_AFTER * 4; id++) {
      churn.set(id, `r${id}`)
      if (id >= 64) churn.delete(id - 64)
    }
    const last = RENEW_AFTER * 4 - 1
    expect([...churn.keys()]).toEqual(Array.from({ length: 64 }, (_, i) => last - 63 + i))
  })
})
