/**
 * The near cache, both sides of it.
 *
 * `NearCache` (the reading node): values this node read from another owner, kept for the near
 * TTL in a bounded LRU. A copy is stored only from a read this node started, and only when its
 * version is not older than what this node has seen for the key: an invalidation or a write
 * through this node leaves a *fence* (the version it saw), so a read response that an
 * invalidation overtook, or that an owner lagging behind gave, is not kept. Fences are bounded;
 * when they are dropped (the oldest quarter at once), reads started before them store nothing (`floor`). A membership
 * change clears every copy and raises the floor.
 *
 * `NearReaders` (an owner): which nodes read which key with a `NearGet` (and until when their
 * copies may live), so a write that changes the key here is followed by a `NearUpdate` carrying
 * the new value (values up to `NEAR_UPDATE_MAX_BYTES`: the readers keep their copies and stay
 * remembered) or a `NearInvalidate` (larger values and deletes: they drop them) to them.
 * Bounded per key (`READERS_PER_KEY`) and per bucket (`trackedKeys`): past either, the
 * invalidation of that key (per key) or of every key of the bucket (per bucket, until the
 * dropped readers' copies have expired) goes to every member instead. `trackedKeys` 0 is the
 * broadcast variant: the owner remembers only that someone reads.
 */
import { ChurnMap } from './churn.js'
import { CopyBlocks } from './copies.js'
import { newer, type Version } from './store.js'

/**
 * The largest value an owner sends its near readers in a `NearUpdate`; a larger one is a
 * `NearInvalidate` (the readers read it again if they need it). An update saves the reader a
 * miss and a round trip on a key that is both read and written often; past this size its bytes
 * on the bucket's stream cost more than that.
 */
export const NEAR_UPDATE_MAX_BYTES = 1024

/** True when an owner sends a key written to `value` (undefined: deleted) to its near readers as a `NearUpdate`, keeping them remembered. */
export const sentAsUpdate = (value: Uint8Array | undefined): value is Uint8Array => value !== undefined && value.byteLength <= NEAR_UPDATE_MAX_BYTES

/** Readers remembered per key before the key's invalidations are broadcast. */
export const READERS_PER_KEY = 16

/** Keys whose readers an owner remembers per bucket (default of `nearCache.trackedKeys`). */
export const TRACKED_KEYS = 100_000

export interface NearConfig {
  readonly maxSize: number
  readonly ttlMs: number
  /** Keys whose readers an owner remembers, per bucket; 0: every write is broadcast while anyone reads near. */
  readonly trackedKeys: number
}

interface NearEntry {
  value: Uint8Array
  version: Version
  readonly expiresAt: number
  /** `NearCache.placed` when the entry last went to the LRU's end. */
  placed: number
}

interface Fence {
  /** The newest version seen for the key; undefined: unknown (any read started before `seq` is refused). */
  version: Version | undefined
  seq: number
}

export class NearCache {
  private readonly entries = new ChurnMap<string, NearEntry>()
  private readonly fences = new ChurnMap<string, Fence>()
  private readonly maxFences: number
  /** Counts fences and clears: a read's mark is the count when it started. */
  private seq = 0
  /** Reads marked below this store nothing (a fence they may have missed was dropped, or everything was cleared). */
  private floor = 0
  /** Counts moves to the LRU's end (inserts, and hits on entries far from it). */
  private placed = 0
  /** A hit moves its entry to the LRU's end only when more than this many others went there since it did. */
  private readonly recent: number
  hits = 0
  misses = 0
  /** Copies dropped by an invalidation from an owner. */
  invalidations = 0
  /** Copies given a newer value by an owner's update (`NearUpdate`). */
  updates = 0
  /** Copies dropped for room (LRU) or by a membership change. */
  evictions = 0
  /** Read responses not kept: older than a fence, or the read started before a clear. */
  refused = 0
  /**
   * Where kept values are copied: decoded values of 65 bytes to 1 KiB are views into the codec's
   * shared 8 KiB blocks, which a copy kept for up to its ttl must not keep alive. Carved copies
   * keep at most 16 + maxSize / 16 blocks of 8 KiB alive (half a KiB per entry); past that, a
   * copy gets memory of its own (`copies.ts`).
   */
  private readonly copies: CopyBlocks

  constructor(readonly config: NearConfig) {
    this.maxFences = Math.max(1024, config.maxSize)
    this.recent = config.maxSize >> 3
    this.copies = new CopyBlocks(16 + Math.ceil(config.maxSize / 16))
  }

