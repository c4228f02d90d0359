/**
 * The near cache over MemoryTransport on the TestClock: nodes, streams and the cache as in
 * production, time moved by the test.
 */
import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport } from '@mycorrizal/nodosum'
import { Duration, Effect, Logger, LogLevel, type Scope, TestClock } from 'effect'
import { NEAR_UPDATE_MAX_BYTES } from '../src/internal/near.js'
import { Placement } from '../src/internal/placement.js'
import { advanceUntil, drive, type Node, node } from './testClockCluster.js'

const cluster = (ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const nodes: Array<Node> = []
    for (const id of ids) nodes.push(yield* node(id, nodes.length === 0 ? [] : [`${ids[0]}:7001`]))
    yield* advanceUntil(() => nodes.every((n) => n.nodosum.nodes().length === ids.length), 'mesh')
    for (const n of nodes) yield* n.mycel.createBucket('c', '1 hour', 10_000, { nearCache: { maxSize: 1_000, ttlMs: NEAR_TTL } })
    yield* advanceUntil(() => nodes.every((n) => n.mycel.ready()), 'ready')
    return nodes
  })

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Error))

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))
const NEAR_TTL = 1_000

/** A key whose owners (over `ids`) are exactly `owners`, primary first. */
const keyOwnedBy = (ids: ReadonlyArray<string>, owners: ReadonlyArray<string>) => {
  const p = new Placement()
  p.setNodes(ids)
  for (let i = 0; i < 10_000; i++) if (p.owners('c', `k${i}`, 2).join() === owners.join()) return `k${i}`
  throw new Error('no such key')
}

describe('near cache over MemoryTransport (TestClock)', () => {
  it.effect('a remote read is kept; a write from a third node updates it, a large one invalidates it; a write through the reader is visible at once', () =>
    run(
      Effect.gen(function* () {
        const ids = ['a', 'b', 'c', 'd']
        const [, , c, d] = yield* cluster(ids)
        const key = keyOwnedBy(ids, ['a', 'b'])
        yield* drive(d!.mycel.put('c', key, bytes('v1')), 'put v1')
        expect(text(yield* drive(c!.mycel.get('c', key), 'first get'))).toBe('v1')
        const remote = c!.mycel.stats('c')!.remoteGets
        // answered on c: no remote get, no wait
        expect(text(yield* c!.mycel.get('c', key))).toBe('v1')
        expect(text(yield* Effect.promise(() => c!.mycel.unsafeGet('c', key)))).toBe('v1')
        expect(c!.mycel.stats('c')!.remoteGets).toBe(remote)
        expect(c!.mycel.stats('c')!.near).toMatchObject({ hits: 2, misses: 1, entries: 1 })
        // d writes: the owner c read from sends c the new value
        yield* drive(d!.mycel.put('c', key, bytes('v2')), 'put v2')
        yield* advanceUntil(() => c!.mycel.stats('c')!.near!.updates === 1, 'the update at c')
        expect(text(yield* c!.mycel.get('c', key))).toBe('v2')
        expect(c!.mycel.stats('c')!.remoteGets).toBe(remote)
        // a value over NEAR_UPDATE_MAX_BYTES: c is told to drop its copy, and reads it again
        const large = 'L'.repeat(NEAR_UPDATE_MAX_BYTES + 1)
        yield* drive(d!.mycel.put('c', key, bytes(large)), 'put a large value')
        yield* advanceUntil(() => c!.mycel.stats('c')!.near!.invalidations === 1, 'the invalidation at c')
        expect(text(yield* drive(c!.mycel.get('c', key), 'get after the write'))).toBe(large)
        expect(c!.mycel.stats('c')!.remoteGets).toBe(remote + 1)
        // c writes: its next get sees its own write, whatever the invalidations do
        yield* drive(c!.mycel.put('c', key, bytes('mine')), 'put through c')
        expect(text(yield* drive(c!.mycel.get('c', key), 'get after its own write'))).toBe('mine')
        yield* drive(c!.mycel.delete('c', key), 'delete through c')
        expect(yield* drive(c!.mycel.get('c', key), 'get after its own delete')).toBeUndefined()
      })
    )
  )

  it.effect('a copy lives at most the near ttl; a membership change drops every copy', () =>
    run(
      Effect.gen(function* () {
        const ids = ['a', 'b', 'c']
        const [a, , c] = yield* cluster(ids)
        const key = keyOwnedBy(ids, ['a', 'b'])
        yield* drive(a!.mycel.put('c', key, bytes('v1')), 'put')
        yield* drive(c!.mycel.get('c', key), 'first get')
        yield* TestClock.adjust(Duration.millis(NEAR_TTL - 10))
        expect(text(yield* c!.mycel.get('c', key))).toBe('v1')
        expect(c!.mycel.stats('c')!.near!.hits).toBe(1)
        yield* TestClock.adjust(Duration.millis(10))
        // expired: asked of the owner again
        expect(text(yield* drive(c!.mycel.get('c', key), 'get after the ttl'))).toBe('v1')
        expect(c!.mycel.stats('c')!.near).toMatchObject({ hits: 1, misses: 2, entries: 1 })
        // a fourth node joins: owners may change, so c drops what it kept
        const d = yield* node('d', ['a:7001'])
        yield* d.mycel.createBucket('c', '1 hour', 10_000, { nearCache: { maxSize: 1_000, ttlMs: NEAR_TTL } })
        yield* advanceUntil(() => c!.nodosum.nodes().length === 4, 'd joined')
        yield* advanceUntil(() => c!.mycel.stats('c')!.near!.entries === 0, 'c cleared its near copies')
        expect(c!.mycel.stats('c')!.near!.evictions).toBe(1)
      })
    )
  )

  it.effect('near cache options are checked at createBucket, the error naming the field', () =>
    run(
      Effect.gen(function* () {
        const n = yield* node('a', [])
        const error = yield* Effect.flip(n.mycel.createBucket('x', '1 minute', 10, { nearCache: { maxSize: 10, ttlMs: -1 } }))
        expect(error.reason).toBe('InvalidBucket')
        expect(error.message).toMatch(/^nearCache\.ttlMs must be/)
        expect(n.mycel.buckets()).toEqual([])
      })
    )
  )
})
