/**
 * Anti-entropy between the owners of a key (promise 4): two nodes that both own keys of a
 * bucket compare what they hold and hand each other what the other lacks or holds older.
 *
 * A round (1 s after every membership change, and every `syncIntervalMs` otherwise) sends each
 * peer whose id sorts after this node's (one side of each pair starts; the exchange runs both
 * ways), per bucket, a `SyncDigest`: for each of SYNC_RANGES key ranges (by the key's hash), the
 * sum of a hash of (key, version) over the keys both nodes own in this node's view, tombstones
 * included. The peer computes the same sums; for each range that differs it answers
 * `SyncVersions` (reply) with the version of every such key it holds there, whole ranges only,
 * at most SYNC_VERSIONS_BYTES per message (the ranges that do not fit wait for the next round).
 * The first node queues for handoff every key of those ranges it holds newer or the peer lacks,
 * and when it holds something older or lacks a key, answers with its own versions of those ranges
 * (no reply): the peer then queues what it holds newer. Handoff (`rebalance.ts`) carries the
 * entries, acknowledged and merged by version, so a copy pushed twice costs bytes, not
 * correctness.
 *
 * Nothing of this runs per get or put: a round is one pass over the bucket's entries with one
 * owner lookup each, and messages of bounded size. A periodic round leaves out a bucket written
 * since the previous round: while writes flow, owners differ by what is in flight, a digest
 * would always differ and the exchange would move copies that replication is already moving.
 * Promise 4 holds once writes stop, and the rounds after membership changes (when copies go
 * missing) run whatever the writes.
 */
import { CacheMessage } from '@mycorrizal/wire'
import type { BucketState } from './bucket.js'
import type { Host as Engine } from './host.js'
import { FNV_OFFSET, fnv1a, keyHash, mix } from './placement.js'
import { newer, type Version } from './store.js'

/** Key ranges of a digest (a power of two). */
export const SYNC_RANGES = 64
const RANGE_SHIFT = 32 - Math.log2(SYNC_RANGES)
/** Bytes of versions per SyncVersions at most (whole ranges; one range always goes, up to the maximum message size). */
export const SYNC_VERSIONS_BYTES = 256 * 1024

const TWO_32 = 2 ** 32

export const rangeOf = (bucket: string, key: string): number => keyHash(bucket, key) >>> RANGE_SHIFT

/** A hash of (key, version): equal on two nodes exactly when they hold the same version. */
export const versionHash = (key: string, v: Version): number => {
  let h = fnv1a(key, FNV_OFFSET)
  h = mix(h ^ (v.ts >>> 0))
  h = mix(h ^ Math.floor(v.ts / TWO_32))
  return mix(h ^ fnv1a(v.node, FNV_OFFSET))
}

export class AntiEntropy {
  /** When the next round is due. */
  private due = Infinity
  /** Whether the round due is the one after a membership change (it runs whatever the writes). */
  private forced = false
  /** Each bucket's write count at the previous round. */
  private readonly writesSeen = new Map<string, number>()
  /** Rounds run, digests that differed, keys queued for a peer by anti-entropy (for tests and stats). */
  rounds = 0
  /** Buckets a periodic round left out because they were being written. */
  skipped = 0
  differing = 0
  pushed = 0

  constructor(private readonly e: Engine) {}

  /** A round at `at`, unless one is due sooner; `forced` when every bucket takes part. */
  schedule(at: number, forced = false): void {
    if (forced) this.forced = true
    if (at >= this.due) return
    this.due = at
    this.e.later(at, () => {
      if (this.due !== at) return
      this.due = Infinity
      const all = this.forced
      this.forced = false
      this.round(all)
    })
  }

  membershipChanged(): void {
    this.schedule(this.e.now + this.e.options.syncDelayMs, true)
  }

  /**
   * Sends every peer, per bucket with more than one copy per key, the digest of the keys both
   * own; `all` false (a periodic round) leaves out the buckets written since the previous round.
   */
  round(all = true): void {
    const e = this.e
    if (e.closed) return
    this.rounds++
    if (!e.departing && e.members.length > 1) {
      for (const bucket of e.buckets.values()) {
        if (bucket.config.replicas < 2) continue
        const writes = bucket.store.writes
        const quiet = this.writesSeen.get(bucket.name) === writes
        this.writesSeen.set(bucket.name, writes)
        if (!all && !quiet) {
          this.skipped++
          continue
        }
        const digests = this.digests(bucket)
        // one side of each pair starts the exchange (it runs both ways): the one whose id sorts first
        for (const peer of e.members) {
          if (peer <= e.self) continue
          const sums = digests.get(peer)
          e.send(bucket.name, peer, { _tag: 'SyncDigest', sums: sums === undefined ? EMPTY_SUMS : Array.from(sums) })
        }
      }
    }
    this.schedule(e.now + e.options.syncIntervalMs)
  }

