import { describe, expect, it } from '@effect/vitest'
import { advanceUntil, captureLogs, turns, untilMesh } from '@mycorrizal/testing'
import { ControlMessage, Frame, StreamInit } from '@mycorrizal/wire'
import { Chunk, Clock, Context, Deferred, Duration, Effect, Fiber, Layer, type Scope, Stream, TestClock } from 'effect'
import { MemoryNetwork } from '../src/MemoryTransport.js'
import * as MemoryTransport from '../src/MemoryTransport.js'
import { Nodosum } from '../src/index.js'
import type { NodosumSettingsInput } from '../src/NodosumConfig.js'
import * as NodosumConfig from '../src/NodosumConfig.js'
import { ErrorCode } from '../src/PeerStream.js'

const secret = 'test-cluster-secret-of-at-least-32-characters'

/** Builds a node in the current scope over the test's memory network. */
const node = (input: NodosumSettingsInput) =>
  Layer.build(Nodosum.layerMemory({ clusterSecret: secret, ...input })).pipe(Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum)))

const settle = (n = 20) => turns(n)

const withNetwork = <A, E>(effect: Effect.Effect<A, E, MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer))

describe('Nodosum over MemoryTransport', () => {
  it.effect('three nodes from one seed form a full mesh', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        const c = yield* node({ nodeId: 'c', host: 'c', port: 7001, seeds: ['a:7001'] })
        yield* Effect.all([b.discover, c.discover])
        yield* untilMesh([a, b, c], ['a', 'b', 'c'])
        for (const n of [a, b, c]) {
          expect(n.stats().peers.map((p) => p.id).sort()).toEqual(['a', 'b', 'c'].filter((id) => id !== n.nodeId))
          expect(n.members().every((m) => m.state === 'alive')).toBe(true)
        }
      })
    )
  )

  it.effect('both dialing at once still ends with one connection per pair', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001 })
        const seen: Array<string> = []
        for (const n of [a, b]) yield* Effect.forkScoped(Stream.runForEach(n.events, (e) => Effect.sync(() => seen.push(`${n.nodeId}:${e._tag}:${e.member.id}`))))
        yield* Effect.yieldNow()
        const [fromA, fromB] = yield* Effect.all([a.dial(b.address), b.dial(a.address)], { concurrency: 'unbounded' })
        expect([fromA, fromB]).toEqual(['b', 'a'])
        yield* untilMesh([a, b], ['a', 'b'])
        const settled = () => {
          const [pa, pb] = [a.stats().peers, b.stats().peers]
          return pa.length === 1 && pb.length === 1 && pa[0]!.dialedByUs && !pb[0]!.dialedByUs
        }
        yield* advanceUntil(settled, 'one connection each, the one a dialed', 2_000)
        // two connections were made (the kept one finished on both sides, the other on at least one): the tie-break decided
        expect(a.stats().handshakesSucceeded + b.stats().handshakesSucceeded).toBeGreaterThanOrEqual(3)
        // the kept connection is the one node 'a' (the smaller id) dialed, on both sides
        expect(a.stats().peers[0]!.dialedByUs).toBe(true)
        expect(b.stats().peers[0]!.dialedByUs).toBe(false)
        // past the grace a node gives a closed duplicate (the handshake timeout) and several heartbeats
        yield* advanceUntil(() => false, 'nothing', 6_000).pipe(Effect.ignore)
        expect(settled()).toBe(true)
        // one join on each side and no failure: the duplicate went quietly
        expect(seen.sort()).toEqual(['a:Joined:b', 'b:Joined:a'])
        expect(a.members().find((m) => m.id === 'b')?.state).toBe('alive')
        expect(b.members().find((m) => m.id === 'a')?.state).toBe('alive')
      })
    )
  )

  it.effect('a wrong secret is refused on both sides with a log line naming the reason', () => {
    const logs = captureLogs()
    return withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const intruder = yield* node({ nodeId: 'x', host: 'x', port: 7001, clusterSecret: 'not-the-secret-of-at-least-32-characters' })
        const error = yield* Effect.flip(intruder.dial(a.address))
        expect(error.reason).toBe('HandshakeRefused')
        yield* settle()
        expect(a.nodes()).toEqual(['a'])
        expect(intruder.nodes()).toEqual(['x'])
        expect(a.stats().handshakeFailures['BadSecret']).toBe(1)
        const refusals = logs.lines.filter((l) => l.message.startsWith('handshake refused'))
        expect(refusals.some((l) => l.annotations['node'] === 'a' && l.annotations['reason'] === 'BadSecret')).toBe(true)
        expect(refusals.some((l) => l.annotations['node'] === 'x')).toBe(true)
        // the secret itself never reaches a log line
        expect(JSON.stringify(logs.lines)).not.toContain(secret)
        expect(JSON.stringify(logs.lines)).not.toContain('not-the-secret-of-at-least-32-characters')
      }).pipe(Effect.provide(logs.layer))
    )
  })

  it.effect('a foreign cluster id is refused', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001, clusterId: 'blue' })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, clusterId: 'green' })
        const error = yield* Effect.flip(b.dial(a.address))
        expect(error.message).toContain('cluster id')
        expect(a.stats().handshakeFailures['ClusterId']).toBe(1)
        expect(a.nodes()).toEqual(['a'])
      })
    )
  )

  it.effect.each([
    ['garbage', 'UnknownFrameType', [new Uint8Array([0xff, 0x13, 0x37, 0x00])]],
    ['a broken STREAM_INIT (empty app id)', 'MalformedStreamInit', [new Uint8Array([0x01, 0x00, 0x00, 0x00, 0x00])]],
    ['a 4 GiB length header', 'FrameTooLarge', [StreamInit.encode({ appId: 'SYSTEM-NODOSUM', streamName: '' }), new Uint8Array([0xff, 0xff, 0xff, 0xff])]],
    ['a framed message that is no control message', 'UnknownMessageType', [StreamInit.encode({ appId: 'SYSTEM-NODOSUM', streamName: '' }), Frame.encodeMessage(new Uint8Array([0x7f, 0x01]))]]
  ] as const)('%s on the control stream is logged and counted with its wire error, not as ConnectionClosed', ([_what, reason, chunks]) => {
    const logs = captureLogs()
    return withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const raw = yield* MemoryTransport.make({ host: 'raw' })
        const connection = yield* raw.connect(a.boundAddress)
        const stream = connection.openStream({ onData: () => {} })
        for (const chunk of chunks) stream.write(chunk)
        yield* advanceUntil(() => (a.stats().handshakeFailures[reason] ?? 0) > 0, `a ${reason} refusal`, 1_000)
        expect(a.stats().handshakeFailures).toEqual({ [reason]: 1 })
        const line = logs.lines.find((l) => l.message === 'handshake refused' && l.annotations['node'] === 'a')
        expect(line?.annotations['reason']).toBe(reason)
      }).pipe(Effect.provide(logs.layer))
    )
  })

  it.effect('a protocol v1 Hello is refused with a log line naming both versions', () => {
    const logs = captureLogs()
    return withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const raw = yield* MemoryTransport.make({ host: 'raw' })
        const connection = yield* raw.connect(a.boundAddress)
        const received: Array<Uint8Array> = []
        const stream = connection.openStream({ onData: (chunk) => received.push(new Uint8Array(chunk)) })
        const v1Hello: ControlMessage.Hello = {
          _tag: 'Hello',
          protocolVersion: 1,
          clusterId: 'mycorrizal',
          nodeId: 'old',
          instanceId: 'i1',
          host: 'raw',
          port: 7001,
          authMode: 'secret',
          nonce: new Uint8Array(32)
        }
        stream.write(StreamInit.encode({ appId: 'SYSTEM-NODOSUM', streamName: '' }))
        stream.write(Frame.encodeMessage(ControlMessage.encode(v1Hello)))
        yield* advanceUntil(() => (a.stats().handshakeFailures['ProtocolVersion'] ?? 0) > 0, 'a ProtocolVersion refusal', 1_000)
        const line = logs.lines.find((l) => l.message === 'handshake refused' && l.annotations['node'] === 'a')
        expect(line?.annotations['reason']).toBe('ProtocolVersion')
        expect(String(line?.annotations['detail'])).toContain('version 1')
        expect(String(line?.annotations['detail'])).toContain('version 2')
        // the v1 dialer is told the same, in a Refuse it can decode (v1 knows Refuse)
        yield* settle()
        const bytes = Buffer.concat(received)
        const refuse = ControlMessage.decode(bytes.subarray(Frame.HEADER_BYTES, Frame.HEADER_BYTES + bytes.readUInt32BE(0)))
        expect(refuse._tag).toBe('Refuse')
      }).pipe(Effect.provide(logs.layer))
    )
  })

  it.effect('a peer that opens an application stream without a handshake gets nothing', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        let delivered = 0
        a.setStreamAcceptor((stream) => {
          stream.setHandler({ onMessage: () => delivered++ })
          return true
        })
        const raw = yield* MemoryTransport.make({ host: 'raw' })
        const connection = yield* raw.connect(a.boundAddress)
        const reset = yield* Deferred.make<number | undefined>()
        const stream = connection.openStream({ onData: () => {}, onClose: (e) => Deferred.unsafeDone(reset, Effect.succeed(e?.code)) })
        // a well-formed STREAM_INIT for an application, then a message: must be refused
        stream.write(StreamInit.encode({ appId: 'my-app', streamName: '' }))
        stream.write(Frame.encodeMessage(new Uint8Array([1, 2, 3])))
        expect(yield* Deferred.await(reset)).toBe(ErrorCode.NotAuthenticated)
        expect(delivered).toBe(0)
      })
    )
  )

  it.effect('application streams carry messages between members', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        yield* b.discover
        yield* untilMesh([a, b], ['a', 'b'])
        const got = yield* Deferred.make<{ app: string; name: string; text: string; peer: string }>()
        b.setStreamAcceptor((stream) => {
          stream.setHandler({
            onMessage: (payload) =>
              Deferred.unsafeDone(got, Effect.succeed({ app: stream.appId, name: stream.streamName, text: Buffer.from(payload).toString(), peer: stream.peer }))
          })
          return true
        })
        const stream = a.openStream('b', 'orders', 'topic:eu', { onMessage: () => {} })
        stream.send(new TextEncoder().encode('hello'))
        expect(yield* Deferred.await(got)).toEqual({ app: 'orders', name: 'topic:eu', text: 'hello', peer: 'a' })
        expect(() => a.openStream('nobody', 'orders', '', { onMessage: () => {} })).toThrow(/not an alive member/)
      })
    )
  )

  it.effect('a stream opened the moment the dial returns is held until the other side finishes its handshake, then delivered', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001 })
        const got = yield* Deferred.make<string>()
        a.setStreamAcceptor((stream) => {
          stream.setHandler({ onMessage: (p) => Deferred.unsafeDone(got, Effect.succeed(Buffer.from(p).toString())) })
          return true
        })
        // b's side of the handshake is done here; a may still be checking b's proof
        yield* b.dial(a.address)
        b.openStream('a', 'app', '', { onMessage: () => {} }).send(new TextEncoder().encode('right away'))
        expect(yield* Deferred.await(got).pipe(Effect.timeout(Duration.seconds(5)))).toBe('right away')
      })
    )
  )

  it.effect('graceful leave: peers drop the node at once and report Left', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        const events = yield* a.events.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
        yield* b.discover
        yield* untilMesh([a, b], ['a', 'b'])
        yield* b.leave
        yield* advanceUntil(() => a.nodes().length === 1, 'a dropped b', 2_000)
        const seen = Chunk.toReadonlyArray(yield* Fiber.join(events)).map((e) => `${e._tag}:${e.member.id}`)
        expect(seen).toEqual(['Joined:b', 'Left:b'])
        expect(a.members().find((m) => m.id === 'b')?.state).toBe('left')
      })
    )
  )

  it.effect('subscribe: every change after it returns, in order, with no fiber started first; the events stream sees the same', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        // the subscription is in place when the Effect returns: nothing is forked, yet nothing is missed
        const changes = yield* a.subscribe
        const stream = yield* a.events.pipe(Stream.take(2), Stream.runCollect, Effect.fork)
        yield* Effect.yieldNow()
        yield* b.discover
        yield* untilMesh([a, b], ['a', 'b'])
        yield* b.leave
        yield* advanceUntil(() => a.nodes().length === 1, 'a dropped b', 2_000)
        const taken = (yield* changes.takeAll).pipe(Chunk.toReadonlyArray).map((e) => `${e._tag}:${e.member.id}`)
        expect(taken).toEqual(['Joined:b', 'Left:b'])
        expect(Chunk.toReadonlyArray(yield* Fiber.join(stream)).map((e) => `${e._tag}:${e.member.id}`)).toEqual(taken)
        // the member is read once: the same stream every time
        expect(a.events).toBe(a.events)
      })
    )
  )

  it.effect('subscribe ends with its scope: a closed subscription takes no more changes', () =>
    withNetwork(
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001 })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        const changes = yield* Effect.scoped(a.subscribe)
        yield* b.discover
        yield* untilMesh([a, b], ['a', 'b'])
        expect(yield* changes.isShutdown).toBe(true)
      })
    )
  )

  it.effect('a killed node is reported failed by every survivor after the failure timeout', () =>
    withNetwork(
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const common = { heartbeatInterval: 500, failureTimeout: 2_000, transport: { idleTimeout: 60_000 } }
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001, ...common })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'], ...common })
        const c = yield* node({ nodeId: 'c', host: 'c', port: 7001, seeds: ['a:7001'], ...common })
        yield* Effect.all([b.discover, c.discover])
        for (let i = 0; i < 50 && !(a.nodes().length === 3 && b.nodes().length === 3 && c.nodes().length === 3); i++) yield* settle()
        expect(c.nodes()).toEqual(['a', 'b', 'c'])
        network.kill('b:7001')
        // heartbeats keep a and c alive to each other; b's silence becomes a failure after 2 s
        for (let t = 0; t < 1_500; t += 500) {
          yield* TestClock.adjust(Duration.millis(500))
          yield* settle()
        }
        expect(a.nodes()).toEqual(['a', 'b', 'c'])
        for (let t = 0; t < 1_500; t += 500) {
          yield* TestClock.adjust(Duration.millis(500))
          yield* settle()
        }
        expect(a.nodes()).toEqual(['a', 'c'])
        expect(c.nodes()).toEqual(['a', 'c'])
        expect(a.members().find((m) => m.id === 'b')?.state).toBe('failed')
      })
    )
  )

  it.effect('a wall-clock step past the failure timeout (an NTP step) fails no peer: heartbeat age is measured on the monotonic clock (seed 57)', () =>
    withNetwork(
      Effect.gen(function* () {
        // the test clock for monotonic time and sleeps; its wall clock can step
        const base = yield* Effect.clock
        let stepMs = 0
        const wall = () => base.unsafeCurrentTimeMillis() + stepMs
        const stepping: Clock.Clock = {
          [Clock.ClockTypeId]: Clock.ClockTypeId,
          unsafeCurrentTimeMillis: wall,
          currentTimeMillis: Effect.sync(wall),
          unsafeCurrentTimeNanos: () => base.unsafeCurrentTimeNanos(),
          currentTimeNanos: base.currentTimeNanos,
          sleep: (duration) => base.sleep(duration)
        }
        const common = { heartbeatInterval: 500, failureTimeout: 2_000, transport: { idleTimeout: 60_000 } }
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001, ...common }).pipe(Effect.withClock(stepping))
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'], ...common }).pipe(Effect.withClock(stepping))
        yield* b.discover
        for (let i = 0; i < 50 && !(a.nodes().length === 2 && b.nodes().length === 2); i++) yield* settle()
        expect(a.nodes()).toEqual(['a', 'b'])
        const events: Array<string> = []
        for (const n of [a, b]) yield* Stream.runForEach(n.events, (e) => Effect.sync(() => events.push(`${n.nodeId}: ${e._tag} ${e.member.id}`))).pipe(Effect.forkScoped)
        yield* settle()
        // both wall clocks jump 30 s ahead, then back, while heartbeats go on
        for (const step of [30_000, -30_000]) {
          stepMs += step
          for (let t = 0; t < 3_000; t += 500) {
            yield* TestClock.adjust(Duration.millis(500))
            yield* settle()
          }
          expect(a.nodes()).toEqual(['a', 'b'])
          expect(b.nodes()).toEqual(['a', 'b'])
        }
        expect(events).toEqual([])
      })
    )
  )

  it.effect('a restarted node with the same id rejoins once the old instance is proven gone (no takeover of a live id)', () =>
    withNetwork(
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001, failureTimeout: 5_000 })
        const first = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        yield* first.discover
        yield* untilMesh([a, first], ['a', 'b'])
        const before = a.members().find((m) => m.id === 'b')!.instanceId
        network.kill('b:7001')
        const again = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'] })
        yield* again.discover
        // the old session is silent but not yet past the failure timeout: the newcomer is refused
        yield* TestClock.adjust(Duration.seconds(3))
        expect(a.members().find((m) => m.id === 'b')?.instanceId).toBe(before)
        yield* advanceUntil(() => a.members().find((m) => m.id === 'b')?.instanceId !== before, 'new instance seen', 15_000)
        expect(a.nodes()).toEqual(['a', 'b'])
        expect(a.stats().peers).toHaveLength(1)
      })
    )
  )

  it.effect('a partition longer than the failure timeout splits the view; after healing the sides reconnect and re-merge', () =>
    withNetwork(
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const timing = { heartbeatInterval: 50, failureTimeout: 300, reconnectInitial: 50, reconnectMax: 200, transport: { idleTimeout: 60_000, handshakeTimeout: 1_000 } }
        const a = yield* node({ nodeId: 'a', host: 'a', port: 7001, ...timing })
        const b = yield* node({ nodeId: 'b', host: 'b', port: 7001, seeds: ['a:7001'], ...timing })
        const c = yield* node({ nodeId: 'c', host: 'c', port: 7001, seeds: ['a:7001'], ...timing })
        yield* untilMesh([a, b, c], ['a', 'b', 'c'])
        network.partition(['a', 'b'], ['c'])
        yield* advanceUntil(() => a.nodes().length === 2 && b.nodes().length === 2 && c.nodes().length === 1, 'split view', 5_000)
        expect(a.nodes()).toEqual(['a', 'b'])
        expect(c.nodes()).toEqual(['c'])
        network.heal()
        const remergeMs = yield* untilMesh([a, b, c], ['a', 'b', 'c'], 5_000)
        // reconnects back off from 50 ms to 200 ms; a dial into the partition waits out the
        // transport's handshake timeout (1 s): the sides find each other within a few attempts after that
        expect(remergeMs).toBeLessThan(1_500)
        for (const n of [a, b, c]) expect(n.members().every((m) => m.state === 'alive')).toBe(true)
      })
    )
  )

  it.effect('seeds are resolved again periodically: a seed that comes up later is found', () =>
    withNetwork(
      Effect.gen(function* () {
        const early = yield* node({ nodeId: 'early', host: 'early', port: 7001, seeds: ['late:7001'], discoveryInterval: 100, transport: { handshakeTimeout: 200 } })
        yield* advanceUntil(() => false, 'nothing', 300).pipe(Effect.ignore)
        expect(early.nodes()).toEqual(['early'])
        const late = yield* node({ nodeId: 'late', host: 'late', port: 7001 })
        yield* untilMesh([early, late], ['early', 'late'], 3_000)
      })
    )
  )

  it.effect('settings are validated before anything starts', () =>
    Effect.gen(function* () {
      const result = yield* Effect.either(NodosumConfig.make({ clusterSecret: 'x' }))
      expect(result._tag).toBe('Left')
    })
  )
})
