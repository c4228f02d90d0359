import { LRUCache } from 'lru-cache'

/** A write's version: last write wins, by timestamp, then by node id. */
export interface Version {
  readonly ts: number
  readonly node: string
}

/** One key's state: a value, or a tombstone (value undefined) that keeps older writes out. */
export interface Entry {
  readonly value: Uint8Array | undefined
  readonly version: Version
  /** ms since epoch on this node's clock. */
  readonly expiresAt: number
}

/** Why entries left the store. */
export interface Evictions {
  /** The entry limit pushed out the least recently used. */
  lru: number
  /** The byte limit pushed out the least recently used. */
  bytes: number
  /** The time to live ran out. */
  expired: number
  /** The tombstone limit pushed out the tombstone expiring first. */
  tombstones: number
}

export interface StoreStats {
  readonly hits: number
  readonly misses: number
  readonly puts: number
  readonly deletes: number
  readonly evictions: Readonly<Evictions>
  readonly keys: number
  readonly bytes: number
}

export interface StoreOptions {
  readonly maxEntries: number
  /** Optional byte limit over keys, values and a per-entry overhead. */
  readonly maxBytes?: number | undefined
  readonly defaultTtlMs: number
  /** Tombstones kept at most (default: maxEntries); they are not in the LRU. */
  readonly maxTombstones?: number
  /** The clock (ms); the engine's current time, so tests drive it with TestClock. */
  readonly now: () => number
}

/** Bytes counted per entry besides its key and value (the entry object, its version, the LRU node). */
export const ENTRY_OVERHEAD = 64

/** True when `a` is newer than `b`. */
export const newer = (a: Version, b: Version): boolean => a.ts > b.ts || (a.ts === b.ts && a.node > b.node)

/**
 * The local store of one bucket: LRU order and limits from `lru-cache` for values; expiry on our
 * own clock (checked on access, and by `purgeExpired`); last-write-wins versions.
 *
 * Tombstones live apart from the values, in their own map bounded by `maxTombstones`, so the
 * LRU never evicts one: a tombstone keeps older writes of its key out until it expires, and it
 * expires no sooner than the value it deleted would have (the later of the delete's lifetime
 * and the deleted copy's expiry). When the tombstone map is full, the one expiring first goes
 * (counted as `evictions.tombstones`).
 * Values are kept as given: callers pass copies.
 */
export class BucketStore {
  private readonly cache: LRUCache<string, Entry>
  /** Tombstones by key, in insertion order. */
  private readonly tombstones = new Map<string, Entry>()
  private readonly evictions: Evictions = { lru: 0, bytes: 0, expired: 0, tombstones: 0 }
  private hits = 0
  private misses = 0
  private puts = 0
  /** Entries written (values, tombstones, merges): anti-entropy waits while it moves. */
  writes = 0
  private deletes = 0
  /** Set while we remove an entry ourselves, so dispose does not count it as an eviction. */
  private removing = false
  private readonly maxTombstones: number

  constructor(readonly options: StoreOptions) {
    this.maxTombstones = options.maxTombstones ?? options.maxEntries
    this.cache = new LRUCache<string, Entry>({
      max: options.maxEntries,
      ...(options.maxBytes === undefined
        ? {}
        : {
            maxSize: options.maxBytes,
            sizeCalculation: (entry: Entry, key: string) => ENTRY_OVERHEAD + Buffer.byteLength(key) + (entry.value?.byteLength ?? 0)
          }),
      dispose: (_entry, _key, reason) => {
        if (this.removing || reason !== 'evict') return
        if (this.cache.size >= options.maxEntries) this.evictions.lru++
        else this.evictions.bytes++
      }
    })
  }

  private remove(key: string): void {
    this.removing = true
    try {
      this.cache.delete(key)
    } finally {
      this.removing = false
    }
  }

  /** The entry (a tombstone too), never an expired one. */
  get(key: string): Entry | undefined {
    const entry = this.cache.get(key)
    const now = this.options.now()
    if (entry === undefined) {
      const tomb = this.tombstones.get(key)
      if (tomb === undefined) return undefined
      if (tomb.expiresAt <= now) {
        this.tombstones.delete(key)
        return undefined
      }
      return tomb
    }
    if (entry.expiresAt <= now) {
      this.remove(key)
      this.evictions.expired++
      return undefined
    }
    return entry
  }

  /** The value, or undefined on a miss (absent, expired or deleted); counts hits and misses. */
  getValue(key: string): Uint8Array | undefined {
    const value = this.get(key)?.value
    if (value === undefined) this.misses++
    else this.hits++
    return value
  }

