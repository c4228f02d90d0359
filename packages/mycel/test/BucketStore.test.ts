import { describe, expect, it } from '@effect/vitest'
import { Duration, Effect, TestClock } from 'effect'
import { BucketStore, ENTRY_OVERHEAD, SLAB_VALUE_MAX } from '../src/internal/store.js'

const v = (s: string) => new TextEncoder().encode(s)
const t = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))

/** A store on the Effect clock, so TestClock drives its TTLs. */
const storeOn = (options: { maxEntries: number; maxBytes?: number; defaultTtlMs: number }) =>
  Effect.map(Effect.clock, (clock) => new BucketStore({ ...options, now: () => clock.unsafeCurrentTimeMillis() }))

describe('BucketStore', () => {
  it.effect('expires entries by the bucket TTL and by a per-put TTL, never returning them, counting them', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 10, defaultTtlMs: 1_000 })
      store.put('a', v('1'), { ts: 1, node: 'n' })
      store.put('b', v('2'), { ts: 1, node: 'n' }, 5_000)
      yield* TestClock.adjust(Duration.millis(999))
      expect(t(store.getValue('a'))).toBe('1')
      yield* TestClock.adjust(Duration.millis(1))
      expect(store.getValue('a')).toBeUndefined()
      expect(t(store.getValue('b'))).toBe('2')
      yield* TestClock.adjust(Duration.millis(4_000))
      expect(store.getValue('b')).toBeUndefined()
      expect(store.stats().evictions.expired).toBe(2)
      expect(store.stats().hits).toBe(2)
      expect(store.stats().misses).toBe(2)
    })
  )

  it.effect('read: the value and version of a value, the version of a tombstone, none when absent or expired; only readCounted counts', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 10, defaultTtlMs: 1_000 })
      store.put('a', v('1'), { ts: 7, node: 'n1' })
      store.delete('d', { ts: 9, node: 'n2' })
      const seen = (key: string) => {
        const r = store.read(key, { value: undefined, ts: -1, node: '-' })
        return [t(r.value), r.ts, r.node]
      }
      expect([seen('a'), seen('d'), seen('none')]).toEqual([
        ['1', 7, 'n1'],
        [undefined, 9, 'n2'],
        [undefined, 0, '']
      ])
      expect(store.stats().hits + store.stats().misses).toBe(0)
      const into = { value: undefined as Uint8Array | undefined, ts: 0, node: '' }
      expect(t(store.readCounted('a', into).value)).toBe('1')
      expect(store.readCounted('d', into).ts).toBe(9)
      expect([store.stats().hits, store.stats().misses]).toEqual([1, 1])
      yield* TestClock.adjust(Duration.millis(1_000))
      expect([seen('a'), seen('d')]).toEqual([
        [undefined, 0, ''],
        [undefined, 0, '']
      ])
      expect(store.stats().keys).toBe(0)
    })
  )

  it.effect('evicts the least recently used at the entry limit, counted as lru', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 3, defaultTtlMs: 60_000 })
      for (const k of ['a', 'b', 'c']) store.put(k, v(k), { ts: 1, node: 'n' })
      store.getValue('a') // a is now the most recently used
      store.put('d', v('d'), { ts: 1, node: 'n' })
      expect(store.getValue('b')).toBeUndefined()
      expect(['a', 'c', 'd'].map((k) => t(store.getValue(k)))).toEqual(['a', 'c', 'd'])
      expect(store.stats().evictions.lru).toBe(1)
      expect(store.stats().keys).toBe(3)
    })
  )

  it.effect('evicts by bytes under a byte limit, counted as bytes', () =>
    Effect.gen(function* () {
      const entry = ENTRY_OVERHEAD + 1 + 100
      const store = yield* storeOn({ maxEntries: 100, maxBytes: entry * 3, defaultTtlMs: 60_000 })
      for (const k of ['a', 'b', 'c', 'd']) store.put(k, new Uint8Array(100), { ts: 1, node: 'n' })
      expect(store.size).toBe(3)
      expect(store.getValue('a')).toBeUndefined()
      expect(store.stats().evictions.bytes).toBe(1)
      expect(store.stats().bytes).toBe(3 * 101)
    })
  )

  it.effect('last write wins by timestamp, then node id; an older write is refused', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 10, defaultTtlMs: 60_000 })
      expect(store.put('k', v('new'), { ts: 10, node: 'a' })).toBe(true)
      expect(store.put('k', v('old'), { ts: 9, node: 'z' })).toBe(false)
      expect(store.put('k', v('same ts, smaller node'), { ts: 10, node: '0' })).toBe(false)
      expect(store.put('k', v('same ts, larger node'), { ts: 10, node: 'b' })).toBe(true)
      expect(t(store.getValue('k'))).toBe('same ts, larger node')
    })
  )

  it.effect('a delete leaves a tombstone that keeps a late older put out until its TTL', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 10, defaultTtlMs: 1_000 })
      store.put('k', v('x'), { ts: 5, node: 'a' })
      expect(store.delete('k', { ts: 6, node: 'a' })).toBe(true)
      expect(store.getValue('k')).toBeUndefined()
      expect(store.peek('k')?.value).toBeUndefined()
      expect(store.peek('k')?.version.ts).toBe(6)
      // the late put of an older version cannot resurrect it
      expect(store.put('k', v('late'), { ts: 5.5, node: 'b' })).toBe(false)
      expect(store.getValue('k')).toBeUndefined()
      yield* TestClock.adjust(Duration.millis(1_000))
      // the tombstone is gone: the key can be written again
      expect(store.put('k', v('again'), { ts: 5.5, node: 'b' })).toBe(true)
      expect(t(store.getValue('k'))).toBe('again')
      expect(store.stats().deletes).toBe(1)
    })
  )

  it.effect('merge takes entries from peers under the same rule; entries() lists live ones only', () =>
    Effect.gen(function* () {
      const store = yield* storeOn({ maxEntries: 10, defaultTtlMs: 60_000 })
      const now = yield* Effect.clockWith((c) => c.currentTimeMillis)
      expect(store.merge('a', { value: v('1'), version: { ts: 1, node: 'x' }, expiresAt: now + 100 })).toBe(true)
      expect(store.merge('a', { value: v('0'), version: { ts: 0, node: 'x' }, expiresAt: now + 100 })).toBe(false)
      expect(store.merge('gone', { value: v('1'), version: { ts: 1, node: 'x' }, expiresAt: now })).toBe(false)
      store.put('b', v('2'), { ts: 1, node: 'x' }, 50)
      yield* TestClock.adjust(Duration.millis(60))
      expect([...store.entries()].map(([k]) => k)).toEqual(['a'])
      expect(store.purgeExpired()).toBe(1)
      store.drop('a')
      expect(store.size).toBe(0)
    })
  )

  it('keeps its own copy of a small value and the given array of a large one', () => {
    const store = new BucketStore({ maxEntries: 10, defaultTtlMs: 60_000, now: () => 0 })
    const small = v('small')
    const large = new Uint8Array(SLAB_VALUE_MAX + 1).fill(1)
    store.put('s', small, { ts: 1, node: 'n' })
    store.put('l', large, { ts: 1, node: 'n' })
    small[0] = 0
    expect(t(store.getValue('s'))).toBe('small')
    expect(store.getValue('l')).toBe(large)
    expect(store.peek('s')).toEqual({ value: v('small'), version: { ts: 1, node: 'n' }, expiresAt: 60_000 })
  })

  it('under churn every value stays readable, a value read earlier never changes, and the slabs are compacted', () => {
    const store = new BucketStore({ maxEntries: 1_000, defaultTtlMs: 60_000, now: () => 0 })
    const value = (key: number, round: number) => v(`${key}:${round}:`.padEnd(50 + (key % 50), 'x'))
    const first = (() => {
      store.put('k0', value(0, 0), { ts: 1, node: 'n' })
      return store.getValue('k0')!
    })()
    let maxAllocated = 0
    for (let round = 1; round <= 40; round++) {
      for (let key = 0; key < 1_000; key++) store.put(`k${key}`, value(key, round), { ts: round + 1, node: 'n' })
      maxAllocated = Math.max(maxAllocated, store.slabMemory().allocated)
    }
    for (let key = 0; key < 1_000; key++) expect(t(store.getValue(`k${key}`))).toBe(t(value(key, 40)))
    expect(t(first)).toBe(t(value(0, 0)))
    const { allocated, live } = store.slabMemory()
    expect(live).toBe(store.stats().bytes - [...Array(1_000).keys()].reduce((n, key) => n + `k${key}`.length, 0))
    // 40 rounds wrote ~3 MB; what is held stays within live data, garbage up to as much again, and one slab being filled
    expect(maxAllocated).toBeLessThan(2 * live + 2 * 256 * 1024)
    expect(allocated).toBeLessThan(2 * live + 2 * 256 * 1024)
  })

  it('a value larger than the byte limit is not stored and removes the older copy; the LRU order survives updates', () => {
    const store = new BucketStore({ maxEntries: 3, maxBytes: ENTRY_OVERHEAD + 1 + 200, defaultTtlMs: 60_000, now: () => 0 })
    store.put('a', v('x'), { ts: 1, node: 'n' })
    expect(store.put('a', new Uint8Array(300), { ts: 2, node: 'n' })).toBe(true)
    expect(store.getValue('a')).toBeUndefined()
    expect(store.stats().evictions).toEqual({ lru: 0, bytes: 0, expired: 0, tombstones: 0 })
    const lru = new BucketStore({ maxEntries: 3, defaultTtlMs: 60_000, now: () => 0 })
    for (const k of ['a', 'b', 'c']) lru.put(k, v(k), { ts: 1, node: 'n' })
    lru.put('a', v('a2'), { ts: 2, node: 'n' }) // an update makes it the most recently used
    lru.put('d', v('d'), { ts: 1, node: 'n' })
    expect(lru.keys()).toEqual(['d', 'a', 'c'])
    expect(lru.stats().evictions.lru).toBe(1)
  })
})
