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

/** Bytes counted per entry besides its key and value (its record and its place in the index), for `maxBytes`. */
export const ENTRY_OVERHEAD = 64

/** True when `a` is newer than `b`. */
export const newer = (a: Version, b: Version): boolean => a.ts > b.ts || (a.ts === b.ts && a.node > b.node)

/** Values up to this size are copied into the store's slabs; larger ones are kept as given. */
export const SLAB_VALUE_MAX = 4096
const FIRST_SLAB = 4096
const LAST_SLAB = 256 * 1024
/** Compaction waits until the slabs hold at least this much garbage (and as much as live data). */
const COMPACT_MIN_GARBAGE = 256 * 1024

/** A block that holds many small values back to back; `live` counts the bytes still in use. */
class Slab {
  used = 0
  live = 0
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * One key's value in the LRU list: a single object per entry, with the version's fields and
 * the list links inline. The value is `len` bytes at `off` of a slab, or (a large value) the
 * `Uint8Array` it was given, whole.
 */
class Slot {
  prev: Slot | undefined = undefined
  next: Slot | undefined = undefined
  constructor(
    readonly key: string,
    public ts: number,
    public node: string,
    public expiresAt: number,
    public data: Slab | Uint8Array,
    public off: number,
    public len: number
  ) {}
}

const valueOf = (slot: Slot): Uint8Array => (slot.data instanceof Slab ? slot.data.bytes.subarray(slot.off, slot.off + slot.len) : slot.data)
/** What a read found (`BucketStore.read`): filled in place, so a read builds no object. */
export interface Read {
  value: Uint8Array | undefined
  ts: number
  node: string
}

/** A read's answer for callers that use it at once. */
const SCRATCH: Read = { value: undefined, ts: 0, node: '' }

const entryOf = (slot: Slot): Entry => ({ value: valueOf(slot), version: { ts: slot.ts, node: slot.node }, expiresAt: slot.expiresAt })

/**
 * The local store of one bucket: LRU order and the entry and byte limits; expiry on our own
 * clock (checked on access, and by `purgeExpired`); last-write-wins versions.
 *
 * Memory per entry: one record (`Slot`: key, version, expiry, the LRU links) and one slot of
 * the key index; a value up to `SLAB_VALUE_MAX` bytes is copied into a slab shared with
 * other values (no `Uint8Array` or `ArrayBuffer` of its own), and read back as a view of it.
 * The slabs are compacted (live values copied to fresh ones) once they hold as much garbage
 * as live data; a view handed out earlier keeps its old slab alive, never sees it change.
 *
 * Tombstones live apart from the values, in their own map bounded by `maxTombstones`, so the
 * LRU never evicts one: a tombstone keeps older writes of its key out until it expires, and it
 * expires no sooner than the value it deleted would have (the later of the delete's lifetime
 * and the deleted copy's expiry). When the tombstone map is full, the one expiring first goes
 * (counted as `evictions.tombstones`).
 * Small values are copied; large ones are kept as given: callers pass copies.
 */
export class BucketStore {
  private readonly index = new Map<string, Slot>()
  /** Least recently used end of the list. */
  private head: Slot | undefined = undefined
  /** Most recently used end of the list. */
  private tail: Slot | undefined = undefined
  /** Sum of the sizes counted against `maxBytes`. */
  private sizeBytes = 0
  private slab: Slab | undefined = undefined
  /** Bytes of the slabs still referenced by a slot (or current), and of the values in them. */
  private slabBytes = 0
  private slabLive = 0
  /** Tombstones by key, in insertion order. */
  private readonly tombstones = new Map<string, Entry>()
  private readonly evictions: Evictions = { lru: 0, bytes: 0, expired: 0, tombstones: 0 }
  private hits = 0
  private misses = 0
  private puts = 0
  /** Entries written (values, tombstones, merges): anti-entropy waits while it moves. */
  writes = 0
  private deletes = 0
  private readonly maxTombstones: number

