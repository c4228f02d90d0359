/**
 * The near cache: its two pure parts (`NearCache`, `NearReaders`) and the engine with it on,
 * over the deterministic test network (messages through the wire codec, in order per link).
 */
import { describe, expect, it } from '@effect/vitest'
import type { CacheMessage } from '@mycorrizal/wire'
import { NEAR_UPDATE_MAX_BYTES, NearCache, NearReaders, READERS_PER_KEY } from '../src/internal/near.js'
import { Placement } from '../src/internal/placement.js'
import { nearConfigOf } from '../src/internal/service.js'
import { MycelError } from '../src/MycelError.js'
import { bytes, Net, text } from './harness.js'

const v = (ts: number, node = 'a') => ({ ts, node })

describe('NearCache', () => {
  it('keeps a copy for its ttl, drops the least recently used past maxSize', () => {
    const near = new NearCache({ maxSize: 2, ttlMs: 100, trackedKeys: 10 })
    expect(near.offer('a', bytes('A'), v(1), near.mark(), 0)).toBe(true)
    expect(near.offer('b', bytes('B'), v(1), near.mark(), 0)).toBe(true)
    expect(text(near.get('a', 50))).toBe('A') // a is now the most recently used
    expect(near.offer('c', bytes('C'), v(1), near.mark(), 50)).toBe(true)
    expect(near.get('b', 50)).toBeUndefined()
    expect(text(near.get('a', 99))).toBe('A')
    expect(near.get('a', 100)).toBeUndefined() // expired at its ttl
    expect(text(near.get('c', 149))).toBe('C')
    expect({ hits: near.hits, misses: near.misses, evictions: near.evictions, size: near.size }).toEqual({ hits: 3, misses: 2, evictions: 1, size: 1 })
  })

  it('a copy it keeps does not keep the block a value was decoded into, and is independent of it', () => {
    // values of 65 bytes to 1 KiB are decoded into shared 8 KiB blocks; a near cache of maxSize
    // entries must not keep maxSize of them alive
    const near = new NearCache({ maxSize: 4, ttlMs: 1_000, trackedKeys: 10 })
    const block = new ArrayBuffer(8 * 1024)
    const kept = new Uint8Array(block, 800, 100).fill(7)
    expect(near.offer('k', kept, v(1), near.mark(), 0)).toBe(true)
    const updated = new Uint8Array(block, 1600, 100).fill(8)
    near.update('k', updated, v(2), 1)
    updated.fill(0)
    const held = near.get('k', 2)!
    expect(held.buffer).not.toBe(block)
    expect(held.byteLength).toBe(100)
    expect(held.every((b) => b === 8)).toBe(true)
    expect(near.offer('j', kept, v(1), near.mark(), 3)).toBe(true)
    expect(near.get('j', 4)!.buffer).not.toBe(block)
    // a value that is its own buffer is kept as given
    const own = new Uint8Array(100).fill(9)
    expect(near.offer('i', own, v(1), near.mark(), 5)).toBe(true)
    expect(near.get('i', 6)).toBe(own)
  })

  it('copies carved from its own blocks keep at most 16 + maxSize / 16 blocks alive; past that a copy gets memory of its own', () => {
    const near = new NearCache({ maxSize: 1_024, ttlMs: 1_000_000, trackedKeys: 10 })
    const limit = 16 + 1_024 / 16
    const source = new Uint8Array(new ArrayBuffer(8 * 1024), 8, 1_000).fill(3)
    // eight 1,000-byte copies fill a block; keep one of every eight, so each block stays alive for one copy
    let n = 0
    for (let round = 0; round < limit + 10; round++) {
      for (let i = 0; i < 8; i++) expect(near.offer(`k${n + i}`, source, v(1), near.mark(), 0)).toBe(true)
      for (let i = 1; i < 8; i++) near.written(`k${n + i}`, v(2))
      n += 8
      expect(near.pinnedBlocks).toBeLessThanOrEqual(limit)
    }
    expect(near.pinnedBlocks).toBe(limit)
    // the latest copies got memory of their own, and every copy holds its bytes
    expect(near.get(`k${n - 8}`, 1)!.buffer.byteLength).toBe(1_000)
    for (let k = 0; k < n; k += 8) expect(near.get(`k${k}`, 1)!.every((b) => b === 3)).toBe(true)
  })

  it('every way a copy leaves gives its share of a block back, once', () => {
    const near = new NearCache({ maxSize: 64, ttlMs: 100, trackedKeys: 10 })
    // 500-byte values take 504 bytes (8-aligned): 16 copies a block, carved in order
    const source = new Uint8Array(new ArrayBuffer(8 * 1024), 8, 500).fill(5)
    const offer = (from: number, to: number, version = v(1)) => {
      for (let i = from; i < to; i++) expect(near.offer(`k${i}`, source, version, near.mark(), 0)).toBe(true)
    }
    offer(0, 48) // blocks A (k0-15), B (k16-31), C (k32-47)
    expect(near.pinnedBlocks).toBe(3)
    for (let i = 0; i < 16; i++) near.invalidate(`k${i}`, v(2))
    expect(near.pinnedBlocks).toBe(2) // A free
    for (let i = 16; i < 32; i++) near.written(`k${i}`, v(2))
    expect(near.pinnedBlocks).toBe(1) // B free
    for (let i = 32; i < 40; i++) near.update(`k${i}`, source, v(2), 1) // new copies in D, half of C given back
    expect(near.pinnedBlocks).toBe(2)
    offer(40, 48, v(3)) // offered over held copies: the rest of C given back, new copies in D
    expect(near.pinnedBlocks).toBe(1)
    for (let i = 32; i < 48; i++) expect(near.get(`k${i}`, 100)).toBeUndefined() // expired when read
    expect(near.pinnedBlocks).toBe(0)
    // past maxSize the oldest are evicted: 128 copies over 8 blocks, at most 64 alive (5 blocks)
    offer(100, 228)
    expect(near.evictions).toBeGreaterThan(0)
    expect(near.size).toBeLessThanOrEqual(64)
    expect(near.pinnedBlocks).toBeLessThanOrEqual(5)
    near.clear()
    expect(near.pinnedBlocks).toBe(0)
  })

  it('a hit moves its copy to the LRU end only when more than maxSize / 8 others went there since (hot copies stay put)', () => {
    const near = new NearCache({ maxSize: 16, ttlMs: 1_000, trackedKeys: 10 })
    for (const k of ['a', 'b', 'c', 'd', 'e']) near.offer(k, bytes(k), v(1), near.mark(), 0)
    near.get('a', 1) // four placed since a: moved to the end
    near.get('d', 1) // one placed since d (and a): stays
    for (let i = 0; i < 11; i++) near.offer(`f${i}`, bytes('f'), v(1), near.mark(), 1)
    // the 17th copy drops the two at the front: b and c; a was moved behind them
    near.offer('g', bytes('g'), v(1), near.mark(), 1)
    expect(['a', 'b', 'c', 'd', 'e'].map((k) => near.get(k, 2) !== undefined)).toEqual([true, false, false, true, true])
  })

  it('an invalidation drops an older copy, not a newer one, and fences reads in flight', () => {
    const near = new NearCache({ maxSize: 10, ttlMs: 1_000, trackedKeys: 10 })
    near.offer('k', bytes('v2'), v(2), near.mark(), 0)
    near.invalidate('k', v(1)) // older than the copy: it stays
    expect(text(near.get('k', 1))).toBe('v2')
    const mark = near.mark()
    near.invalidate('k', v(3))
    expect(near.get('k', 1)).toBeUndefined()
    expect(near.invalidations).toBe(1)
    // a read begun before the invalidation answers v2: not kept; v3 or newer is
    expect(near.offer('k', bytes('v2'), v(2), mark, 2)).toBe(false)
    expect(near.offer('k', bytes('v3'), v(3), mark, 2)).toBe(true)
    // an invalidation without a version refuses what was read before it, whatever its version
    const before = near.mark()
    near.invalidate('k', undefined)
    expect(near.offer('k', bytes('v9'), v(9), before, 3)).toBe(false)
    expect(near.offer('k', bytes('v9'), v(9), near.mark(), 3)).toBe(true)
    expect(near.refused).toBe(2)
  })

  it("an owner's update gives a held copy the newer value and keeps its expiry; an older one or one without a copy keeps nothing", () => {
    const near = new NearCache({ maxSize: 10, ttlMs: 1_000, trackedKeys: 10 })
    near.offer('k', bytes('v2'), v(2), near.mark(), 0)
    near.update('k', bytes('v1'), v(1), 10) // older than the copy: it stays
    expect(text(near.get('k', 10))).toBe('v2')
    const mark = near.mark()
    near.update('k', bytes('v3'), v(3), 20)
    expect(text(near.get('k', 20))).toBe('v3')
    expect(near.updates).toBe(1)
    // a read begun before the update may not put v2 back
    expect(near.offer('k', bytes('v2'), v(2), mark, 30)).toBe(false)
    // the copy still expires when the one read at 0 did
    expect(text(near.get('k', 999))).toBe('v3')
    expect(near.get('k', 1_000)).toBeUndefined()
    // no copy: the value is not kept (this node did not ask for it), only fenced
    near.update('x', bytes('x2'), v(2), 1_000)
    expect(near.size).toBe(0)
    expect(near.offer('x', bytes('x1'), v(1), near.mark(), 1_001)).toBe(false)
    // an expired copy is dropped, not renewed
    near.offer('e', bytes('e1'), v(1), near.mark(), 1_000)
    near.update('e', bytes('e2'), v(2), 2_000)
    expect(near.size).toBe(0)
    expect(near.updates).toBe(1)
  })

  it('a write through this node drops its copy and refuses older answers after it', () => {
    const near = new NearCache({ maxSize: 10, ttlMs: 1_000, trackedKeys: 10 })
    near.offer('k', bytes('old'), v(5), near.mark(), 0)
    near.written('k', v(7, 'me'))
    expect(near.get('k', 1)).toBeUndefined()
    // a read begun even after the write, answered by an owner that lags behind it, is not kept
    expect(near.offer('k', bytes('old'), v(5), near.mark(), 2)).toBe(false)
    expect(near.offer('k', bytes('mine'), v(7, 'me'), near.mark(), 2)).toBe(true)
  })

  it('fences are bounded: when one is dropped, reads begun before it keep nothing', () => {
    const near = new NearCache({ maxSize: 1, ttlMs: 1_000, trackedKeys: 10 })
    const early = near.mark()
    for (let i = 0; i < 1_025; i++) near.written(`w${i}`, v(10))
    // w0's fence was dropped for room: an answer for w0 read before it could be older than the write
    expect(near.offer('w0', bytes('x'), v(1), early, 1)).toBe(false)
    expect(near.offer('w0', bytes('x'), v(11), near.mark(), 1)).toBe(true)
  })

  it('a clear (membership change) drops every copy and what reads in flight bring', () => {
    const near = new NearCache({ maxSize: 10, ttlMs: 1_000, trackedKeys: 10 })
    near.offer('k', bytes('v'), v(1), near.mark(), 0)
    const mark = near.mark()
    near.clear()
    expect(near.size).toBe(0)
    expect(near.offer('k', bytes('v'), v(1), mark, 1)).toBe(false)
    expect(near.offer('k', bytes('v'), v(1), near.mark(), 1)).toBe(true)
  })
})