  /** Blocks that kept copies hold alive (for tests and stats). */
  get pinnedBlocks(): number {
    return this.copies.pinned
  }

  /** `value` kept as it is when it is the whole of its memory, else a copy. */
  private own(value: Uint8Array): Uint8Array {
    return value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? value : this.copies.copy(value)
  }

  /** Drops `key`'s entry `entry`. */
  private drop(key: string, entry: NearEntry): void {
    this.entries.delete(key)
    this.copies.release(entry.value)
  }

  get size(): number {
    return this.entries.size
  }

  /**
   * The copy of `key` if it is there and not expired. A hit moves it to the LRU's end unless it
   * is among the last eighth of `maxSize` that went there (a hot key is hit far more often than
   * that: moving it on every hit costs a Map delete and insert each, and its holes a rehash).
   */
  get(key: string, now: number): Uint8Array | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined) {
      this.misses++
      return undefined
    }
    if (entry.expiresAt <= now) {
      this.drop(key, entry)
      this.misses++
      return undefined
    }
    if (this.placed - entry.placed > this.recent) {
      this.entries.delete(key)
      this.entries.set(key, entry)
      entry.placed = ++this.placed
    }
    this.hits++
    return entry.value
  }

  /** The mark of a read starting now. */
  mark(): number {
    return this.seq
  }

  /**
   * A read marked `mark` found `value` at `version`: kept (until `expiresAt`, by default the near
   * TTL from now) unless a fence or a clear says it may be stale.
   */
  offer(key: string, value: Uint8Array, version: Version, mark: number, now: number, expiresAt = now + this.config.ttlMs): boolean {
    if (mark < this.floor) {
      this.refused++
      return false
    }
    const fence = this.fences.get(key)
    if (fence !== undefined && (fence.version === undefined ? fence.seq > mark : newer(fence.version, version))) {
      this.refused++
      return false
    }
    const held = this.entries.get(key)
    if (held !== undefined) {
      if (newer(held.version, version)) return false
      this.drop(key, held)
    }
    this.entries.set(key, { value: this.own(value), version, expiresAt, placed: ++this.placed })
    if (this.entries.size > this.config.maxSize) {
      // a batch at a time, with one iterator: a Map's iterator walks past the slots its deletions
      // left at the front, so evicting one entry per insert from the front costs O(n) each
      let drop = this.entries.size - this.config.maxSize + Math.floor(this.config.maxSize / 16)
      for (const [oldestKey, oldest] of this.entries) {
        if (drop-- <= 0) break
        this.drop(oldestKey, oldest)
        this.evictions++
      }
    }
    return true
  }

  /**
   * An owner says `key` was written at `version` (undefined: unknown): a copy older than it is
   * dropped, and reads in flight may not keep anything older.
   */
  invalidate(key: string, version: Version | undefined): void {
    const held = this.entries.get(key)
    if (held !== undefined && (version === undefined || newer(version, held.version))) {
      this.drop(key, held)
      this.invalidations++
    }
    this.fence(key, version)
  }

  /**
   * An owner says `key` was written at `version` with `value`: a copy older than it takes the
   * value and keeps its expiry (the owner still counts this node among the key's readers until
   * then); without a copy nothing is kept. Reads in flight may not keep anything older.
   */
  update(key: string, value: Uint8Array, version: Version, now: number): void {
    const held = this.entries.get(key)
    if (held !== undefined && newer(version, held.version)) {
      if (held.expiresAt > now) {
        this.copies.release(held.value)
        held.value = this.own(value)
        held.version = version
        this.updates++
      } else {
        this.drop(key, held)
      }
    }
    this.fence(key, version)
  }

  /**
   * A write through this node (at `version`, when known): its copy goes, and nothing older is kept
   * after. Returns when the copy it dropped would have expired (undefined: there was none).
   */
  written(key: string, version: Version | undefined): number | undefined {
    const held = this.entries.get(key)
    if (held !== undefined) this.drop(key, held)
    this.fence(key, version)
    return held?.expiresAt
  }

  private fence(key: string, version: Version | undefined): void {
    const before = this.fences.get(key)
    this.seq++
    if (before !== undefined) {
      // a known version stays the newest seen; an unknown one refuses what started before it.
      // Changed in place: the fence keeps its place in the order they are dropped in, so it may
      // go before fences older than its seq, which only raises the floor sooner (reads begun
      // before it keep nothing), never lets a stale answer in
      before.version = version === undefined ? undefined : before.version !== undefined && newer(before.version, version) ? before.version : version
      before.seq = this.seq
      return
    }
    this.fences.set(key, { version, seq: this.seq })
    if (this.fences.size > this.maxFences) {
      // the oldest quarter at once (one iterator; see `offer`)
      let drop = this.fences.size - this.maxFences + Math.floor(this.maxFences / 4)
      for (const [oldestKey, oldest] of this.fences) {
        if (drop-- <= 0) break
        this.fences.delete(oldestKey)
        if (oldest.seq > this.floor) this.floor = oldest.seq
      }
    }
  }

  /** Drops every copy (a membership change: owners may have changed); reads in flight keep nothing. */
  clear(): void {
    this.evictions += this.entries.size
    this.entries.clear()
    this.copies.clear()
    this.fences.clear()
    this.seq++
    this.floor = this.seq
  }
}

