import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Context, Duration, Effect, Fiber, Layer, Logger, LogLevel, type Scope } from 'effect'
import * as Topics from '../src/Topics.js'

const secret = 'topics-test-secret-of-at-least-32-characters'
type Node = { readonly id: string; readonly topics: Topics.Topics['Type']; readonly nodosum: Nodosum.Nodosum['Type'] }

const node = (id: string, seeds: ReadonlyArray<string> = [], options: Topics.TopicsOptions = { publishTimeout: '2 seconds' }) =>
  Layer.build(
    Topics.layer(options).pipe(
      Layer.provideMerge(Streams.layer()),
      Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], heartbeatInterval: 50, failureTimeout: 300 }))
    )
  ).pipe(Effect.map((ctx): Node => ({ id, topics: Context.get(ctx, Topics.Topics), nodosum: Context.get(ctx, Nodosum.Nodosum) })))

const until = (condition: () => boolean, what: string, ms = 5_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 10; i++) {
      if (condition()) return
      yield* Effect.sleep(Duration.millis(10))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

const cluster = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const nodes: Array<Node> = []
    for (const id of ids) nodes.push(yield* node(id, nodes.length === 0 ? [] : [`${ids[0]}:7001`]))
    yield* until(() => nodes.every((n) => n.nodosum.nodes().length === ids.length), 'mesh')
    return nodes
  })

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Warning))

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

