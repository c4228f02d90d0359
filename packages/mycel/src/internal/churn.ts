/**
 * A `Map` for entries that come and go all the time (requests in flight, callers waiting, near
 * copies), kept off V8's old generation so that what it held dies young.
 *
 * Why: a `Map` keeps its entries in a table, and V8 allocates a grown or shrunk table in the
 * generation of the table it replaces. Once a busy map's table has lived through two young
 * collections it is in the old generation, and so is every table after it. A replaced table is
 * garbage but keeps pointers to the entries it held; the young collector does not know it is
 * garbage (it treats every old-to-young pointer as live), so those entries — and whatever they
 * point to — survive and are promoted, until a full collection. For a map holding a few dozen
 * requests, replaced every few dozen inserts, that promoted nearly every request with its
 * messages and callbacks: each Mycel node promoted 1.5-1.8 MB per young collection and ran a
 * full collection every few seconds (`docs/performance.md`, "A Map's old tables").
 *
 * So this map starts over with a fresh `Map` (a young table) after as many inserts as it holds
 * entries, and at least RENEW_AFTER: a copy of its entries, in their order, amortized to O(1) per
 * insert. Otherwise it is a `Map`; `set` must not run while its iterators are in use (an
 * iterator keeps reading the map it started on).
 */

/** Inserts at least between two renewals. */
export const RENEW_AFTER = 1_024

export class ChurnMap<K, V> {
  private map = new Map<K, V>()
  private sets = 0

  get size(): number {
    return this.map.size
  }

  get(key: K): V | undefined {
    return this.map.get(key)
  }

  has(key: K): boolean {
    return this.map.has(key)
  }

  set(key: K, value: V): this {
    if (++this.sets >= RENEW_AFTER && this.sets >= this.map.size) {
      this.sets = 0
      this.map = new Map(this.map)
    }
    this.map.set(key, value)
    return this
  }

  delete(key: K): boolean {
    return this.map.delete(key)
  }

  clear(): void {
    this.map = new Map()
    this.sets = 0
  }

  keys(): MapIterator<K> {
    return this.map.keys()
  }

  values(): MapIterator<V> {
    return this.map.values()
  }

  entries(): MapIterator<[K, V]> {
    return this.map.entries()
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.map.entries()
  }
}