describe('NearReaders', () => {
  it('names the readers of a key once, then forgets them; expired readers are not named', () => {
    const readers = new NearReaders(() => 100)
    expect(readers.idle(0)).toBe(true)
    readers.register('k', 'b', 1_000, 0)
    readers.register('k', 'c', 100, 0)
    expect(readers.written('k', 500)).toEqual(['b'])
    expect(readers.written('k', 500)).toBeUndefined()
    expect(readers.idle(500)).toBe(true)
  })

  it('a write sent as an update keeps the readers it names until their copies expire', () => {
    const readers = new NearReaders(() => 100)
    readers.register('k', 'b', 1_000, 0)
    readers.register('k', 'c', 100, 0)
    expect(readers.written('k', 50, true)).toEqual(['b', 'c'])
    expect(readers.written('k', 500, true)).toEqual(['b'])
    expect(readers.written('k', 600, true)).toEqual(['b'])
    // an invalidation (a delete, a large value) forgets them
    expect(readers.written('k', 700)).toEqual(['b'])
    expect(readers.written('k', 800, true)).toBeUndefined()
    readers.register('j', 'b', 100, 1_000)
    expect(readers.written('j', 1_100, true)).toBeUndefined()
    expect(readers.size).toBe(0)
  })

  it(`past ${READERS_PER_KEY} readers of a key, its invalidation is broadcast`, () => {
    const readers = new NearReaders(() => 100)
    for (let i = 0; i <= READERS_PER_KEY; i++) readers.register('k', `n${i}`, 1_000, 0)
    readers.register('other', 'n0', 1_000, 0)
    expect(readers.written('k', 10)).toBe('all')
    expect(readers.written('other', 10)).toEqual(['n0'])
    expect(readers.broadcasts).toBe(1)
  })

  it('a reader that reads a key again is one reader: its last read sets its expiry, and it counts once toward the limit', () => {
    const readers = new NearReaders(() => 100)
    for (let i = 0; i < READERS_PER_KEY; i++) readers.register('k', `n${i}`, 1_000, 0)
    // the same readers again, many times: still READERS_PER_KEY readers, named, no broadcast
    for (let round = 1; round <= 3; round++) for (let i = 0; i < READERS_PER_KEY; i++) readers.register('k', `n${i}`, 1_000, round)
    readers.register('k', 'n0', 100, 4) // n0's copy now expires at 104
    expect(readers.written('k', 50, true)).toEqual(Array.from({ length: READERS_PER_KEY }, (_, i) => `n${i}`))
    // past n0's expiry it is dropped, the others keep their order
    expect(readers.written('k', 200, true)).toEqual(Array.from({ length: READERS_PER_KEY - 1 }, (_, i) => `n${i + 1}`))
    expect(readers.broadcasts).toBe(0)
  })

  it('past trackedKeys keys, every write is broadcast until the forgotten copies expired', () => {
    const readers = new NearReaders(() => 2)
    readers.register('a', 'n1', 1_000, 0)
    readers.register('b', 'n1', 1_000, 0)
    readers.register('c', 'n1', 1_000, 0) // forgets a's readers
    expect(readers.size).toBe(2)
    expect(readers.written('a', 10)).toBe('all')
    expect(readers.written('unread', 999)).toBe('all')
    expect(readers.written('unread', 1_000)).toBeUndefined()
    expect(readers.written('b', 1_000)).toBeUndefined() // b's reader expired at 1,000 too
  })

  it('trackedKeys 0 is the broadcast variant: any write while someone reads near', () => {
    const readers = new NearReaders(() => 0)
    readers.register('k', 'n1', 500, 0)
    expect(readers.size).toBe(0)
    expect(readers.written('x', 499)).toBe('all')
    expect(readers.written('x', 500)).toBeUndefined()
  })
})