  /** Called after every write that changed the key (a newer value or tombstone): the near cache's invalidations. */
  onWrite: ((key: string, version: Version, value: Uint8Array | undefined) => void) | undefined = undefined

  constructor(readonly options: StoreOptions) {
    this.maxTombstones = options.maxTombstones ?? options.maxEntries
  }

  private sizeOf(key: string, len: number): number {
    return ENTRY_OVERHEAD + Buffer.byteLength(key) + len
  }

  private unlink(slot: Slot): void {
    if (slot.prev === undefined) this.head = slot.next
    else slot.prev.next = slot.next
    if (slot.next === undefined) this.tail = slot.prev
    else slot.next.prev = slot.prev
    slot.prev = slot.next = undefined
  }

  private append(slot: Slot): void {
    slot.prev = this.tail
    if (this.tail === undefined) this.head = slot
    else this.tail.next = slot
    this.tail = slot
  }

  /** Marks the most recently used. */
  private touch(slot: Slot): void {
    if (this.tail === slot) return
    this.unlink(slot)
    this.append(slot)
  }

  /** Gives up a slot's value bytes. */
  private release(slot: Slot): void {
    if (this.options.maxBytes !== undefined) this.sizeBytes -= this.sizeOf(slot.key, slot.len)
    const data = slot.data
    if (data instanceof Slab) {
      data.live -= slot.len
      this.slabLive -= slot.len
      if (data.live === 0 && data !== this.slab) this.slabBytes -= data.bytes.length
    }
  }

  /** Places a value: a copy in the current slab, or a large value as given. */
  private place(slot: Slot, value: Uint8Array): void {
    slot.len = value.byteLength
    if (value.byteLength > SLAB_VALUE_MAX) {
      slot.data = value
      slot.off = 0
      return
    }
    let slab = this.slab
    if (slab === undefined || slab.bytes.length - slab.used < value.byteLength) {
      if (slab !== undefined && slab.live === 0) this.slabBytes -= slab.bytes.length
      const size = slab === undefined ? FIRST_SLAB : Math.min(LAST_SLAB, slab.bytes.length * 2)
      slab = this.slab = new Slab(new Uint8Array(size))
      this.slabBytes += size
    }
    slab.bytes.set(value, slab.used)
    slot.data = slab
    slot.off = slab.used
    slab.used += value.byteLength
    slab.live += value.byteLength
    this.slabLive += value.byteLength
  }

  /** Copies every slab value into fresh slabs once the garbage in them outweighs the live data. */
  private compactIfWasteful(): void {
    const garbage = this.slabBytes - this.slabLive
    if (garbage < COMPACT_MIN_GARBAGE || garbage < this.slabLive) return
    this.slab = undefined
    this.slabBytes = 0
    this.slabLive = 0
    for (let s = this.head; s !== undefined; s = s.next) if (s.data instanceof Slab) this.place(s, s.data.bytes.subarray(s.off, s.off + s.len))
  }

  /** Removes a slot from the index and the list; `reason` counts it as an eviction. */
  private removeSlot(slot: Slot, reason?: 'lru' | 'bytes' | 'expired'): void {
    this.index.delete(slot.key)
    this.unlink(slot)
    this.release(slot)
    if (reason !== undefined) this.evictions[reason]++
  }

  private remove(key: string): void {
    const slot = this.index.get(key)
    if (slot !== undefined) this.removeSlot(slot)
  }