/**
 * A key's readers: two short parallel arrays rather than a `Map` per key (a key has one or a few
 * readers, at most `READERS_PER_KEY`; a record is made on every first read of a key in a while).
 */
interface ReaderRecord {
  /** The readers; null: too many readers, invalidations are broadcast. */
  nodes: Array<string> | null
  /** When each reader's copy expires at the latest (same index as `nodes`). */
  untils: Array<number>
  /** When the last copy read from here expires. */
  until: number
}

/** Where an invalidation goes. */
export type InvalidationTargets = 'all' | ReadonlyArray<string> | undefined

export class NearReaders {
  private readonly records = new ChurnMap<string, ReaderRecord>()
  /** Until then every write of the bucket is broadcast: readers of some key were forgotten for room. */
  private broadcastUntil = -Infinity
  /** Invalidations sent (one per reader, or per member when broadcast). */
  sent = 0
  /** Writes whose invalidation was broadcast to every member. */
  broadcasts = 0

  constructor(private readonly trackedKeys: () => number) {}

  get size(): number {
    return this.records.size
  }

  /** `node` read `key` here and may keep a copy for `ttlMs`. */
  register(key: string, node: string, ttlMs: number, now: number): void {
    const until = now + ttlMs
    const limit = this.trackedKeys()
    if (limit <= 0) {
      if (until > this.broadcastUntil) this.broadcastUntil = until
      return
    }
    let record = this.records.get(key)
    if (record === undefined) {
      if (this.records.size >= limit) {
        // the oldest sixteenth at once (one iterator; see `NearCache.offer`)
        let drop = this.records.size - limit + 1 + Math.floor(limit / 16)
        for (const [oldestKey, oldest] of this.records) {
          if (drop-- <= 0) break
          this.records.delete(oldestKey)
          if (oldest.until > now && oldest.until > this.broadcastUntil) this.broadcastUntil = oldest.until
        }
      }
      record = { nodes: [node], untils: [until], until }
      this.records.set(key, record)
      return
    }
    if (until > record.until) record.until = until
    const nodes = record.nodes
    if (nodes === null) return
    const i = nodes.indexOf(node)
    if (i >= 0) record.untils[i] = until
    else if (nodes.length >= READERS_PER_KEY) record.nodes = null
    else {
      nodes.push(node)
      record.untils.push(until)
    }
  }

  /**
   * `key` changed here: who must hear of it. With `keep` false (they are told to drop their copy)
   * the record is forgotten: its readers register again when they read again. With `keep` true
   * (they are sent the new value and keep their copy until it expires) the readers named stay
   * remembered; a broadcast (`'all'`) is always an invalidation, and forgets the record.
   */
  written(key: string, now: number, keep = false): InvalidationTargets {
    const record = this.records.get(key)
    if (now < this.broadcastUntil || (record !== undefined && record.nodes === null && record.until > now)) {
      if (record !== undefined) this.records.delete(key)
      this.broadcasts++
      return 'all'
    }
    if (record === undefined) return undefined
    if (record.nodes === null || record.until <= now) {
      this.records.delete(key)
      return undefined
    }
    const out: Array<string> = []
    const { nodes, untils } = record
    // with `keep`, the readers whose copies expired are dropped, the others keep their order
    let kept = 0
    for (let i = 0; i < nodes.length; i++) {
      if (untils[i]! <= now) continue
      out.push(nodes[i]!)
      nodes[kept] = nodes[i]!
      untils[kept] = untils[i]!
      kept++
    }
    if (!keep || out.length === 0) this.records.delete(key)
    else if (kept !== nodes.length) {
      nodes.length = kept
      untils.length = kept
    }
    return out.length === 0 ? undefined : out
  }

  /** True when no write of the bucket can need an invalidation (the common case, checked first). */
  idle(now: number): boolean {
    return this.records.size === 0 && now >= this.broadcastUntil
  }
}
