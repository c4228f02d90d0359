/**
 * What the engine's rules share: the engine's options and outputs, the state of the operations
 * in flight (writes, handoff batches, the request table's entries), and `Host`, the surface of
 * the engine that `reads.ts`, `writes.ts`, `rebalance.ts` and `antientropy.ts` use. Those
 * modules depend on this one, never on `engine.ts`, which puts them together.
 */
import type { CacheMessage } from '@mycorrizal/wire'
import { MycelError } from '../MycelError.js'
import type { AtomicExec } from './atomic.js'
import type { BucketState, ReadOp } from './bucket.js'
import type { ChurnMap } from './churn.js'
import type { Placement } from './placement.js'
import type { RequestBase, RequestTable } from './requests.js'
import type { Version } from './store.js'

export type LogLevel = 'Debug' | 'Info' | 'Warning' | 'Error'

/** One output of the engine. */
export type Output =
  | { readonly _tag: 'Send'; readonly bucket: string; readonly to: string; readonly message: CacheMessage.CacheMessage }
  | { readonly _tag: 'Done'; readonly op: number; readonly value: Uint8Array | undefined }
  /** An atomic operation's answer: increment's count, or whether putIfAbsent / compareAndSet stored. */
  | { readonly _tag: 'Result'; readonly op: number; readonly result: number | boolean }
  | { readonly _tag: 'Fail'; readonly op: number; readonly error: MycelError }
  | { readonly _tag: 'Log'; readonly level: LogLevel; readonly message: string; readonly annotations: Record<string, unknown> }

export interface EngineOptions {
  readonly self: string
  readonly maxMessageSize: number
  /** How long a request waits for its answer (ms). */
  readonly requestTimeoutMs: number
  /** After joining, how long to wait for peers' handoffs before calling the node ready anyway (ms). */
  readonly readyTimeoutMs: number
  /** A node that still sees no peers after this long (ms) is alone and ready. */
  readonly settleMs: number
  /** After a membership change, local misses at an owner are checked with the other owners for this long (ms). */
  readonly rebalanceWindowMs: number
  /** Entries per handoff batch at most. */
  readonly handoffBatch: number
  /** Bytes per handoff batch at most (capped by the maximum message size). */
  readonly handoffBatchBytes: number
  /** Bytes in flight to one peer at most. */
  readonly maxPeerBytes: number
  /** Versions further ahead of this node's clock are refused (ms). */
  readonly maxClockAheadMs: number
  /** Anti-entropy: a round every this long (ms). */
  readonly syncIntervalMs: number
  /** Anti-entropy: a round this long (ms) after every membership change. */
  readonly syncDelayMs: number
  readonly firstRequestId?: number
}

/** A request waiting for its answer. */
export type Request = RequestBase &
  (
    | { readonly kind: 'write'; readonly write: WriteOp; readonly generation: number; readonly needed: boolean }
    | { readonly kind: 'get'; readonly read: ReadOp; readonly generation: number }
    | { readonly kind: 'handoff'; readonly batch: HandoffBatchState }
    | { readonly kind: 'atomic'; readonly exec: AtomicExec; readonly generation: number; readonly needed: boolean }
    | { readonly kind: 'atomic-fetch'; readonly bucket: BucketState; readonly key: string }
  )

/** How a request ended without a regular answer. */
export type NoAnswer = 'timeout' | 'gone' | 'notFound'

/** An operation that completes later, through `out`. */
export const PENDING: unique symbol = Symbol('PENDING')
export type Pending = typeof PENDING

/**
 * The `HandoffDone` epoch by which a node announces its graceful leave (ahead of its handoff
 * batches, on every bucket's stream). An older node takes it for an ordinary HandoffDone.
 */
export const LEAVING_EPOCH = 0xffffffff

/** Version timestamps are integers: milliseconds times this, plus a logical counter. */
export const TS_PER_MS = 1000

export interface WriteOp {
  readonly op: number
  readonly bucket: BucketState
  readonly key: string
  /** undefined: a delete. */
  readonly value: Uint8Array | undefined
  readonly ttlMs: number | undefined
  version: Version | undefined
  /** Sends so far; answers to an earlier one are stale. */
  generation: number
  goneAttempts: number
  rewrites: number
  /** Acknowledgements still awaited for this generation. */
  waiting: number
  readonly startedAt: number
  /**
   * The owner whose `AckOlder` this write was last written again above, and the engine's
   * `viewChanges` then (undefined: none yet). See `onWriteAnswer`.
   */
  beatenBy: string | undefined
  beatenInView: number
  /** True when some owner other than this node is asked: the latency is recorded. */
  remote: boolean
  done: boolean
  /**
   * The near copy this write dropped: when it would have expired and the near cache's mark just
   * after (undefined: there was none). A put of a small value puts its own value back until then.
   */
  nearCopy: { readonly until: number; readonly mark: number } | undefined
}

export interface HandoffBatchState {
  readonly bucket: string
  readonly entries: ReadonlyArray<{ readonly key: string; readonly version: Version }>
}

/** The rebalance as the other rules use it. */
export interface RebalanceHost {
  /** Queues `key` for `peer`; ownership is checked again when its batch is built. */
  push(peer: string, bucket: string, key: string): void
  /** Sends what is queued. */
  pump(): void
}

/** The engine as its rules see it. */
export interface Host {
  readonly self: string
  /** The engine's time (ms since epoch); it never goes back. */
  readonly now: number
  readonly options: EngineOptions
  readonly closed: boolean
  /** A graceful leave is under way. */
  readonly departing: boolean
  readonly members: ReadonlyArray<string>
  readonly buckets: ReadonlyMap<string, BucketState>
  readonly requests: RequestTable<Request>
  readonly placement: Placement
  /** The writes under way, each mapped to itself. */
  readonly activeWrites: ChurnMap<WriteOp, WriteOp>
  readonly rebalance: RebalanceHost
  send(bucket: string, to: string, message: CacheMessage.CacheMessage): void
  done(op: number, value: Uint8Array | undefined): void
  result(op: number, result: number | boolean): void
  fail(op: number, error: MycelError): void
  log(level: LogLevel, message: string, annotations?: Record<string, unknown>): void
  /** Runs `run` at the first tick at or after `at`. */
  later(at: number, run: () => void): void
  /** A version timestamp after everything this node has seen, and at least `atLeast`. */
  nextTs(atLeast?: number): number
  observe(ts: number): void
  validTs(ts: number): boolean
  overBudget(peer: string, bytes: number): boolean
  overloaded(bucket: BucketState, peer: string): MycelError
  bucket(name: string): BucketState | MycelError
  /** True while keys may still be on their way to new owners. */
  rebalancing(): boolean
  /** Changes of the member set this engine has seen (its view's number). */
  readonly viewChanges: number
}

export const closedError = () => new MycelError({ reason: 'Closed', message: 'the cache is shutting down' })
