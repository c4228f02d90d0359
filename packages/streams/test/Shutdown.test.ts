/**
 * The streams layer's scope owns everything it starts: once it closes, no timer, handle or
 * fiber of the service is left.
 */
import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { activeResources, turns as loopTurns } from '@mycorrizal/testing'
import { Context, Effect, Layer, Logger, LogLevel, Supervisor } from 'effect'
import { Streams } from '../src/index.js'

const secret = 'shutdown-test-cluster-secret-0123456789'

const node = (id: string, seeds: ReadonlyArray<string> = []) =>
  Layer.build(
    Streams.layer({ grace: '1 minute' }).pipe(
      Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds] }))
    )
  ).pipe(Effect.map((ctx) => ({ streams: Context.get(ctx, Streams.Streams), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

const turns = (n = 10) => loopTurns(n)
const resources = activeResources

describe('shutdown', () => {
  it.live('after the streams layer scope closes nothing is left: no timer, no handle, no fiber', () =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.track
      yield* turns()
      const before = resources()
      let timersWhileRunning = 0
      yield* Effect.gen(function* () {
        const a = yield* node('a')
        const b = yield* node('b', ['a:7001'])
        for (let i = 0; i < 200 && (a.nodosum.nodes().length < 2 || b.nodosum.nodes().length < 2); i++) yield* turns(5)
        expect(a.nodosum.nodes()).toEqual(['a', 'b'])
        const appA = yield* a.streams.registerApplication('app')
        yield* b.streams.registerApplication('app')
        // a stream b never creates: held on b with a refusal timer of a minute
        const unclaimed = yield* appA.createStream('unclaimed')
        yield* unclaimed.send(new Uint8Array(8), ['b'])
        // large messages buffered on a: pooled copies, and the pool's trim timer once they go back
        const bulk = new Uint8Array(256 * 1024)
        const pending = Array.from({ length: 8 }, () => appA.defaultStream.offer(bulk, ['b']))
        yield* Effect.promise(() => Promise.all(pending))
        yield* turns(20)
        timersWhileRunning = resources()['Timeout'] ?? 0
      }).pipe(Effect.scoped, Effect.supervised(supervisor), Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Error))
      // the service had timers of its own while it ran
      expect(timersWhileRunning).toBeGreaterThan(before['Timeout'] ?? 0)
      yield* turns()
      // nothing the test started is still there (the runner's own may have finished meanwhile)
      const after = resources()
      const added = Object.entries(after).filter(([type, n]) => n > (before[type] ?? 0))
      expect(added).toEqual([])
      // every fiber started under the layer (timers, the membership listener) has ended
      const alive = yield* supervisor.value
      expect(alive.map((f) => f.id())).toEqual([])
    })
  )
})
