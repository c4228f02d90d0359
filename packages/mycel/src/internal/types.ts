/**
 * The cache's public data types, kept apart from the contract module so the engine can use them
 * without importing it.
 */
import type * as Duration from 'effect/Duration'

/** Per-bucket options beyond TTL and size. */
export interface BucketOptions {
  /** Copies of each key (default 2). */
  readonly replicas?: number
  /** A byte limit besides the entry limit (0 = none). */
  readonly maxBytes?: number
  /** A put resolves when the primary has it ('primary', default) or every owner ('all'). */
  readonly writeConcern?: 'primary' | 'all'
  /**
   * Keep values this node read from other owners (off by default; see "Near cache" in the
   * README): a later get of the key is answered here until a write anywhere invalidates it, or
   * `ttlMs` passes, whichever comes first.
   */
  readonly nearCache?: NearCacheOptions
}

/** The near cache of a bucket on this node. */
export interface NearCacheOptions {
  /** Copies kept at most (least recently used dropped first), from 1 to 100,000,000. */
  readonly maxSize: number
  /** How long a copy is kept at most (ms, from 1 to 86,400,000): the bound on staleness when an invalidation is lost. */
  readonly ttlMs: number
  /**
   * As an owner: keys whose near readers this node remembers for the bucket (default 100,000,
   * at most 10,000,000). Past it, writes of the bucket are invalidated on every member until the
   * forgotten readers' copies expired; 0 always does so (invalidation by broadcast).
   */
  readonly trackedKeys?: number
}

/** Near-cache counters of a bucket on this node. */
export interface NearCacheStats {
  /** Gets answered from a near copy. */
  readonly hits: number
  /** Gets of keys this node does not own that found no near copy (asked of an owner). */
  readonly misses: number
  /** Near copies dropped because an owner said the key was written. */
  readonly invalidations: number
  /** Near copies given the new value by an owner that wrote the key (`NearUpdate`), kept instead of dropped. */
  readonly updates: number
  /** Near copies dropped for room or by a membership change. */
  readonly evictions: number
  /** Read answers not kept: older than a version this node was told of, or read across a membership change. */
  readonly refused: number
  /** Near copies held. */
  readonly entries: number
  readonly maxSize: number
  readonly ttlMs: number
  /** As an owner: invalidations and updates sent to readers (one per reader; per member when broadcast). */
  readonly invalidationsSent: number
  /** As an owner: writes whose invalidation went to every member. */
  readonly broadcasts: number
  /** As an owner: keys whose readers are remembered. */
  readonly trackedKeys: number
}

/** Cumulative latency counts since the bucket was created, Prometheus-style. */
export interface LatencyHistogram {
  /** Upper bounds of the buckets in microseconds, ascending. */
  readonly boundsUs: ReadonlyArray<number>
  /** Observations at or below each bound (the same length as `boundsUs`). */
  readonly cumulativeCounts: ReadonlyArray<number>
  readonly sumUs: number
  /** Every observation, including those above the last bound. */
  readonly count: number
}

/** Counters of one bucket on this node. */
export interface BucketStats {
  readonly hits: number
  readonly misses: number
  readonly puts: number
  readonly deletes: number
  readonly evictions: Readonly<Record<string, number>>
  readonly keys: number
  readonly bytes: number
  readonly remoteGets: number
  /** Latency of gets answered by another node, from asking to the answer. */
  readonly remoteGetLatency: LatencyHistogram
  /** Latency of puts and deletes that waited for another node's acknowledgement. */
  readonly remoteWriteLatency: LatencyHistogram
  readonly timeouts: number
  /** Entries sent to new owners and acknowledged by them, and received from others, by rebalancing. */
  readonly handedOff: number
  readonly received: number
  /** Handoff batches that failed (not acknowledged in time, or not sent); their entries are sent again. */
  readonly handoffFailures: number
  /** Versions from peers refused: not a finite integer, or too far ahead of this node's clock. */
  readonly refused: number
  /** Operations failed with Overloaded, and answers not sent, because a peer's byte budget was full. */
  readonly overloaded: number
  /** Writes that lost to a newer version on an owner and were written again above it. */
  readonly rewrites: number
  /** Atomic operations (putIfAbsent, compareAndSet, increment) applied on this node as their key's primary. */
  readonly atomics: number
  /** Retried atomic operations answered with the recorded result instead of being applied again. */
  readonly atomicReplays: number
  /** Increments started on this node that went to their key's primary as one operation with others of the same key started in the same turn. */
  readonly incrementsGathered: number
  /** Tombstones held (deleted keys remembered until every copy of what they deleted expired). */
  readonly tombstones: number
  readonly replicas: number
  readonly ttlMs: number
  readonly maxSize: number
  /** The near cache's counters, when the bucket has one on this node. */
  readonly near?: NearCacheStats
}

/** Options of the cache service. */
export interface MycelOptions {
  /** How long a remote read, acknowledged write or handoff batch waits for one owner (default 2 s). */
  readonly requestTimeout?: Duration.DurationInput
  /** After joining, how long to wait for peers' handoffs before calling the node ready anyway (default 10 s). */
  readonly readyTimeout?: Duration.DurationInput
  /** Entries per handoff batch at most (default 256). */
  readonly handoffBatch?: number
  /** Bytes per handoff batch at most (default 1 MiB; never more than the maximum message size). */
  readonly handoffBatchBytes?: number
  /**
   * Bytes in flight to one peer at most (default 32 MiB): requests awaiting its answer and
   * messages waiting for its stream buffer. Past it, an operation that needs the peer fails at
   * once with `Overloaded`.
   */
  readonly maxPeerBytes?: number
  /** Versions from peers further ahead of this node's clock are refused (default 1 hour). */
  readonly maxClockAhead?: Duration.DurationInput
  /**
   * At shutdown (a graceful leave) how long at most to wait until the owners after this node
   * acknowledged every key it holds (default 10 s; 0 = do not wait).
   */
  readonly leaveTimeout?: Duration.DurationInput
  /**
   * Anti-entropy between the owners of each key: how often each node compares what it holds
   * with every co-owner and hands over what the other lacks (default 5 s; a round also runs 1 s
   * after every membership change). A periodic round leaves out a bucket written since the
   * previous one (owners then differ by what is in flight); it repairs once writes pause. A round
   * scans the bucket's entries up to four times (about 1-5 us per key).
   */
  readonly antiEntropyInterval?: Duration.DurationInput
  /** The first request id (default 1); ids wrap after 2^32 - 1. For tests. */
  readonly firstRequestId?: number
}
