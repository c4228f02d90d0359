import { describe, expect, it } from '@effect/vitest'
import { Nodosum } from '@mycorrizal/nodosum'
import { Context, Duration, Effect, Layer, Logger, LogLevel } from 'effect'
import * as Streams from '../src/Streams.js'
import { spawnReceiver } from './fixtures/spawnReceiver.js'

const MiB = 1024 * 1024
const MESSAGE = 256 * 1024
const COUNT = 4096 // 1 GiB
const mib = (bytes: number) => (bytes / MiB).toFixed(1)

describe('backpressure over QUIC', () => {
  it.live(
    '1 GiB sent to a receiver that handles 1 msg/ms: sends wait, buffers stay bounded, nothing is lost or reordered',
    () =>
      Effect.gen(function* () {
        // the receiver runs in its own process, so each side's memory is measured on its own
        const { port, done } = yield* spawnReceiver({ nodeId: 'receiver', host: '127.0.0.1', port: 0, clusterSecret: 'backpressure-secret-of-at-least-32-characters', expect: COUNT })
        const ctx = yield* Layer.build(
          Streams.layer().pipe(
            Layer.provideMerge(Nodosum.layer({ nodeId: 'sender', host: '127.0.0.1', port: 0, clusterSecret: 'backpressure-secret-of-at-least-32-characters', seeds: [`127.0.0.1:${port}`] }))
          )
        )
        const nodosum = Context.get(ctx, Nodosum.Nodosum)
        const app = yield* Context.get(ctx, Streams.Streams).registerApplication('bulk')
        for (let i = 0; i < 1_000 && nodosum.nodes().length < 2; i++) yield* Effect.sleep(Duration.millis(10))
        const baseRss = process.memoryUsage().rss
        let maxRss = baseRss
        let maxQueued = 0
        const payload = new Uint8Array(MESSAGE)
        const started = Date.now()
        for (let i = 0; i < COUNT; i++) {
          new DataView(payload.buffer).setUint32(0, i)
          yield* app.send(payload, ['receiver'])
          if (i % 16 === 0) {
            maxRss = Math.max(maxRss, process.memoryUsage().rss)
            maxQueued = Math.max(maxQueued, app.stats().defaultStreamStats.queuedMessages)
          }
        }
        const r = yield* done.pipe(Effect.timeout(Duration.seconds(60)))
        const elapsed = Date.now() - started
        console.log(
          `1 GiB in ${elapsed} ms, at most ${maxQueued} messages queued; sender RSS +${mib(maxRss - baseRss)} MiB; ` +
            `receiver RSS +${mib(r.maxRss - r.baseRss)} MiB at most, ArrayBuffers +${mib(r.maxArrayBuffers - r.baseArrayBuffers)} MiB at most, ` +
            `after a full collection heap +${mib(r.settledHeap - r.baseHeap)} MiB, RSS +${mib(r.settledRss - r.baseRss)} MiB`
        )
        expect(r.count).toBe(COUNT)
        expect(r.inOrder).toBe(true)
        // the sender could not run ahead of a receiver taking one message per millisecond
        expect(elapsed).toBeGreaterThanOrEqual(COUNT * 0.9)
        expect(maxQueued).toBeLessThanOrEqual(100)
        // what the sender holds is bounded by the buffer's byte limit (8 MiB by default); its
        // copies come from the buffer pool and are reused
        expect(maxQueued * MESSAGE).toBeLessThanOrEqual(8 * MiB + MESSAGE)
        expect(maxRss - baseRss).toBeLessThan(64 * MiB)
        // the receiver's buffers (queued messages, read buffers, and their garbage) stay under 64 MiB
        expect(r.maxArrayBuffers - r.baseArrayBuffers).toBeLessThan(64 * MiB)
        // and nothing stays behind once the garbage is collected
        expect(r.settledHeap - r.baseHeap).toBeLessThan(16 * MiB)
        // Its RSS grows by 70-105 MiB all the same: its live JS heap is about 30 MB, and V8 lets
        // the old generation grow to about three times that before a full collection
        // (--trace-gc: 30.5 -> 92.5 MB, then back to 30.9). That is garbage, not data held, and a
        // gigabyte went through: bounded, with a limit V8 chooses.
        expect(r.maxRss - r.baseRss).toBeLessThan(160 * MiB)
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)),
    120_000
  )
})
