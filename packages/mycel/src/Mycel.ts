/**
 * Mycel, the distributed cache: buckets with a TTL and an LRU size limit, keys placed on the
 * top-R alive nodes by rendezvous hashing of (bucket, key), replicated, rebalanced when
 * members come and go. Each bucket uses its own stream `bucket:<name>` of the `SYSTEM-MYCEL`
 * application, so a busy bucket never delays another.
 *
 * Every node of a service creates the buckets it uses. A get is served locally when this node
 * owns the key, else asked of the primary (then the next replica) with a request id and a
 * timeout; concurrent gets of one remote key share one request. Writes are versioned by
 * (timestamp, node id): last write wins, deletes leave a tombstone until their TTL.
 *
 * @since 0.1.0
 */
import { Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Context, Duration, Effect, FiberSet, Layer, Stream } from 'effect'
import { Cache, type CacheOptions } from './internal/cache.js'
import { MycelError } from './MycelError.js'

/** Application id of the cache. */
export const APP_ID = 'SYSTEM-MYCEL'

/** Per-bucket options beyond TTL and size. */
export interface BucketOptions {
  /** Copies of each key (default 2). */
  readonly replicas?: number
  /** A byte limit besides the entry limit (0 = none). */
  readonly maxBytes?: number
  /** A put resolves when the primary has it ('primary', default) or every owner ('all'). */
  readonly writeConcern?: 'primary' | 'all'
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
  /** Entries sent to new owners, and received from others, by rebalancing. */
  readonly handedOff: number
  readonly received: number
  readonly replicas: number
  readonly ttlMs: number
  readonly maxSize: number
}

/** The cache of this node. */
export class Mycel extends Context.Tag('@mycorrizal/mycel/Mycel')<
  Mycel,
  {
    readonly createBucket: (name: string, ttl: Duration.DurationInput, maxSize: number, options?: BucketOptions) => Effect.Effect<void, MycelError>
    readonly deleteBucket: (name: string) => Effect.Effect<void, MycelError>
    /** Stores on every owner; resolves when the primary (or every owner) has it. */
    readonly put: (bucket: string, key: string, value: Uint8Array, ttl?: Duration.DurationInput) => Effect.Effect<void, MycelError>
    /** The value, or undefined on a miss. */
    readonly get: (bucket: string, key: string) => Effect.Effect<Uint8Array | undefined, MycelError>
    readonly delete: (bucket: string, key: string) => Effect.Effect<void, MycelError>
    readonly stats: (bucket: string) => BucketStats | undefined
    readonly buckets: () => ReadonlyArray<string>
    /** True once a joining node has received its keys from the others (or waited long enough). */
    readonly ready: () => boolean
  }
>() {}

/** Options of the cache service. */
export interface MycelOptions {
  readonly requestTimeout?: Duration.DurationInput
  readonly readyTimeout?: Duration.DurationInput
  readonly handoffBatch?: number
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/

/** Builds the cache over the node's `Nodosum` and `Streams`. */
export const make = (options: MycelOptions = {}) =>
  Effect.gen(function* () {
    const nodosum = yield* Nodosum.Nodosum
    const streams = yield* Streams.Streams
    // a node that lacks a bucket refuses its stream after 1 s (buckets are created at start-up,
    // within that time on every node), so a request to it fails with BucketNotFound before its timeout
    const app = yield* streams.registerApplicationWithConfig({ id: APP_ID, maxStreams: 1_000, streamBufferSize: 1_000, unknownStreamGraceMs: 1_000 })
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const cacheOptions: CacheOptions = {
      requestTimeoutMs: Duration.toMillis(Duration.decode(options.requestTimeout ?? '2 seconds')),
      readyTimeoutMs: Duration.toMillis(Duration.decode(options.readyTimeout ?? '10 seconds')),
      handoffBatch: options.handoffBatch ?? 256,
      settleMs: 1_000,
      rebalanceWindowMs: 10_000
    }
    const fibers = yield* FiberSet.make<void>()
    const runInScope = yield* FiberSet.runtime(fibers)<never>()
    const cache = new Cache(nodosum, app, runtime, () => clock.unsafeCurrentTimeMillis(), cacheOptions, (effect) => {
      runInScope(effect)
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => cache.close()))
    yield* nodosum.events.pipe(
      Stream.runForEach(() => cache.membershipChanged()),
      Effect.forkScoped
    )
    const ttlOf = (ttl: Duration.DurationInput | undefined, field: string): Effect.Effect<number | undefined, MycelError> => {
      if (ttl === undefined) return Effect.succeed(undefined)
      const d = Duration.decodeUnknown(ttl)
      if (d._tag === 'None' || Duration.toMillis(d.value) < 1 || Duration.toMillis(d.value) > 0xffffffff) {
        return Effect.fail(new MycelError({ reason: 'InvalidBucket', message: `${field} must be a duration from 1 ms to 49 days` }))
      }
      return Effect.succeed(Math.round(Duration.toMillis(d.value)))
    }
    return Mycel.of({
      createBucket: (name, ttl, maxSize, bucketOptions = {}) =>
        Effect.gen(function* () {
          if (!NAME.test(name)) {
            return yield* new MycelError({ reason: 'InvalidBucket', message: 'a bucket name is 1-100 letters, digits, ".", "_", ":" or "-", starting with a letter or digit' })
          }
          if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > 100_000_000) {
            return yield* new MycelError({ reason: 'InvalidBucket', message: `maxSize must be an integer number of entries from 1 to 100,000,000, got ${maxSize}` })
          }
          const replicas = bucketOptions.replicas ?? 2
          if (!Number.isInteger(replicas) || replicas < 1 || replicas > 16) {
            return yield* new MycelError({ reason: 'InvalidBucket', message: `replicas must be an integer from 1 to 16, got ${replicas}` })
          }
          const ttlMs = (yield* ttlOf(ttl, 'ttl'))!
          yield* cache.createBucket(name, { ttlMs, maxSize, replicas, maxBytes: bucketOptions.maxBytes ?? 0, writeConcern: bucketOptions.writeConcern ?? 'primary' })
        }),
      deleteBucket: (name) => cache.deleteBucket(name),
      put: (bucket, key, value, ttl) => ttlOf(ttl, 'ttl').pipe(Effect.flatMap((ttlMs) => cache.put(bucket, key, value, ttlMs))),
      get: (bucket, key) => cache.get(bucket, key),
      delete: (bucket, key) => cache.delete(bucket, key),
      stats: (bucket) => cache.stats(bucket),
      buckets: () => [...cache.buckets.keys()],
      ready: () => cache.ready()
    })
  })

/** The cache as a layer over `Nodosum` and `Streams`. */
export const layer = (options: MycelOptions = {}): Layer.Layer<Mycel, never, Nodosum.Nodosum | Streams.Streams> =>
  Layer.scoped(Mycel, make(options).pipe(Effect.orDie))