  /** The entry without touching LRU order or counters, if not expired. */
  peek(key: string): Entry | undefined {
    const entry = this.cache.peek(key) ?? this.tombstones.get(key)
    return entry === undefined || entry.expiresAt <= this.options.now() ? undefined : entry
  }

  /** Writes if `version` is newer than what is stored (value or tombstone). */
  put(key: string, value: Uint8Array, version: Version, ttlMs?: number): boolean {
    const ok = this.write(key, { value, version, expiresAt: this.options.now() + (ttlMs ?? this.options.defaultTtlMs) })
    if (ok) this.puts++
    return ok
  }

  /**
   * Leaves a tombstone if `version` is newer than what is stored. It lives for the bucket TTL
   * (or `ttlMs` when longer), and at least as long as the copy it deletes.
   */
  delete(key: string, version: Version, ttlMs?: number): boolean {
    const ok = this.write(key, { value: undefined, version, expiresAt: this.options.now() + Math.max(ttlMs ?? 0, this.options.defaultTtlMs) })
    if (ok) this.deletes++
    return ok
  }

  /** Takes an entry from a peer (replication, handoff) under the same rule. */
  merge(key: string, entry: Entry): boolean {
    if (entry.expiresAt <= this.options.now()) return false
    return this.write(key, entry)
  }

  private write(key: string, entry: Entry): boolean {
    const current = this.peek(key)
    if (current !== undefined && !newer(entry.version, current.version)) return false
    this.writes++
    if (entry.value === undefined) {
      // a tombstone outlives the copy it deletes
      const expiresAt = current !== undefined && current.expiresAt > entry.expiresAt ? current.expiresAt : entry.expiresAt
      this.remove(key)
      this.tombstones.delete(key)
      this.tombstones.set(key, expiresAt === entry.expiresAt ? entry : { ...entry, expiresAt })
      this.boundTombstones()
    } else {
      if (current !== undefined && current.value === undefined) this.tombstones.delete(key)
      this.cache.set(key, entry)
    }
    return true
  }

  /** Drops expired tombstones from the front; past the limit, the one expiring first. */
  private boundTombstones(): void {
    const now = this.options.now()
    for (const [key, t] of this.tombstones) {
      if (t.expiresAt > now) break
      this.tombstones.delete(key)
    }
    if (this.tombstones.size <= this.maxTombstones) return
    let first: string | undefined
    let at = Infinity
    for (const [key, t] of this.tombstones) {
      if (t.expiresAt < at) {
        at = t.expiresAt
        first = key
      }
    }
    if (first !== undefined) {
      this.tombstones.delete(first)
      this.evictions.tombstones++
    }
  }

  /** Drops a key this node no longer owns (not an eviction). */
  drop(key: string): void {
    this.remove(key)
    this.tombstones.delete(key)
  }

  /** Live entries, tombstones included, for handoff. */
  *entries(): IterableIterator<readonly [string, Entry]> {
    const now = this.options.now()
    for (const [key, entry] of this.cache.entries()) if (entry.expiresAt > now) yield [key, entry] as const
    for (const [key, entry] of this.tombstones) if (entry.expiresAt > now) yield [key, entry] as const
  }

  /** Keys of live entries and tombstones, a snapshot. */
  keys(): Array<string> {
    return [...this.cache.keys(), ...this.tombstones.keys()]
  }

  /** Removes expired entries; returns how many. */
  purgeExpired(): number {
    const now = this.options.now()
    const expired: Array<string> = []
    for (const [key, entry] of this.cache.entries()) if (entry.expiresAt <= now) expired.push(key)
    for (const key of expired) this.remove(key)
    for (const [key, t] of [...this.tombstones]) if (t.expiresAt <= now) this.tombstones.delete(key)
    this.evictions.expired += expired.length
    return expired.length
  }

  get size(): number {
    return this.cache.size + this.tombstones.size
  }

  get tombstoneCount(): number {
    return this.tombstones.size
  }

  clear(): void {
    this.removing = true
    try {
      this.cache.clear()
      this.tombstones.clear()
    } finally {
      this.removing = false
    }
  }

  stats(): StoreStats {
    let keys = 0
    let bytes = 0
    const now = this.options.now()
    for (const [key, entry] of this.cache.entries()) {
      if (entry.value === undefined || entry.expiresAt <= now) continue
      keys++
      bytes += Buffer.byteLength(key) + entry.value.byteLength
    }
    return { hits: this.hits, misses: this.misses, puts: this.puts, deletes: this.deletes, evictions: { ...this.evictions }, keys, bytes }
  }
}
