/**
 * Mycel, the distributed cache: buckets with a TTL and an LRU size limit, keys placed on the
 * top-R alive nodes by rendezvous hashing of (bucket, key), replicated, rebalanced when
 * members come and go. Each bucket uses its own stream `bucket:<name>` of the `SYSTEM-MYCEL`
 * application, so a busy bucket never delays another.
 *
 * Every node of a service creates the buckets it uses. A get is served locally when this node
 * owns the key, else asked of the primary (then the next replica) with a request id and a
 * timeout; concurrent gets of one remote key share one request. Writes are versioned by
 * (hybrid logical timestamp, node id); an owner holding a newer version makes a write go again
 * above it, so a write acknowledged after another one completed wins on every node whatever the
 * clocks say. Deletes leave a tombstone that outlives what it deleted. Atomic operations
 * (`putIfAbsent`, `compareAndSet`, `increment`) run at the key's primary and are replicated
 * before they answer; each carries an operation id, so a retry is never applied twice. The
 * promises are in the package README.
 *
 * This module holds the contract (the tag and its types); the engine is in `internal/`.
 *
 * @since 0.1.0
 */
import type { Nodosum } from '@mycorrizal/nodosum'
import type { Streams } from '@mycorrizal/streams'
import * as Config from 'effect/Config'
import type * as ConfigError from 'effect/ConfigError'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import { makeService, type MycelService } from './internal/service.js'
import type { MycelOptions } from './internal/types.js'
import * as MycelConfig from './MycelConfig.js'
import type { MycelError } from './MycelError.js'

export type { BucketOptions, BucketStats, LatencyHistogram, MycelOptions, NearCacheOptions, NearCacheStats } from './internal/types.js'
export type { MycelService } from './internal/service.js'
export { APP_ID } from './internal/service.js'

/** The cache of this node. */
export class Mycel extends Context.Tag('@mycorrizal/mycel/Mycel')<Mycel, MycelService>() {}

/** Builds the cache over the node's `Nodosum` and `Streams`. */
export const make = (options: MycelOptions = {}) => Effect.map(makeService(options), (service) => Mycel.of(service))

/** The cache as a layer over `Nodosum` and `Streams`; options out of bounds fail it with `MycelError` (InvalidConfig). */
export const layer = (options: MycelOptions = {}): Layer.Layer<Mycel, MycelError, Nodosum.Nodosum | Streams.Streams> =>
  Layer.scoped(Mycel, Effect.zipRight(MycelConfig.check(options), make(options).pipe(Effect.orDie)))

/**
 * The cache with options from Effect `Config` (`MycelConfig.config` under `MYCORRIZAL_`:
 * `MYCORRIZAL_CACHE_REQUEST_TIMEOUT`, ...) over `options`, checked by the same schemas.
 */
export const layerConfig = (options: MycelOptions = {}): Layer.Layer<Mycel, MycelError | ConfigError.ConfigError, Nodosum.Nodosum | Streams.Streams> =>
  Layer.unwrapEffect(Effect.map(Config.nested(MycelConfig.config, 'MYCORRIZAL'), (read) => layer({ ...options, ...read })))