  /** Per peer, the range sums of the keys this node holds and owns with that peer. */
  private digests(bucket: BucketState, only?: string): Map<string, Uint32Array> {
    const e = this.e
    const out = new Map<string, Uint32Array>()
    for (const [key, entry] of bucket.store.entries()) {
      const owners = e.placement.owners(bucket.name, key, bucket.config.replicas)
      if (!owners.includes(e.self)) continue
      let h: number | undefined
      for (const peer of owners) {
        if (peer === e.self || (only !== undefined && peer !== only)) continue
        h ??= versionHash(key, entry.version)
        let sums = out.get(peer)
        if (sums === undefined) out.set(peer, (sums = new Uint32Array(SYNC_RANGES)))
        const r = rangeOf(bucket.name, key)
        sums[r] = (sums[r]! + h) >>> 0
      }
    }
    return out
  }

  private sharedWith(bucket: BucketState, key: string, peer: string): boolean {
    const owners = this.e.placement.owners(bucket.name, key, bucket.config.replicas)
    return owners.includes(this.e.self) && owners.includes(peer)
  }

  onDigest(bucket: BucketState, from: string, message: CacheMessage.SyncDigest): void {
    const e = this.e
    if (from === e.self || !e.members.includes(from) || e.departing) return
    const mine = this.digests(bucket, from).get(from) ?? EMPTY
    const differ: Array<number> = []
    for (let r = 0; r < SYNC_RANGES; r++) if ((message.sums[r] ?? 0) !== mine[r]) differ.push(r)
    if (differ.length === 0) return
    this.differing++
    this.sendVersions(bucket, from, differ, true)
  }

  /** The versions of every key in `ranges` this node holds and owns with `peer`, whole ranges, bounded in bytes. */
  private sendVersions(bucket: BucketState, peer: string, ranges: ReadonlyArray<number>, reply: boolean): void {
    const e = this.e
    const wanted = new Set(ranges)
    const byRange = new Map<number, Array<CacheMessage.SyncVersion>>()
    for (const [key, entry] of bucket.store.entries()) {
      const r = rangeOf(bucket.name, key)
      if (!wanted.has(r) || !this.sharedWith(bucket, key, peer)) continue
      let list = byRange.get(r)
      if (list === undefined) byRange.set(r, (list = []))
      list.push({ key, ts: entry.version.ts, node: entry.version.node })
    }
    const limit = Math.min(SYNC_VERSIONS_BYTES, e.options.maxMessageSize)
    const sent: Array<number> = []
    const entries: Array<CacheMessage.SyncVersion> = []
    let bytes = CacheMessage.syncVersionsOverhead
    for (const r of ranges) {
      const list = byRange.get(r) ?? []
      let size = 2
      for (const v of list) size += CacheMessage.syncVersionSize(v.key, v.node)
      const cap = sent.length === 0 ? e.options.maxMessageSize : limit
      if (bytes + size > cap) {
        if (sent.length === 0) continue
        break
      }
      sent.push(r)
      for (const v of list) entries.push(v)
      bytes += size
    }
    if (sent.length === 0 || e.overBudget(peer, bytes)) return
    e.send(bucket.name, peer, { _tag: 'SyncVersions', reply, ranges: sent, entries })
  }

  onVersions(bucket: BucketState, from: string, message: CacheMessage.SyncVersions): void {
    const e = this.e
    if (from === e.self || !e.members.includes(from) || e.departing) return
    const theirs = new Map<string, Version>()
    for (const v of message.entries) if (e.validTs(v.ts)) theirs.set(v.key, { ts: v.ts, node: v.node })
    const ranges = new Set(message.ranges)
    let behind = false
    for (const [key, entry] of bucket.store.entries()) {
      if (!ranges.has(rangeOf(bucket.name, key)) || !this.sharedWith(bucket, key, from)) continue
      const t = theirs.get(key)
      theirs.delete(key)
      if (t === undefined || newer(entry.version, t)) {
        e.rebalance.push(from, bucket.name, key)
        this.pushed++
      } else if (newer(t, entry.version)) behind = true
    }
    // keys the peer holds that this node does not (and owns with it)
    if (!behind) for (const key of theirs.keys()) if (this.sharedWith(bucket, key, from)) behind = true
    if (behind && message.reply) this.sendVersions(bucket, from, message.ranges, false)
    e.rebalance.pump()
  }

  /** Nothing is due after close. */
  close(): void {
    this.due = Infinity
  }
}

const EMPTY = new Uint32Array(SYNC_RANGES)
const EMPTY_SUMS: ReadonlyArray<number> = Array.from(EMPTY)