describe('nearCache options', () => {
  it('are checked, the error naming the field', () => {
    expect(nearConfigOf(undefined)).toBeUndefined()
    expect(nearConfigOf({ maxSize: 10, ttlMs: 500 })).toEqual({ maxSize: 10, ttlMs: 500, trackedKeys: 100_000 })
    const message = (x: unknown) => (x instanceof MycelError ? `${x.reason}: ${x.message}` : 'ok')
    expect(message(nearConfigOf({ maxSize: 0, ttlMs: 500 }))).toMatch(/^InvalidBucket: nearCache\.maxSize must be an integer .* got 0$/)
    expect(message(nearConfigOf({ maxSize: 1.5, ttlMs: 500 }))).toMatch(/nearCache\.maxSize/)
    expect(message(nearConfigOf({ maxSize: 10, ttlMs: 0 }))).toMatch(/nearCache\.ttlMs must be an integer number of milliseconds from 1 to 86,400,000, got 0/)
    expect(message(nearConfigOf({ maxSize: 10, ttlMs: 86_400_001 }))).toMatch(/nearCache\.ttlMs/)
    expect(message(nearConfigOf({ maxSize: 10, ttlMs: 10, trackedKeys: -1 }))).toMatch(/nearCache\.trackedKeys/)
    expect(message(nearConfigOf(null as never))).toMatch(/nearCache must be an object/)
  })
})

