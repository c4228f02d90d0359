/**
 * One bucket on this node: its configuration, its store and its counters. Plain state, read
 * and changed by the engine's modules.
 */
import { ChurnMap } from './churn.js'
import { LatencyHistogram } from './latency.js'
import { NearCache, type NearConfig, NearReaders, TRACKED_KEYS } from './near.js'
import { OpLog } from './oplog.js'
import { BucketStore } from './store.js'
import type { BucketStats } from './types.js'
import type { MycelError } from '../MycelError.js'
import type { Version } from './store.js'

export interface BucketConfig {
  readonly ttlMs: number
  readonly maxSize: number
  readonly replicas: number
  readonly maxBytes: number
  readonly writeConcern: 'primary' | 'all'
  /** The near cache of this bucket on this node, if on. */
  readonly nearCache?: NearConfig | undefined
}

export class BucketState {
  readonly store: BucketStore
  remoteGets = 0
  readonly remoteGetLatency = new LatencyHistogram()
  readonly remoteWriteLatency = new LatencyHistogram()
  handedOff = 0
  handoffFailures = 0
  received = 0
  timeouts = 0
  refused = 0
  overloaded = 0
  rewrites = 0
  /** Peers that have sent HandoffDone since this node joined. */
  readonly handoffFrom = new Set<string>()
  /** Remote gets in flight by key: concurrent gets of one key share one request. */
  readonly gets = new ChurnMap<string, ReadOp>()
  /** Atomic operations applied to keys (ids and results), so a retry is answered, not applied again. */
  readonly records: OpLog
  /** Keys this node, as their primary, fetched from the other owners since the last membership change. */
  readonly fetched = new Set<string>()
  /** Atomic operations applied here as the primary, and retries answered from their records. */
  atomics = 0
  atomicReplays = 0
  /** Increments started here that went to their primary together with others of the same key (one operation for several). */
  incrementsGathered = 0
  /** Values read from other owners (when the bucket's near cache is on). */
  readonly near: NearCache | undefined
  /** As an owner: the nodes that keep near copies of keys read here. */
  readonly readers: NearReaders

  constructor(
    readonly name: string,
    readonly config: BucketConfig,
    now: () => number,
    /** How long the records of atomic operations are kept (ms): longer than a caller retries. */
    recordRetainMs = 60_000
  ) {
    this.records = new OpLog(recordRetainMs, now)
    this.store = new BucketStore({ maxEntries: config.maxSize, maxBytes: config.maxBytes > 0 ? config.maxBytes : undefined, defaultTtlMs: config.ttlMs, now })
    this.near = config.nearCache === undefined ? undefined : new NearCache(config.nearCache)
    this.readers = new NearReaders(() => config.nearCache?.trackedKeys ?? TRACKED_KEYS)
  }

  /**
   * A write of `key` through this node begins: a get started from now on must not share a read
   * begun before it (that read's answer may be older than the write, and this node's own
   * acknowledged write must be visible to its later gets). The read in flight leaves `gets`; it
   * still answers the gets that joined it, which began before the write.
   */
  writeBegins(key: string): void {
    this.gets.delete(key)
  }

  stats(): BucketStats {
    const s = this.store.stats()
    return {
      ...s,
      remoteGets: this.remoteGets,
      remoteGetLatency: this.remoteGetLatency.snapshot(),
      remoteWriteLatency: this.remoteWriteLatency.snapshot(),
      timeouts: this.timeouts,
      handedOff: this.handedOff,
      received: this.received,
      handoffFailures: this.handoffFailures,
      refused: this.refused,
      overloaded: this.overloaded,
      rewrites: this.rewrites,
      atomics: this.atomics,
      atomicReplays: this.atomicReplays,
      incrementsGathered: this.incrementsGathered,
      tombstones: this.store.tombstoneCount,
      replicas: this.config.replicas,
      ttlMs: this.config.ttlMs,
      maxSize: this.config.maxSize,
      ...(this.near === undefined
        ? {}
        : {
            near: {
              hits: this.near.hits,
              misses: this.near.misses,
              invalidations: this.near.invalidations,
              updates: this.near.updates,
              evictions: this.near.evictions,
              refused: this.near.refused,
              entries: this.near.size,
              maxSize: this.near.config.maxSize,
              ttlMs: this.near.config.ttlMs,
              invalidationsSent: this.readers.sent,
              broadcasts: this.readers.broadcasts,
              trackedKeys: this.readers.size
            }
          })
    }
  }
}

/** A remote read in flight (shared by the gets of one key). */
export interface ReadOp {
  readonly bucket: BucketState
  readonly key: string
  owners: ReadonlyArray<string>
  index: number
  attempt: number
  gone: number
  generation: number
  lastError: MycelError | undefined
  /** The newest tombstone an owner reported (or this node holds): an older value found elsewhere is not returned. */
  deleted: Version | undefined
  /** Operations waiting for this read. */
  readonly ops: Array<number>
  readonly startedAt: number
  /** The near cache's mark when this read started (`NearCache.mark`), or -1: the answer is not kept as a near copy. */
  readonly nearMark: number
}
