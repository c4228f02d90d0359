import { describe, expect, it } from '@effect/vitest'
import { Nodosum } from '@mycorrizal/nodosum'
import { Context, Deferred, Duration, Effect, Layer, Logger, LogLevel } from 'effect'
import * as Streams from '../src/Streams.js'

const secret = 'streams-quic-secret'

const node = (id: string, seeds: ReadonlyArray<string> = []) =>
  Layer.build(
    Streams.layer().pipe(Layer.provideMerge(Nodosum.layer({ nodeId: id, host: '127.0.0.1', port: 0, clusterSecret: secret, seeds: [...seeds] })))
  ).pipe(Effect.map((ctx) => ({ id, streams: Context.get(ctx, Streams.Streams), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

const until = (condition: () => boolean, what: string, ms = 15_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 10; i++) {
      if (condition()) return
      yield* Effect.sleep(Duration.millis(10))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

const three = Effect.gen(function* () {
  const a = yield* node('a')
  const seed = `127.0.0.1:${a.nodosum.boundAddress.port}`
  const b = yield* node('b', [seed])
  const c = yield* node('c', [seed])
  yield* until(() => [a, b, c].every((n) => n.nodosum.nodes().length === 3), 'mesh of three')
  return [a, b, c] as const
})

const u32 = (i: number) => {
  const m = new Uint8Array(4)
  new DataView(m.buffer).setUint32(0, i)
  return m
}
const readU32 = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0)

describe('Streams over QUIC (three in-process nodes)', () => {
  it.live('the whole API: default and named streams, subsets, stats, listing, closing, every error', () =>
    Effect.gen(function* () {
      const [a, b, c] = yield* three
      const appA = yield* a.streams.registerApplication('app')
      const appB = yield* b.streams.registerApplicationWithConfig({ id: 'app', maxStreams: 2 })
      const appC = yield* c.streams.registerApplication('app')
      expect(appA.nodes()).toEqual(['a', 'b', 'c'])
      const got: Array<string> = []
      appB.setReceiveFunc((p, from) => void got.push(`b<-${from}:${readU32(p)}`))
      appC.setReceiveFunc((p, from) => void got.push(`c<-${from}:${readU32(p)}`))
      // default stream: to all others, then to a subset
      yield* appA.send(u32(1))
      yield* appA.send(u32(2), ['c'])
      yield* until(() => got.length === 3, 'three deliveries')
      expect(got.sort()).toEqual(['b<-a:1', 'c<-a:1', 'c<-a:2'])
      const defaultStats = appA.stats().defaultStreamStats
      expect(defaultStats.messagesOut).toBe(3)
      expect(defaultStats.bytesSent).toBe(12)
      expect(defaultStats.activeNodes).toEqual(['b', 'c'])
      expect(defaultStats.lastActive).toBeGreaterThanOrEqual(defaultStats.createdAt)
      expect(appC.stats().defaultStreamStats.messagesIn).toBe(2)
      expect(appC.stats().totalBytesReceived).toBe(8)

      // named streams: created, found, listed, closed
      const eventsB = yield* appB.createStream('topic:events')
      yield* appB.createStream('topic:other')
      expect((yield* Effect.flip(appB.createStream('topic:third'))).reason).toBe('MaxStreamsReached')
      expect((yield* Effect.flip(appB.createStream('topic:events'))).reason).toBe('DuplicateStream')
      expect(appB.listStreams()).toEqual(['topic:events', 'topic:other'])
      expect((yield* appB.getStream('topic:events')).name()).toBe('topic:events')
      expect((yield* Effect.flip(appB.getStream('nope'))).reason).toBe('UnknownStream')
      const seen: Array<number> = []
      eventsB.setReceiveFunc((p, from) => {
        expect(from).toBe('a')
        seen.push(readU32(p))
      })
      const eventsA = yield* appA.createStream('topic:events')
      for (let i = 0; i < 1_000; i++) yield* eventsA.send(u32(i), ['b'])
      yield* until(() => seen.length === 1_000, 'a thousand in order')
      expect(seen).toEqual(Array.from({ length: 1_000 }, (_, i) => i))
      expect(eventsA.stats().messagesOut).toBe(1_000)
      expect(eventsB.stats().messagesIn).toBe(1_000)
      expect(appB.stats().activeStreams).toBe(3)

      // closing on one side closes its QUIC streams on the peer
      yield* appA.closeStream('topic:events')
      yield* until(() => eventsB.stats().activeNodes.length === 0, 'peer side closed')
      const closed = yield* Effect.flip(eventsA.send(u32(0), ['b']))
      expect(closed._tag === 'StreamsError' && closed.reason).toBe('StreamClosed')

      // errors: unknown node, default-only, unknown application, too large
      const unknown = yield* Effect.flip(appA.send(u32(9), ['b', 'ghost']))
      expect(unknown._tag).toBe('SendError')
      if (unknown._tag === 'SendError') expect(unknown.failures.map((f) => f.node)).toEqual(['ghost'])
      expect(appA.stats().defaultStreamStats.failedSends).toBe(1)
      const only = yield* a.streams.registerApplicationWithConfig({ id: 'only', defaultStreamOnly: true })
      expect((yield* Effect.flip(only.createStream('x'))).reason).toBe('DefaultStreamOnly')
      expect((yield* Effect.flip(a.streams.application('missing'))).reason).toBe('UnknownApplication')
      const tooBig = yield* Effect.flip(appA.send(new Uint8Array(a.nodosum.maxMessageSize + 1), ['b']))
      expect(tooBig._tag === 'StreamsError' && tooBig.reason).toBe('MessageTooLarge')
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))
  )

  it.live('messages from 1 byte to the maximum size arrive intact and in order', () =>
    Effect.gen(function* () {
      const [a, b] = yield* three
      const appA = yield* a.streams.registerApplication('sizes')
      const appB = yield* b.streams.registerApplication('sizes')
      const max = a.nodosum.maxMessageSize
      const sizes = [1, 2, 100, 65_535, 65_536, 1_000_000, 4 * 1024 * 1024, max]
      const received: Array<Uint8Array> = []
      appB.setReceiveFunc((p) => void received.push(p))
      const payloads = sizes.map((n, i) => {
        const p = new Uint8Array(n)
        for (let j = 0; j < n; j += 4093) p[j] = (i * 31 + j) & 0xff
        p[n - 1] = i
        return p
      })
      for (const p of payloads) yield* appA.send(p, ['b'])
      yield* until(() => received.length === sizes.length, 'every size', 60_000)
      for (let i = 0; i < sizes.length; i++) expect(Buffer.from(received[i]!).equals(Buffer.from(payloads[i]!))).toBe(true)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)),
    90_000
  )

  it.live('a bulk transfer on one stream does not hold back messages on another', () =>
    Effect.gen(function* () {
      const [a, b] = yield* three
      const appA = yield* a.streams.registerApplicationWithConfig({ id: 'hol', streamBufferSize: 4 })
      const appB = yield* b.streams.registerApplicationWithConfig({ id: 'hol', streamBufferSize: 4 })
      const bulkB = yield* appB.createStream('bulk')
      const smallB = yield* appB.createStream('small')
      let bulkIn = 0
      bulkB.setReceiveFunc(async () => {
        bulkIn++
        // a slow consumer: the bulk stream backs up
        await new Promise((r) => setTimeout(r, 20))
      })
      const small = yield* Deferred.make<number>()
      smallB.setReceiveFunc(() => Deferred.unsafeDone(small, Effect.succeed(bulkIn)))
      const bulkA = yield* appA.createStream('bulk')
      const smallA = yield* appA.createStream('small')
      const fiber = yield* Effect.fork(Effect.forEach(Array.from({ length: 40 }), () => bulkA.send(new Uint8Array(1024 * 1024), ['b']), { discard: true }))
      yield* until(() => bulkIn >= 2, 'bulk flowing')
      yield* smallA.send(new Uint8Array([1]), ['b'])
      // the small message overtakes the queued bulk: it arrives while most bulk messages are still pending
      const bulkAtArrival = yield* Deferred.await(small)
      expect(bulkAtArrival).toBeLessThan(40)
      yield* fiber.await
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)),
    60_000
  )
})