// ---- the engine with the near cache on --------------------------------------------------

const NODES = ['a', 'b', 'c', 'd']
const TTL = 1_000

/** A key owned by a and b (a primary), so c reads it from a and d writes it from outside. */
const keyOwnedBy = (owners: ReadonlyArray<string>) => {
  const p = new Placement()
  p.setNodes(NODES)
  for (let i = 0; i < 10_000; i++) if (p.owners('s', `k${i}`, 2).join() === owners.join()) return `k${i}`
  throw new Error('no such key')
}

const setup = (trackedKeys = 100) => {
  const net = new Net()
  for (const id of NODES) net.add(id)
  net.members(NODES)
  net.createBucket('s', { nearCache: { maxSize: 100, ttlMs: TTL, trackedKeys } })
  const key = keyOwnedBy(['a', 'b'])
  net.must(net.put('a', 's', key, bytes('v1')))
  return { net, key }
}

const near = (net: Net, node: string) => net.node(node).stats('s')!.near!

/** Messages of a kind sent while `f` runs. */
const counting = (net: Net, tag: CacheMessage.CacheMessage['_tag'], f: () => void) => {
  let n = 0
  const before = net.drop
  net.drop = (m) => {
    if (m.message._tag === tag) n++
    return before(m)
  }
  f()
  net.drop = before
  return n
}