  /** Stores a value (LRU: the most recently used), evicting the least recently used over a limit. */
  private setValue(key: string, value: Uint8Array, version: Version, expiresAt: number, found: Slot | undefined): void {
    const maxBytes = this.options.maxBytes
    const size = maxBytes === undefined ? 0 : this.sizeOf(key, value.byteLength)
    let slot = found
    if (maxBytes !== undefined && size > maxBytes) {
      // larger than the whole limit: not stored, and the older copy goes too
      if (slot !== undefined) this.removeSlot(slot)
      return
    }
    if (slot === undefined) {
      if (this.index.size >= this.options.maxEntries && this.head !== undefined) this.removeSlot(this.head, 'lru')
      slot = new Slot(key, version.ts, version.node, expiresAt, EMPTY, 0, 0)
      this.index.set(key, slot)
      this.append(slot)
    } else {
      this.release(slot)
      slot.ts = version.ts
      slot.node = version.node
      slot.expiresAt = expiresAt
      this.touch(slot)
    }
    if (maxBytes !== undefined) {
      while (this.sizeBytes + size > maxBytes && this.head !== undefined && this.head !== slot) this.removeSlot(this.head, 'bytes')
      this.sizeBytes += size
    }
    this.place(slot, value)
    this.compactIfWasteful()
  }

  /**
   * The value, or undefined on a miss (absent, expired or deleted); counts hits and misses.
   * No entry built.
   */
  getValue(key: string): Uint8Array | undefined {
    const value = this.readCounted(key, SCRATCH).value
    // the scratch keeps no view (it would keep its slab alive)
    SCRATCH.value = undefined
    return value
  }

  /**
   * One lookup for a read: fills `into` with the value (undefined for a tombstone, nothing or an
   * expired entry) and the version of what is stored (a tombstone's too; ts 0 and node '' when
   * nothing is); a value found becomes the most recently used. No entry built: the answer to a
   * peer's Get and the local read of a get go through here.
   */
  read(key: string, into: Read): Read {
    const slot = this.index.get(key)
    if (slot !== undefined) {
      if (slot.expiresAt > this.options.now()) {
        this.touch(slot)
        into.value = valueOf(slot)
        into.ts = slot.ts
        into.node = slot.node
        return into
      }
      this.removeSlot(slot, 'expired')
    } else {
      const tomb = this.tombstones.get(key)
      if (tomb !== undefined) {
        if (tomb.expiresAt > this.options.now()) {
          into.value = undefined
          into.ts = tomb.version.ts
          into.node = tomb.version.node
          return into
        }
        this.tombstones.delete(key)
      }
    }
    into.value = undefined
    into.ts = 0
    into.node = ''
    return into
  }

  /** `read`, counted as a hit or a miss: a local get. */
  readCounted(key: string, into: Read): Read {
    if (this.read(key, into).value === undefined) this.misses++
    else this.hits++
    return into
  }

  /** The entry without touching LRU order or counters, if not expired. */
  peek(key: string): Entry | undefined {
    const slot = this.index.get(key)
    if (slot !== undefined) return slot.expiresAt <= this.options.now() ? undefined : entryOf(slot)
    const tomb = this.tombstones.get(key)
    return tomb === undefined || tomb.expiresAt <= this.options.now() ? undefined : tomb
  }

  /** Writes if `version` is newer than what is stored (value or tombstone). */
  put(key: string, value: Uint8Array, version: Version, ttlMs?: number): boolean {
    const ok = this.write(key, value, version, this.options.now() + (ttlMs ?? this.options.defaultTtlMs))
    if (ok) this.puts++
    return ok
  }

  /**
   * Leaves a tombstone if `version` is newer than what is stored. It lives for the bucket TTL
   * (or `ttlMs` when longer), and at least as long as the copy it deletes.
   */
  delete(key: string, version: Version, ttlMs?: number): boolean {
    const ok = this.write(key, undefined, version, this.options.now() + Math.max(ttlMs ?? 0, this.options.defaultTtlMs))
    if (ok) this.deletes++
    return ok
  }

  /** Takes an entry from a peer (replication, handoff) under the same rule. */
  merge(key: string, entry: Entry): boolean {
    if (entry.expiresAt <= this.options.now()) return false
    return this.write(key, entry.value, entry.version, entry.expiresAt, entry)
  }

