import { describe, expect, it } from '@effect/vitest'
import { Context, Duration, Effect, Layer, Logger, LogLevel } from 'effect'
import { MemoryNetwork } from '../src/MemoryTransport.js'
import * as MemoryTransport from '../src/MemoryTransport.js'
import { Nodosum } from '../src/index.js'

describe('Nodosum at scale (MemoryTransport)', () => {
  it.live(
    '100 nodes converge to a full mesh; after 10 are killed every survivor sees exactly the other 89',
    () =>
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const N = 100
        global.gc?.()
        const heapBefore = process.memoryUsage().heapUsed
        const started = performance.now()
        const nodes: Array<Nodosum.Nodosum['Type']> = []
        for (let i = 0; i < N; i++) {
          const ctx = yield* Layer.build(
            Nodosum.layerMemory({
              nodeId: `n${String(i).padStart(3, '0')}`,
              host: `h${i}`,
              port: 7000,
              clusterSecret: 'scale-test-secret-of-at-least-32-characters',
              seeds: i === 0 ? [] : ['h0:7000'],
              // 100 nodes share one process: on a busy machine a handshake or a heartbeat waits
              // seconds for its turn, which is not what this checks
              heartbeatInterval: '1 second',
              failureTimeout: '8 seconds',
              transport: { handshakeTimeout: '30 seconds' }
            })
          )
          nodes.push(Context.get(ctx, Nodosum.Nodosum))
        }
        const full = () => nodes.every((n) => n.nodes().length === N)
        for (let i = 0; i < 6_000 && !full(); i++) yield* Effect.sleep(Duration.millis(5))
        const convergedMs = performance.now() - started
        expect(full()).toBe(true)
        for (const n of nodes) expect(n.stats().peers).toHaveLength(N - 1)
        const heapPerNode = (process.memoryUsage().heapUsed - heapBefore) / N
        // measured figures for docs/cluster.md
        console.log(`100-node mesh converged in ${convergedMs.toFixed(0)} ms; heap per node ${(heapPerNode / 1024).toFixed(0)} KiB`)
        const killStarted = performance.now()

        // kill ten: no close frames, survivors must notice through missed heartbeats
        const killed = nodes.slice(10, 20)
        for (const n of killed) network.kill(`${n.address.host}:${n.address.port}`)
        const survivors = nodes.filter((n) => !killed.includes(n))
        const expected = survivors.map((n) => n.nodeId).sort()
        const settled = () => survivors.every((n) => n.nodes().length === N - killed.length)
        for (let i = 0; i < 6_000 && !settled(); i++) yield* Effect.sleep(Duration.millis(5))
        console.log(`10 SIGKILL-like kills dropped by all 90 survivors after ${(performance.now() - killStarted).toFixed(0)} ms`)
        for (const n of survivors) {
          expect(n.nodes()).toEqual(expected)
          for (const k of killed) expect(n.members().find((m) => m.id === k.nodeId)?.state).toBe('failed')
        }
      }).pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Warning)),
    120_000
  )
})