describe('Topics over MemoryTransport', () => {
  it.live('every subscriber on every node gets each message once, in publish order per publisher; publish resolves once they took it', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const got = new Map<string, Array<string>>()
        for (const n of nodes) {
          got.set(n.id, [])
          yield* n.topics.subscribe('orders', (payload, from) => void got.get(n.id)!.push(`${from}:${text(payload)}`))
        }
        // a second subscriber on one node gets its own copy
        const second: Array<string> = []
        yield* nodes[1]!.topics.subscribe('orders', (payload) => void second.push(text(payload)))
        // the three publishers run at once
        yield* Effect.all(
          nodes.map((n) => Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => n.topics.publish('orders', bytes(`${i}`)))),
          { concurrency: 'unbounded' }
        )
        for (const n of nodes) {
          const seen = got.get(n.id)!
          expect(seen).toHaveLength(150)
          for (const from of ['a', 'b', 'c']) {
            expect(seen.filter((s) => s.startsWith(`${from}:`))).toEqual(Array.from({ length: 50 }, (_, i) => `${from}:${i}`))
          }
        }
        expect(second).toHaveLength(150)
        const stats = nodes[0]!.topics.stats()
        expect(stats).toEqual([expect.objectContaining({ topic: 'orders', localSubscribers: 1, subscriberNodes: ['b', 'c'], published: 50, delivered: 150, pending: 0 })])
      })
    )
  )

  it.live('unsafePublish (the facade\'s Promise path) keeps the guarantees: in order, resolved once the subscribers took it, typed rejections', () =>
    run(
      Effect.gen(function* () {
        const [a, b, c] = yield* cluster(['a', 'b', 'c'])
        const got = new Map<string, Array<string>>([
          ['b', []],
          ['c', []]
        ])
        yield* b!.topics.subscribe('orders', (p, from) => void got.get('b')!.push(`${from}:${text(p)}`))
        yield* c!.topics.subscribe('orders', (p, from) => void got.get('c')!.push(`${from}:${text(p)}`))
        // the first publish creates the topic's stream; the ones after it take the plain path, 20 in flight at once
        yield* Effect.promise(() => a!.topics.unsafePublish('orders', bytes('first')))
        const resolved: Array<number> = []
        yield* Effect.promise(() => Promise.all(Array.from({ length: 20 }, (_, i) => a!.topics.unsafePublish('orders', bytes(`${i}`)).then(() => void resolved.push(got.get('b')!.length + got.get('c')!.length)))))
        const expected = ['a:first', ...Array.from({ length: 20 }, (_, i) => `a:${i}`)]
        expect(got.get('b')).toEqual(expected)
        expect(got.get('c')).toEqual(expected)
        // each resolved only after both nodes had its message
        resolved.forEach((seen, i) => expect(seen).toBeGreaterThanOrEqual(2 * (i + 2)))
        expect(a!.topics.stats()).toEqual([expect.objectContaining({ topic: 'orders', published: 21, pending: 0, failedPublishes: 0 })])
        const invalid = yield* Effect.promise(() => a!.topics.unsafePublish('', bytes('x')).then(() => undefined, (e: unknown) => e))
        expect(invalid).toMatchObject({ _tag: 'CoordinationError', reason: 'InvalidTopic' })
      })
    )
  )

  it.live('unsubscribe stops delivery; a node with no subscriber is not sent to', () =>
    run(
      Effect.gen(function* () {
        const [a, b, c] = yield* cluster(['a', 'b', 'c'])
        const atB: Array<string> = []
        const sub = yield* b!.topics.subscribe('audit', (p) => void atB.push(text(p)))
        yield* a!.topics.publish('audit', bytes('one'))
        expect(atB).toEqual(['one'])
        yield* sub.unsubscribe
        yield* a!.topics.publish('audit', bytes('two'))
        yield* c!.topics.publish('audit', bytes('three'))
        yield* Effect.sleep(Duration.millis(50))
        expect(atB).toEqual(['one'])
        expect(a!.topics.stats()[0]!.subscriberNodes).toEqual([])
      })
    )
  )

  it.live('a slow handler holds back only its own topic', () =>
    run(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(['a', 'b'])
        let release!: () => void
        const gate = new Promise<void>((resolve) => (release = resolve))
        const slow: Array<string> = []
        const fast: Array<string> = []
        yield* b!.topics.subscribe('slow', async (p) => {
          await gate
          slow.push(text(p))
        })
        yield* b!.topics.subscribe('fast', (p) => void fast.push(text(p)))
        // the slow topic's publisher waits for its subscriber (each publish resolves once b took it)
        const slowPublishes = yield* Effect.fork(Effect.forEach(Array.from({ length: 5 }, (_, i) => i), (i) => a!.topics.publish('slow', bytes(`s${i}`))))
        for (let i = 0; i < 100; i++) yield* a!.topics.publish('fast', bytes(`f${i}`))
        expect(fast).toHaveLength(100)
        expect(slow).toEqual([])
        release()
        yield* Fiber.join(slowPublishes)
        yield* until(() => slow.length === 5, 'slow topic drained')
        expect(slow).toEqual(['s0', 's1', 's2', 's3', 's4'])
      })
    )
  )

  it.live('a node that joins later subscribes and publishes like the others; a failed subscriber node is not waited for', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const [a, b] = yield* cluster(['a', 'b'])
        const atA: Array<string> = []
        yield* a!.topics.subscribe('orders', (p, from) => void atA.push(`${from}:${text(p)}`))
        const d = yield* node('d', ['a:7001'])
        yield* until(() => d.nodosum.nodes().length === 3, 'd joined')
        // its first publish waits until it knows every member's topics: a's subscriber gets it
        yield* d.topics.publish('orders', bytes('hello'))
        expect(atA).toEqual(['d:hello'])
        const atD: Array<string> = []
        yield* d.topics.subscribe('orders', (p, from) => void atD.push(`${from}:${text(p)}`))
        yield* b!.topics.publish('orders', bytes('x'))
        expect(atD).toEqual(['b:x'])
        // d stops answering: a publish completes once d is declared failed (failure timeout 300 ms)
        network.kill('d:7001')
        const publish = yield* Effect.fork(b!.topics.publish('orders', bytes('y')))
        yield* Fiber.join(publish)
        expect(atA).toEqual(['d:hello', 'b:x', 'b:y'])
      })
    )
  )

  it.live('publishes time out naming the node that did not take them; shutdown fails what waits with Closed', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const [, b] = yield* cluster(['a', 'b'])
        yield* b!.topics.subscribe('orders', () => {})
        const [short, waiting] = yield* Effect.scoped(
          Effect.gen(function* () {
            const c = yield* node('c', ['a:7001'], { publishTimeout: '100 millis' })
            yield* until(() => c.nodosum.nodes().length === 3, 'c joined')
            yield* c.topics.publish('orders', bytes('ok'))
            // b stops taking anything from c (one way: b still hears from a, and c from b)
            network.drop('c', 'b')
            const short = yield* Effect.flip(c.topics.publish('orders', bytes('lost')))
            // a publish still waiting when c shuts down
            const waiting = yield* Effect.forkDaemon(c.topics.publish('orders', bytes('at shutdown')))
            return [short, waiting] as const
          })
        )
        expect(short).toMatchObject({ _tag: 'CoordinationError', reason: 'Timeout', nodes: ['b'] })
        expect(yield* Effect.flip(Fiber.join(waiting))).toMatchObject({ _tag: 'CoordinationError', reason: 'Closed' })
      })
    )
  )
})