  private write(key: string, value: Uint8Array | undefined, version: Version, expiresAt: number, given?: Entry): boolean {
    // one lookup: what is stored (an expired entry counts as nothing)
    const now = this.options.now()
    const slot = this.index.get(key)
    let tomb: Entry | undefined
    let heldUntil = 0
    if (slot !== undefined) {
      if (slot.expiresAt > now) {
        // a slot carries its version's fields itself
        if (!newer(version, slot)) return false
        heldUntil = slot.expiresAt
      }
    } else {
      tomb = this.tombstones.get(key)
      if (tomb !== undefined && tomb.expiresAt > now) {
        if (!newer(version, tomb.version)) return false
        heldUntil = tomb.expiresAt
      } else tomb = undefined
    }
    this.writes++
    if (value === undefined) {
      // a tombstone outlives the copy it deletes
      const until = heldUntil > expiresAt ? heldUntil : expiresAt
      if (slot !== undefined) this.removeSlot(slot)
      this.tombstones.delete(key)
      this.tombstones.set(key, given !== undefined && until === given.expiresAt ? given : { value: undefined, version: { ts: version.ts, node: version.node }, expiresAt: until })
      this.boundTombstones()
    } else {
      if (tomb !== undefined) this.tombstones.delete(key)
      this.setValue(key, value, version, expiresAt, slot)
    }
    if (this.onWrite !== undefined) this.onWrite(key, version, value)
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

  /** Live entries, tombstones included, for handoff: values most recently used first, then tombstones. */
  *entries(): IterableIterator<readonly [string, Entry]> {
    const now = this.options.now()
    for (const slot of this.slotsMostRecentFirst()) if (slot.expiresAt > now) yield [slot.key, entryOf(slot)] as const
    for (const [key, entry] of this.tombstones) if (entry.expiresAt > now) yield [key, entry] as const
  }

  /** The value slots, most recently used first, safe against removal of the current one while iterating. */
  private *slotsMostRecentFirst(): IterableIterator<Slot> {
    let slot = this.tail
    while (slot !== undefined) {
      const prev = slot.prev
      yield slot
      slot = prev
    }
  }

  /** Keys of live entries and tombstones, a snapshot. */
  keys(): Array<string> {
    const keys: Array<string> = []
    for (const slot of this.slotsMostRecentFirst()) keys.push(slot.key)
    for (const key of this.tombstones.keys()) keys.push(key)
    return keys
  }

  /** Removes expired entries; returns how many. */
  purgeExpired(): number {
    const now = this.options.now()
    let expired = 0
    for (const slot of this.slotsMostRecentFirst()) {
      if (slot.expiresAt <= now) {
        this.removeSlot(slot, 'expired')
        expired++
      }
    }
    for (const [key, t] of [...this.tombstones]) if (t.expiresAt <= now) this.tombstones.delete(key)
    if (expired > 0) this.compactIfWasteful()
    return expired
  }

  get size(): number {
    return this.index.size + this.tombstones.size
  }

  /** Bytes of the slabs the store holds (live values and garbage not yet compacted) and of the live values in them. */
  slabMemory(): { readonly allocated: number; readonly live: number } {
    return { allocated: this.slabBytes, live: this.slabLive }
  }

  get tombstoneCount(): number {
    return this.tombstones.size
  }

  clear(): void {
    this.index.clear()
    this.head = this.tail = undefined
    this.sizeBytes = 0
    this.slab = undefined
    this.slabBytes = 0
    this.slabLive = 0
    this.tombstones.clear()
  }

  stats(): StoreStats {
    let keys = 0
    let bytes = 0
    const now = this.options.now()
    for (const slot of this.index.values()) {
      if (slot.expiresAt <= now) continue
      keys++
      bytes += Buffer.byteLength(slot.key) + slot.len
    }
    return { hits: this.hits, misses: this.misses, puts: this.puts, deletes: this.deletes, evictions: { ...this.evictions }, keys, bytes }
  }
}

const EMPTY = new Uint8Array(0)
