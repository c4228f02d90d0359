/**
 * What a simulation run records, and what the checker reads: the configuration, every client
 * operation with its invocation and completion times (virtual milliseconds, the `TestClock`'s),
 * every fault, and per-node bucket stats sampled over the run. Plain data, JSON-serialisable:
 * two runs of one seed produce equal histories.
 */

/** A bucket the clients use. `strict` buckets never evict (their limits exceed the workload): promises 1-5 hold there. */
export interface BucketConfig {
  readonly name: string
  readonly ttlMs: number
  readonly maxSize: number
  readonly maxBytes: number
  readonly strict: boolean
  /** A bucket of counters: clients only increment its keys; the checker holds it to P7 instead of P1-P5. */
  readonly counters?: boolean
  /**
   * The bucket's near cache (every node): reads may be answered from a copy up to `ttlMs` old;
   * the checker widens their window by it and holds them to P9.
   */
  readonly near?: { readonly maxSize: number; readonly ttlMs: number; readonly trackedKeys: number }
}

export interface RunConfig {
  readonly seed: number
  /** Members at the start. */
  readonly nodes: number
  readonly replicas: number
  readonly buckets: ReadonlyArray<BucketConfig>
  /** A read is held to promises 1, 2 and 5 only this long after the writes it must see completed. */
  readonly staleMs: number
  /** After a partition, pause, kill, restart, join or leave, reads are not checked for this long. */
  readonly settleMs: number
  /** Kills of R distinct nodes this close together count as R owners failing at once. */
  readonly killWindowMs: number
  /** The locks' clock-skew allowance (`maxClockSkewMs`); absent in histories without locks. */
  readonly lockSkewMs?: number
  /** Owners of each lock record (the locks bucket's replicas, not `replicas`); absent in histories without locks. */
  readonly lockReplicas?: number
  /** The nodes' failure timeout: a clock step larger than it cuts the node off for a moment (P8). */
  readonly failureTimeoutMs?: number
}

export type OpKind = 'put' | 'get' | 'delete' | 'incr' | 'lock'

/** ok: acknowledged write; hit/miss: a read's answer; error: a typed failure; lost: never completed (the node died or the run ended). */
export type OpResult = 'ok' | 'hit' | 'miss' | 'error' | 'lost'

export interface Op {
  readonly id: number
  readonly node: string
  readonly kind: OpKind
  readonly bucket: string
  readonly key: string
  /** Puts: the value's size and content hash. */
  readonly size?: number
  readonly hash?: string
  readonly inv: number
  /** Undefined while pending or when lost. */
  comp?: number
  res?: OpResult
  /** hit: the hash of the value read. */
  got?: string
  /** incr: the delta. */
  readonly delta?: number
  /** incr: the count it answered; a read of a counter: the count read (0 on a miss). */
  count?: number
  /** error: the failure's reason (MycelError reason or defect). */
  err?: string
  /** A read of the final check (after heal and the quiet period). */
  readonly final?: boolean
  /** lock (a `tryAcquire`; `bucket` is the locks' bucket, `key` the lock name): the fencing token granted, as decimal text ('ok'; 'miss' when held by another). */
  token?: string
  /** lock: when the holder's own lease ends (its `remainingMs()` at the grant, from the grant). */
  leaseEnd?: number
  /** lock: when the holder began its release (undefined: it never did, e.g. killed). */
  releasedAt?: number
}

export type FaultKind = 'kill' | 'restart' | 'pause' | 'resume' | 'partition' | 'heal' | 'delay' | 'undelay' | 'join' | 'leave' | 'skew'

export interface Fault {
  readonly at: number
  readonly kind: FaultKind
  readonly nodes: ReadonlyArray<string>
  readonly detail?: string
  /** skew: the node's clock offset from now on (ms). */
  readonly offsetMs?: number
}

export interface Sample {
  readonly at: number
  readonly node: string
  readonly bucket: string
  readonly keys: number
  readonly bytes: number
}

export interface History {
  readonly config: RunConfig
  readonly ops: Array<Op>
  readonly faults: Array<Fault>
  readonly samples: Array<Sample>
  /** When the final heal happened (the quiet period starts). */
  finalHealAt?: number
  /** Each node's member list when the final reads start (diagnostics). */
  views?: Record<string, ReadonlyArray<string>>
}