describe('cache engine: near cache', () => {
  it('a remote read is kept: the next get is answered on this node without a message', () => {
    const { net, key } = setup()
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('v1'))).toBe(1)
    const sent = net.sent
    expect(text(net.must(net.get('c', 's', key)))).toBe('v1')
    expect(net.sent).toBe(sent)
    expect(near(net, 'c')).toMatchObject({ hits: 1, misses: 1, entries: 1 })
    // owners read their own copy: no near copy there
    net.must(net.get('a', 's', key))
    expect(near(net, 'a')).toMatchObject({ hits: 0, misses: 0, entries: 0, trackedKeys: 1 })
  })

  it('a write from a third node updates the copy: the next get answers the new value on this node, without a message', () => {
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    // only the owner that served the read remembers c (b stored the write, but c never read from b)
    expect(counting(net, 'NearUpdate', () => net.must(net.put('d', 's', key, bytes('v2'))))).toBe(1)
    expect(near(net, 'c')).toMatchObject({ updates: 1, invalidations: 0, entries: 1 })
    const sent = net.sent
    expect(text(net.must(net.get('c', 's', key)))).toBe('v2')
    expect(net.sent).toBe(sent)
    // a keeps c as a reader: the next write updates it again
    expect(counting(net, 'NearUpdate', () => net.must(net.put('d', 's', key, bytes('v3'))))).toBe(1)
    expect(text(net.must(net.get('c', 's', key)))).toBe('v3')
    expect(near(net, 'a').invalidationsSent).toBe(2)
  })

  it(`a value over ${NEAR_UPDATE_MAX_BYTES} bytes or a delete invalidates the copy: the next get reads again`, () => {
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    const large = 'L'.repeat(NEAR_UPDATE_MAX_BYTES + 1)
    expect(counting(net, 'NearInvalidate', () => net.must(net.put('d', 's', key, bytes(large))))).toBe(1)
    expect(near(net, 'c')).toMatchObject({ invalidations: 1, updates: 0, entries: 0 })
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe(large))).toBe(1)
    // a delete from d too
    expect(counting(net, 'NearInvalidate', () => net.must(net.del('d', 's', key)))).toBe(1)
    expect(net.must(net.get('c', 's', key))).toBeUndefined()
  })

  it('an invalidation or update that is lost leaves the copy stale for at most the near ttl; an update keeps the expiry of the read', () => {
    for (const lost of ['NearInvalidate', 'NearUpdate'] as const) {
      const { net, key } = setup()
      net.must(net.get('c', 's', key))
      net.drop = ({ message }) => message._tag === lost
      net.must(net.put('d', 's', key, lost === 'NearUpdate' ? bytes('v2') : bytes('V'.repeat(NEAR_UPDATE_MAX_BYTES + 1))))
      net.advance(TTL - 100)
      expect(text(net.must(net.get('c', 's', key)))).toBe('v1') // stale, within the window
      net.advance(100)
      expect(text(net.must(net.get('c', 's', key)))?.slice(0, 2)).toBe(lost === 'NearUpdate' ? 'v2' : 'VV')
    }
    // an update that arrives does not extend the copy's life: it goes at the ttl of its read
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    net.advance(TTL - 100)
    net.must(net.put('d', 's', key, bytes('v2')))
    expect(near(net, 'c').updates).toBe(1)
    net.advance(100)
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('v2'))).toBe(1)
    // and the owner stopped naming c when that copy expired (c registered again with this read)
    net.advance(TTL)
    expect(counting(net, 'NearUpdate', () => net.must(net.put('d', 's', key, bytes('v3'))))).toBe(0)
  })

  it('a write through this node is visible to its next get at once, even when the invalidations are lost', () => {
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    net.drop = ({ message }) => message._tag === 'NearInvalidate'
    net.must(net.put('c', 's', key, bytes('mine')))
    expect(text(net.must(net.get('c', 's', key)))).toBe('mine')
    net.must(net.del('c', 's', key))
    expect(net.must(net.get('c', 's', key))).toBeUndefined()
    net.must(net.put('c', 's', key, bytes('again')))
    expect(text(net.must(net.get('c', 's', key)))).toBe('again')
    // an increment through this node too
    net.drop = () => false
    net.must(net.put('a', 's', key, bytes('10')))
    net.drop = ({ message }) => message._tag === 'NearInvalidate'
    expect(text(net.must(net.get('c', 's', key)))).toBe('10')
    expect(net.atomic(net.increment('c', 's', key, 5))).toBe(15)
    expect(text(net.must(net.get('c', 's', key)))).toBe('15')
  })

  it('an invalidation that overtakes the read response wins: the older answer is returned but not kept', () => {
    const { net, key } = setup()
    // c's read is answered by a with v1, but the answer is held back on the link a > c
    net.hold = ({ from, to, message }) => from === 'a' && to === 'c' && message._tag === 'GetResponse'
    const read = net.get('c', 's', key)
    expect(net.results.has(read)).toBe(false)
    // meanwhile another owner tells c the key was written at a newer version
    const newer = { ts: net.held('a', 's', key)!.version.ts + 1_000, node: 'd' }
    net.node('c').receive('s', 'b', { _tag: 'NearInvalidate', key, ts: newer.ts, node: newer.node }, net.clock('c'))
    net.hold = undefined
    net.run()
    expect(text(net.must(read))).toBe('v1') // the read was concurrent with the write: v1 is a fine answer
    expect(near(net, 'c')).toMatchObject({ entries: 0, refused: 1 })
    // the next get asks again
    expect(counting(net, 'NearGet', () => net.must(net.get('c', 's', key)))).toBe(1)
  })

  it('an update that overtakes the read response wins too: the older answer is returned but not kept', () => {
    const { net, key } = setup()
    net.hold = ({ from, to, message }) => from === 'a' && to === 'c' && message._tag === 'GetResponse'
    const read = net.get('c', 's', key)
    const newer = { ts: net.held('a', 's', key)!.version.ts + 1_000, node: 'd' }
    net.node('c').receive('s', 'b', { _tag: 'NearUpdate', key, value: bytes('v2'), ts: newer.ts, node: newer.node }, net.clock('c'))
    net.hold = undefined
    net.run()
    expect(text(net.must(read))).toBe('v1')
    // c held no copy, so the update's value is not kept either: the next get asks
    expect(near(net, 'c')).toMatchObject({ entries: 0, refused: 1, updates: 0 })
    expect(counting(net, 'NearGet', () => net.must(net.get('c', 's', key)))).toBe(1)
  })

  it('a put of a small value through a node holding a copy keeps its own value as the copy, until the old copy would have expired', () => {
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    net.advance(300)
    net.must(net.put('c', 's', key, bytes('mine')))
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('mine'))).toBe(0)
    // the owner c read from still names c: a write from d reaches the copy
    expect(counting(net, 'NearUpdate', () => net.must(net.put('d', 's', key, bytes('v3'))))).toBe(1)
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('v3'))).toBe(0)
    // the copy ends when the one read at 0 would have
    net.advance(TTL - 300)
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('v3'))).toBe(1)
  })

  it('a put through a node keeps no copy when there was none, the value is large, or something newer arrived meanwhile', () => {
    const { net, key } = setup()
    // no copy before the put
    net.must(net.put('c', 's', key, bytes('mine')))
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('mine'))).toBe(1)
    // a large value: the owner forgets its readers (an invalidation), so c may not keep it
    const large = 'L'.repeat(NEAR_UPDATE_MAX_BYTES + 1)
    net.must(net.put('c', 's', key, bytes(large)))
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe(large))).toBe(1)
    // a newer version told to c while its put waits for its acknowledgement
    net.hold = ({ from, to, message }) => from === 'a' && to === 'c' && message._tag === 'Ack'
    const put = net.put('c', 's', key, bytes('mine2'))
    const mine = net.held('a', 's', key)!.version
    net.node('c').receive('s', 'b', { _tag: 'NearInvalidate', key, ts: mine.ts + 1_000, node: 'd' }, net.clock('c'))
    net.hold = undefined
    net.run()
    net.must(put)
    expect(near(net, 'c').entries).toBe(0)
  })

  it("an update older than the copy (from an owner that lags) is ignored: a node's own write stays visible", () => {
    const { net, key } = setup()
    net.must(net.put('c', 's', key, bytes('mine')))
    expect(text(net.must(net.get('c', 's', key)))).toBe('mine')
    expect(near(net, 'c').entries).toBe(1)
    const mine = net.held('a', 's', key)!.version
    // an owner that has not seen c's write yet reports the value before it
    net.node('c').receive('s', 'b', { _tag: 'NearUpdate', key, value: bytes('v1'), ts: mine.ts - 1, node: mine.node }, net.clock('c'))
    expect(near(net, 'c').updates).toBe(0)
    expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe('mine'))).toBe(0)
  })

  it('the invalidation or update of one owner cannot overtake its own answer (same link, in order)', () => {
    for (const large of [false, true]) {
      const { net, key } = setup()
      net.hold = ({ from, to }) => from === 'a' && to === 'c'
      const read = net.get('c', 's', key)
      const v2 = large ? 'W'.repeat(NEAR_UPDATE_MAX_BYTES + 1) : 'v2'
      net.must(net.put('d', 's', key, bytes(v2)))
      net.hold = undefined
      net.run()
      expect(text(net.must(read))).toBe('v1')
      // a served the read before the write, so it remembered c and told it after its answer
      expect(near(net, 'c')).toMatchObject(large ? { entries: 0, invalidations: 1 } : { entries: 1, updates: 1 })
      expect(counting(net, 'NearGet', () => expect(text(net.must(net.get('c', 's', key)))).toBe(v2))).toBe(large ? 1 : 0)
    }
  })

  it('a membership change drops every near copy', () => {
    const { net, key } = setup()
    net.must(net.get('c', 's', key))
    expect(near(net, 'c').entries).toBe(1)
    net.add('e')
    net.createBucket('s', { nearCache: { maxSize: 100, ttlMs: TTL, trackedKeys: 100 } }, ['e'])
    net.members([...NODES, 'e'])
    expect(near(net, 'c').entries).toBe(0)
    expect(near(net, 'c').evictions).toBe(1)
  })

  it('trackedKeys 0: a write is invalidated on every member (the broadcast variant)', () => {
    const { net, key } = setup(0)
    net.must(net.get('c', 's', key))
    // a (the owner c read from) tells b, c and d; b, the other owner, has no reader: nothing
    expect(counting(net, 'NearInvalidate', () => net.must(net.put('d', 's', key, bytes('v2'))))).toBe(3)
    expect(near(net, 'a').broadcasts).toBe(1)
    expect(text(net.must(net.get('c', 's', key)))).toBe('v2')
  })
})
