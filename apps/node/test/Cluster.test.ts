import { describe, expect, it } from '@effect/vitest'
import { activeResources } from '@mycorrizal/testing'
import { Duration, Effect, Fiber } from 'effect'
import { fileURLToPath } from 'node:url'
import { spawnNode } from '../src/Cluster.js'

const neverReady = fileURLToPath(new URL('./fixtures/never-ready.mjs', import.meta.url))
const count = (type: string) => activeResources()[type] ?? 0

describe('mycorrizal cluster', () => {
  it.live('a node start interrupted before the node is ready leaves no process and no timer behind', () =>
    Effect.gen(function* () {
      const processes = count('ProcessWrap')
      const timers = count('Timeout')
      const fiber = yield* Effect.fork(Effect.scoped(spawnNode('n1', [], process.env, () => {}, neverReady)))
      for (let i = 0; i < 100 && count('ProcessWrap') === processes; i++) yield* Effect.sleep(Duration.millis(20))
      expect(count('ProcessWrap')).toBe(processes + 1)
      yield* Fiber.interrupt(fiber)
      for (let i = 0; i < 250 && count('ProcessWrap') > processes; i++) yield* Effect.sleep(Duration.millis(20))
      expect(count('ProcessWrap')).toBe(processes)
      expect(count('Timeout')).toBeLessThanOrEqual(timers)
    })
  )
})
