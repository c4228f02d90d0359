/**
 * Atomic operations over MemoryTransport on the TestClock: nodes, streams and the cache as in
 * production, time moved by the test.
 */
import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport } from '@mycorrizal/nodosum'
import { Effect, Fiber, Logger, LogLevel, type Scope } from 'effect'
import { Placement } from '../src/internal/placement.js'
import { advanceUntil, drive, type Node, node } from './testClockCluster.js'
import type { MycelError } from '../src/MycelError.js'

const cluster = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const nodes: Array<Node> = []
    for (const id of ids) nodes.push(yield* node(id, nodes.length === 0 ? [] : [`${ids[0]}:7001`]))
    yield* advanceUntil(() => nodes.every((n) => n.nodosum.nodes().length === ids.length), 'mesh')
    for (const n of nodes) yield* n.mycel.createBucket('c', '1 hour', 10_000)
    yield* advanceUntil(() => nodes.every((n) => n.mycel.ready()), 'ready')
    return nodes
  })

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Error))

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))
const primaryOf = (ids: ReadonlyArray<string>, key: string) => {
  const p = new Placement()
  p.setNodes(ids)
  return p.owners('c', key, 2)[0]!
}

describe('atomic operations over MemoryTransport (TestClock)', () => {
  it.effect('increments from three nodes sum exactly; every answer is a distinct count', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const all = yield* drive(
          Effect.all(
            nodes.flatMap((n) => Array.from({ length: 100 }, () => n.mycel.increment('c', 'hits'))),
            { concurrency: 'unbounded' }
          ),
          'increments'
        )
        expect([...all].sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
        for (const n of nodes) expect(text(yield* drive(n.mycel.get('c', 'hits'), 'get'))).toBe('300')
      })
    )
  )

  it.effect('the Promise entry points (the facade\'s, no fiber each) do what the Effect operations do; a bad ttl rejects naming it', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const all = yield* drive(
          Effect.promise(() => Promise.all(nodes.flatMap((n) => Array.from({ length: 50 }, () => n.mycel.unsafeIncrement('c', 'p-hits', 2))))),
          'increments'
        )
        expect([...all].sort((x, y) => x - y)).toEqual(Array.from({ length: 150 }, (_, i) => 2 * (i + 1)))
        const [a, b] = nodes
        expect(yield* drive(Effect.promise(() => a!.mycel.unsafePutIfAbsent('c', 'p-once', bytes('1'))), 'putIfAbsent')).toBe(true)
        expect(yield* drive(Effect.promise(() => b!.mycel.unsafePutIfAbsent('c', 'p-once', bytes('2'))), 'putIfAbsent')).toBe(false)
        expect(yield* drive(Effect.promise(() => b!.mycel.unsafeCompareAndSet('c', 'p-once', bytes('1'), bytes('3'))), 'compareAndSet')).toBe(true)
        expect(yield* drive(Effect.promise(() => a!.mycel.unsafeCompareAndSet('c', 'p-once', bytes('1'), bytes('4'))), 'compareAndSet')).toBe(false)
        expect(text(yield* drive(a!.mycel.get('c', 'p-once'), 'get'))).toBe('3')
        const rejected = yield* Effect.promise(() => a!.mycel.unsafeIncrement('c', 'p-hits', 1, -5).then(() => undefined, (e: MycelError) => e))
        expect(rejected).toMatchObject({ _tag: 'MycelError', reason: 'InvalidBucket' })
        expect(rejected!.message).toContain('ttl')
        yield* drive(a!.mycel.put('c', 'p-text', bytes('three')), 'put')
        const notInteger = yield* drive(Effect.promise(() => a!.mycel.unsafeIncrement('c', 'p-text', 1).then(() => undefined, (e: MycelError) => e.reason)), 'increment')
        expect(notInteger).toBe('NotInteger')
      })
    )
  )

  it.effect('increments a caller starts in one turn on a key its node is primary for reach the other owner as one Put; each gets its own count', () =>
    run(
      Effect.gen(function* () {
        const ids = ['a', 'b', 'c']
        const nodes = yield* cluster(ids)
        const p = new Placement()
        p.setNodes(ids)
        const [primary, replica] = p.owners('c', 'turn', 2).map((id) => nodes.find((n) => n.id === id)!)
        // the first operation on the key after the join fetches it from the other owner (the rest wait for that)
        expect(yield* drive(Effect.promise(() => primary!.mycel.unsafeIncrement('c', 'turn')), 'first')).toBe(1)
        const puts = () => replica!.mycel.stats('c')!.puts
        const before = puts()
        const counts = yield* drive(Effect.promise(() => Promise.all(Array.from({ length: 30 }, () => primary!.mycel.unsafeIncrement('c', 'turn')))), 'increments')
        expect(counts).toEqual(Array.from({ length: 30 }, (_, i) => i + 2))
        expect(puts() - before).toBe(1)
        expect(text(yield* drive(replica!.mycel.get('c', 'turn'), 'get'))).toBe('31')
      })
    )
  )

  it.effect('compareAndSet is linearizable per key: concurrent read-modify-write loops from three nodes lose no update', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const transitions: Array<number> = []
        // each client adds 1 twenty times with CAS, reading the current value each round
        const client = (n: Node) =>
          Effect.gen(function* () {
            for (let done = 0; done < 20; ) {
              const current = yield* n.mycel.get('c', 'cas')
              const value = current === undefined ? 0 : Number(text(current))
              if (yield* n.mycel.compareAndSet('c', 'cas', current, bytes(String(value + 1)))) {
                transitions.push(value + 1)
                done++
              }
            }
          })
        yield* drive(Effect.all(nodes.map(client), { concurrency: 'unbounded' }), 'CAS loops', 60_000)
        expect([...transitions].sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1))
        expect(text(yield* drive(nodes[0]!.mycel.get('c', 'cas'), 'get'))).toBe('60')
      })
    )
  )

  it.effect('putIfAbsent from two nodes at once: exactly one true', () =>
    run(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(['a', 'b', 'c'])
        for (let i = 0; i < 20; i++) {
          const answers = yield* drive(
            Effect.all([a!.mycel.putIfAbsent('c', `idem:${i}`, bytes('a')), b!.mycel.putIfAbsent('c', `idem:${i}`, bytes('b'))], { concurrency: 'unbounded' }),
            'putIfAbsent race'
          )
          expect(answers.filter((x) => x)).toHaveLength(1)
          expect(text(yield* drive(a!.mycel.get('c', `idem:${i}`), 'get'))).toBe(answers[0] ? 'a' : 'b')
        }
      })
    )
  )

  it.effect('the primary is killed in the middle of increments: no acknowledged increment is lost, none is doubled', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const ids = ['a', 'b', 'c', 'd']
        const nodes = yield* cluster(ids)
        const primary = primaryOf(ids, 'n')
        const clients = nodes.filter((n) => n.id !== primary)
        let acked = 0
        let failed = 0
        const answers: Array<number> = []
        const client = (n: Node) =>
          Effect.gen(function* () {
            for (let i = 0; i < 40; i++) {
              const r = yield* Effect.either(n.mycel.increment('c', 'n'))
              if (r._tag === 'Right') {
                acked++
                answers.push(r.right)
              } else failed++
            }
          })
        const fiber = yield* Effect.fork(Effect.all(clients.map(client), { concurrency: 'unbounded' }))
        yield* advanceUntil(() => acked >= 30, 'increments before the kill')
        network.kill(`${primary}:7001`)
        let done = false
        yield* Effect.fork(Effect.andThen(Fiber.await(fiber), Effect.sync(() => (done = true))))
        yield* advanceUntil(() => done, 'increments after the kill')
        const survivors = clients
        yield* advanceUntil(() => survivors.every((n) => n.nodosum.nodes().length === 3), 'the primary dropped')
        const final = Number(text(yield* drive(survivors[0]!.mycel.get('c', 'n'), 'get')))
        // every acknowledged increment is in the count; a failed one may or may not be
        expect(final).toBeGreaterThanOrEqual(acked)
        expect(final).toBeLessThanOrEqual(acked + failed)
        // no two increments answered the same count (none applied twice over another's result)
        expect(new Set(answers).size).toBe(answers.length)
        expect(acked).toBeGreaterThan(60)
        // and the survivors continue from there
        expect(yield* drive(survivors[1]!.mycel.increment('c', 'n'), 'increment')).toBe(final + 1)
      })
    )
  )
})
