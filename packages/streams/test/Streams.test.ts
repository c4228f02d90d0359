import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { captureLogs, eventuallyMesh, turns as loopTurns } from '@mycorrizal/testing'
import { Context, Deferred, Duration, Effect, Fiber, Layer, Logger, type Scope, TestClock } from 'effect'
import { Streams } from '../src/index.js'
import type { SendError } from '../src/StreamsError.js'

const secret = 'streams-test-secret-of-at-least-32-characters'

/** One node (cluster + streams) in the current scope of the test's memory network. */
const node = (id: string, seeds: ReadonlyArray<string> = [], options: Streams.StreamsOptions = {}) =>
  Layer.build(
    Streams.layer(options).pipe(
      Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds] }))
    )
  ).pipe(Effect.map((ctx) => ({ streams: Context.get(ctx, Streams.Streams), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

const turns = (n = 30) => loopTurns(n)

const untilMesh = (nodes: ReadonlyArray<{ nodosum: Nodosum.Nodosum['Type'] }>, size: number) => eventuallyMesh(nodes.map((n) => n.nodosum), size)

const cluster = (n: number, options: Streams.StreamsOptions = {}) =>
  Effect.gen(function* () {
    const first = yield* node('n0', [], options)
    const rest = yield* Effect.forEach(Array.from({ length: n - 1 }, (_, i) => `n${i + 1}`), (id) => node(id, ['n0:7001'], options))
    const all = [first, ...rest]
    yield* untilMesh(all, n)
    return all
  })

const withNetwork = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer))

const text = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => new TextDecoder().decode(b)

describe('Streams over MemoryTransport', () => {
  it.effect('the default stream reaches every other node when nodeIds is empty', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b, c] = yield* cluster(3)
        const appA = yield* a!.streams.registerApplication('chat')
        const got: Array<string> = []
        const done = yield* Deferred.make<void>()
        for (const n of [b!, c!]) {
          const app = yield* n.streams.registerApplication('chat')
          app.setReceiveFunc((payload, from) => {
            got.push(`${n.nodosum.nodeId}<-${from}:${decode(payload)}`)
            if (got.length === 2) Deferred.unsafeDone(done, Effect.void)
          })
        }
        yield* appA.send(text('hi'))
        yield* Deferred.await(done)
        expect(got.sort()).toEqual(['n1<-n0:hi', 'n2<-n0:hi'])
        expect(appA.nodes()).toEqual(['n0', 'n1', 'n2'])
        expect(appA.stats().defaultStreamStats.messagesOut).toBe(2)
      })
    )
  )

  it.effect('named streams carry their own messages in order, with ":" in names', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('orders')
        const appB = yield* b!.streams.registerApplication('orders')
        const eu = yield* appB.createStream('topic:eu')
        const us = yield* appB.createStream('topic:us')
        const seen: Record<string, Array<number>> = { 'topic:eu': [], 'topic:us': [] }
        const done = yield* Deferred.make<void>()
        const check = () => {
          if (seen['topic:eu']!.length === 500 && seen['topic:us']!.length === 500) Deferred.unsafeDone(done, Effect.void)
        }
        eu.setReceiveFunc((p) => {
          seen['topic:eu']!.push(new DataView(p.buffer, p.byteOffset).getUint32(0))
          check()
        })
        us.setReceiveFunc((p) => {
          seen['topic:us']!.push(new DataView(p.buffer, p.byteOffset).getUint32(0))
          check()
        })
        const sendEu = yield* appA.createStream('topic:eu')
        const sendUs = yield* appA.createStream('topic:us')
        for (let i = 0; i < 500; i++) {
          const m = new Uint8Array(4)
          new DataView(m.buffer).setUint32(0, i)
          yield* sendEu.send(m, ['n1'])
          yield* sendUs.send(m, ['n1'])
        }
        yield* Deferred.await(done)
        expect(seen['topic:eu']).toEqual(Array.from({ length: 500 }, (_, i) => i))
        expect(seen['topic:us']).toEqual(Array.from({ length: 500 }, (_, i) => i))
        expect(appB.listStreams()).toEqual(['topic:eu', 'topic:us'])
        expect(eu.stats().messagesIn).toBe(500)
        expect(sendEu.stats().activeNodes).toEqual(['n1'])
      })
    )
  )

  it.effect('stream priorities: the application sets its streams\' default, a named stream its own; out of range is InvalidConfig; messages flow as before', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const plain = yield* a!.streams.registerApplication('plain')
        expect(plain.defaultStream.priority()).toEqual({ urgency: 3, incremental: true })
        const app = yield* a!.streams.registerApplicationWithConfig({ id: 'jobs', priority: { urgency: 5 } })
        const appB = yield* b!.streams.registerApplicationWithConfig({ id: 'jobs', priority: { urgency: 5 } })
        expect(app.defaultStream.priority()).toEqual({ urgency: 5, incremental: true })
        expect((yield* app.createStream('bulk')).priority()).toEqual({ urgency: 5, incremental: true })
        const control = yield* app.createStream('control', { priority: { urgency: 0, incremental: false } })
        expect(control.priority()).toEqual({ urgency: 0, incremental: false })
        for (const urgency of [-1, 8, 2.5]) {
          expect((yield* Effect.flip(app.createStream(`bad${urgency}`, { priority: { urgency } }))).reason).toBe('InvalidConfig')
        }
        expect((yield* Effect.flip(a!.streams.registerApplicationWithConfig({ id: 'bad', priority: { urgency: 9 } }))).reason).toBe('InvalidConfig')
        // the receiving end sets its own priority on the streams it accepts; messages arrive
        const got = yield* Deferred.make<string>()
        const there = yield* appB.createStream('control', { priority: { urgency: 1 } })
        there.setReceiveFunc((p) => Deferred.unsafeDone(got, Effect.succeed(decode(p))))
        yield* control.send(text('first'), ['n1'])
        expect(yield* Deferred.await(got)).toBe('first')
      })
    )
  )

  it.effect('typed errors: duplicate, max streams, default-only, unknown application, closed, too large, invalid config', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a] = yield* cluster(1)
        const s = a!.streams
        const app = yield* s.registerApplicationWithConfig({ id: 'x', maxStreams: 1 })
        yield* app.createStream('one')
        expect((yield* Effect.flip(app.createStream('one'))).reason).toBe('DuplicateStream')
        expect((yield* Effect.flip(app.createStream('two'))).reason).toBe('MaxStreamsReached')
        const only = yield* s.registerApplicationWithConfig({ id: 'y', defaultStreamOnly: true })
        expect((yield* Effect.flip(only.createStream('z'))).reason).toBe('DefaultStreamOnly')
        expect((yield* Effect.flip(s.application('nope'))).reason).toBe('UnknownApplication')
        expect((yield* Effect.flip(s.registerApplication('x'))).reason).toBe('DuplicateApplication')
        expect((yield* Effect.flip(s.registerApplication('SYSTEM-NODOSUM'))).reason).toBe('ReservedApplication')
        expect((yield* Effect.flip(s.registerApplicationWithConfig({ id: 'w', streamBufferSize: 0 }))).reason).toBe('InvalidConfig')
        const one = yield* app.getStream('one')
        yield* app.closeStream('one')
        expect(one.isClosed()).toBe(true)
        const late = yield* Effect.flip(one.send(text('late')))
        expect(late._tag === 'StreamsError' && late.reason).toBe('StreamClosed')
        const big = new Uint8Array(a!.nodosum.maxMessageSize + 1)
        const tooBig = yield* Effect.flip(app.send(big))
        expect(tooBig._tag === 'StreamsError' && tooBig.reason).toBe('MessageTooLarge')
      })
    )
  )

  it.effect('a send to an unknown node fails naming it and counts in failedSends', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('app')
        yield* b!.streams.registerApplication('app')
        const error = yield* Effect.flip(appA.send(text('x'), ['n1', 'ghost']))
        expect(error._tag).toBe('SendError')
        if (error._tag === 'SendError') {
          expect(error.failures.map((f) => [f.node, f.reason])).toEqual([['ghost', 'UnknownNode']])
          expect(error.accepted).toEqual(['n1'])
        }
        expect(appA.stats().defaultStreamStats.failedSends).toBe(1)
      })
    )
  )

  it.effect('a receive handler that throws is counted and the stream goes on', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('app')
        const appB = yield* b!.streams.registerApplication('app')
        const done = yield* Deferred.make<void>()
        let n = 0
        appB.setReceiveFunc(() => {
          n++
          if (n === 1) throw new Error('boom')
          Deferred.unsafeDone(done, Effect.void)
        })
        yield* appA.send(text('1'), ['n1'])
        yield* appA.send(text('2'), ['n1'])
        yield* Deferred.await(done)
        expect(appB.stats().defaultStreamStats.receiveErrors).toBe(1)
        expect(appB.stats().defaultStreamStats.messagesIn).toBe(2)
      })
    )
  )

  it.effect('an incoming stream created on the receiver within the grace period loses nothing', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('app')
        const appB = yield* b!.streams.registerApplication('app')
        const s = yield* appA.createStream('late')
        yield* s.send(text('early'), ['n1'])
        // held on n1 for 4 s of its 5 s grace period
        yield* turns()
        yield* TestClock.adjust(Duration.seconds(4))
        yield* turns()
        const got = yield* Deferred.make<string>()
        const r = yield* appB.createStream('late')
        r.setReceiveFunc((p) => Deferred.unsafeDone(got, Effect.succeed(decode(p))))
        expect(yield* Deferred.await(got)).toBe('early')
      })
    )
  )

  it.effect('after the grace period an unknown stream is refused and the sender reports it', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2, { grace: '5 seconds' })
        const appA = yield* a!.streams.registerApplication('app')
        yield* b!.streams.registerApplication('app')
        const s = yield* appA.createStream('never')
        yield* s.send(text('lost?'), ['n1'])
        yield* turns()
        yield* TestClock.adjust(Duration.millis(4_999))
        yield* turns()
        expect(s.stats().activeNodes).toEqual(['n1'])
        yield* TestClock.adjust(Duration.millis(1))
        for (let i = 0; i < 20 && s.stats().activeNodes.length > 0; i++) yield* turns()
        expect(s.stats().activeNodes).toEqual([])
      })
    )
  )

  it.effect('closing a stream closes its QUIC streams on the peer', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('app')
        const appB = yield* b!.streams.registerApplication('app')
        const r = yield* appB.createStream('s')
        const got = yield* Deferred.make<void>()
        r.setReceiveFunc(() => Deferred.unsafeDone(got, Effect.void))
        const s = yield* appA.createStream('s')
        yield* s.send(text('x'), ['n1'])
        yield* Deferred.await(got)
        expect(r.stats().activeNodes).toEqual(['n0'])
        yield* appA.closeStream('s')
        for (let i = 0; i < 50 && r.stats().activeNodes.length > 0; i++) yield* turns()
        expect(r.stats().activeNodes).toEqual([])
        expect(appA.listStreams()).toEqual([])
      })
    )
  )

  it.effect('a slow async receiver slows its sender: sends wait, buffers stay bounded, nothing is lost', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplicationWithConfig({ id: 'bp', streamBufferSize: 10 })
        const appB = yield* b!.streams.registerApplicationWithConfig({ id: 'bp', streamBufferSize: 10 })
        // the receiver finishes a message only when the test lets it
        const received: Array<number> = []
        const finish: Array<() => void> = []
        appB.setReceiveFunc(
          (p) =>
            new Promise<void>((resolve) => {
              const n = p[0]! | (p[1]! << 8)
              finish.push(() => {
                received.push(n)
                resolve()
              })
            })
        )
        const payload = new Uint8Array(64 * 1024)
        let sent = 0
        let maxQueued = 0
        const sender = yield* Effect.fork(
          Effect.gen(function* () {
            for (let i = 0; i < 400; i++) {
              payload[0] = i & 0xff
              payload[1] = i >> 8
              yield* appA.send(payload, ['n1'])
              sent++
              maxQueued = Math.max(maxQueued, appA.stats().defaultStreamStats.queuedMessages)
            }
          })
        )
        yield* turns(50)
        // the receiver holds its first message: the sender stops once the buffers are full
        const stalled = sent
        expect(stalled).toBeGreaterThan(0)
        expect(stalled).toBeLessThan(200)
        yield* turns(50)
        expect(sent).toBe(stalled)
        // the receiver goes on, one message at a time: everything arrives, in order
        for (let i = 0; i < 20_000 && received.length < 400; i++) {
          const next = finish.shift()
          if (next !== undefined) next()
          else yield* turns(1)
        }
        yield* Fiber.join(sender)
        expect(received).toEqual(Array.from({ length: 400 }, (_, i) => i))
        expect(maxQueued).toBeLessThanOrEqual(10)
      })
    )
  )

  it.effect('a peer that stops reading: waiting sends count in queuedBytes, stay bounded, and past the limit a send fails at once with Overloaded naming the peer', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2)
        const appA = yield* a!.streams.registerApplication('slow')
        const appB = yield* b!.streams.registerApplication('slow')
        // the receiver never finishes a message: its queue fills, its QUIC stream stops being read
        appB.setReceiveFunc(() => new Promise<void>(() => {}))
        const payload = new Uint8Array(16 * 1024)
        const baseBuffers = process.memoryUsage().arrayBuffers
        const outcomes = { accepted: 0, overloaded: 0, other: [] as Array<string> }
        let maxQueuedBytes = 0
        let maxBuffers = 0
        for (let i = 0; i < 8_000; i++) {
          const pending = appA.defaultStream.offer(payload, ['n1'])
          if (pending === undefined) outcomes.accepted++
          else {
            pending.then(
              () => outcomes.accepted++,
              (e: SendError) => {
                if (e.failures.length === 1 && e.failures[0]!.reason === 'Overloaded' && e.failures[0]!.node === 'n1') outcomes.overloaded++
                else outcomes.other.push(e.message)
              }
            )
          }
          if (i % 200 === 0) {
            yield* turns(3)
            const s = appA.stats().defaultStreamStats
            // every queued message is counted in the bytes, waiting ones included
            expect(s.queuedBytes).toBeGreaterThanOrEqual(s.queuedMessages * payload.byteLength)
            maxQueuedBytes = Math.max(maxQueuedBytes, s.queuedBytes)
            maxBuffers = Math.max(maxBuffers, process.memoryUsage().arrayBuffers - baseBuffers)
          }
        }
        yield* turns(5)
        const limits = appA.config
        // buffered (streamBufferBytes) + waiting (maxWaitingBytes) + what the transport holds
        expect(maxQueuedBytes).toBeLessThanOrEqual(limits.streamBufferBytes + limits.maxWaitingBytes + 1024 * 1024)
        expect(maxBuffers).toBeLessThan(64 * 1024 * 1024)
        expect(outcomes.overloaded).toBeGreaterThan(5_000)
        expect(outcomes.other).toEqual([])
        expect(appA.stats().defaultStreamStats.failedSends).toBe(outcomes.overloaded)
        console.log(
          JSON.stringify({
            scenario: 'peer-stops-reading',
            sends: 8_000,
            overloaded: outcomes.overloaded,
            max_queued_mib: Number((maxQueuedBytes / 1024 / 1024).toFixed(1)),
            max_array_buffers_mib: Number((maxBuffers / 1024 / 1024).toFixed(1))
          })
        )
      })
    )
  )

  it.effect("the stream limit of the 'stream limit reached' error is the transport's maxStreams, not a fixed 100", () =>
    withNetwork(
      Effect.gen(function* () {
        const { lines: logs, logger: capture } = captureLogs()
        const transport = { maxStreams: 4 }
        const limited = (id: string, seeds: ReadonlyArray<string>) =>
          Layer.build(
            Streams.layer({ transport }).pipe(
              Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], transport }))
            )
          ).pipe(Effect.map((ctx) => ({ streams: Context.get(ctx, Streams.Streams), nodosum: Context.get(ctx, Nodosum.Nodosum) })))
        yield* Effect.gen(function* () {
          const a = yield* limited('n0', [])
          const b = yield* limited('n1', ['n0:7001'])
          yield* untilMesh([a, b], 2)
          const app = yield* a.streams.registerApplication('many')
          yield* b.streams.registerApplication('many')
          for (const name of ['s1', 's2', 's3']) {
            const stream = yield* app.createStream(name)
            yield* Effect.either(stream.send(text('x'), ['n1']))
          }
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
        const reached = logs.filter((l) => l.message === 'stream limit reached')
        expect(reached.length).toBeGreaterThan(0)
        expect(reached[0]!.annotations).toMatchObject({ node: 'n1', limit: 4 })
      })
    )
  )

  it.effect('a stream whose sends keep failing logs one "stream error rate high" warning per excursion', () =>
    withNetwork(
      Effect.gen(function* () {
        const { lines: logs, logger: capture } = captureLogs()
        yield* Effect.gen(function* () {
          const [a] = yield* cluster(2)
          const app = yield* a!.streams.registerApplication('flaky')
          const stream = yield* app.createStream('jobs')
          for (let i = 0; i < 50; i++) {
            const outcome = yield* Effect.either(stream.send(text(`m${i}`), ['ghost']))
            expect(outcome._tag).toBe('Left')
          }
          expect(stream.stats().failedSends).toBe(50)
          expect(stream.stats().errorRate).toBe(1)
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
        const warnings = logs.filter((l) => l.message === 'stream error rate high')
        expect(warnings).toHaveLength(1)
        expect(warnings[0]!.annotations).toMatchObject({ app: 'flaky', stream: 'jobs', errorRate: 1, threshold: 0.05 })
      })
    )
  )

  it.effect('bufferPool bounds are taken (a pool that keeps nothing still sends large messages); a bad bound stops the layer', () =>
    withNetwork(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(2, { bufferPool: { maxRetainedBytes: 0, idleTimeout: '1 second' } })
        const got: Array<number> = []
        const done = yield* Deferred.make<void>()
        const receiver = yield* b!.streams.registerApplication('bulk')
        receiver.setReceiveFunc((payload) => {
          got.push(payload.byteLength)
          if (got.length === 3) Deferred.unsafeDone(done, Effect.void)
        })
        const sender = yield* a!.streams.registerApplication('bulk')
        for (let i = 0; i < 3; i++) yield* sender.send(new Uint8Array(1024 * 1024).fill(i), ['n1'])
        yield* Deferred.await(done)
        expect(got).toEqual([1024 * 1024, 1024 * 1024, 1024 * 1024])
        const exit = yield* Effect.exit(node('bad', [], { bufferPool: { maxRetainedBytes: -1 } }))
        expect(String(exit)).toContain('bufferPool.maxRetainedBytes must be a whole number of bytes')
      })
    )
  )
})
