/**
 * Locks with fencing tokens between the nodes of a cluster. A lock name's record lives in the
 * system cache bucket `system.locks` (replicated, R = 2) and changes only by `compareAndSet` at
 * its primary, so at most one holder per name at a time while the cluster is connected, a new
 * holder only after the old lease ended or was released, and tokens strictly increasing per
 * name across failovers. Hand the token to the resource you protect: it refuses a token lower
 * than one it saw, which makes a stale holder (paused, partitioned) harmless.
 *
 * ```ts
 * const lock = yield* locks.acquire('invoice-42', { ttlMs: 10_000, waitMs: 5_000 }) // fails LockTimeout
 * lock.token // bigint
 * yield* lock.extend(10_000)
 * yield* lock.release
 * ```
 *
 * @since 0.1.0
 */
import type { Nodosum } from '@mycorrizal/nodosum'
import type { Mycel } from '@mycorrizal/mycel'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import { makeLocks, type LocksOptions, type LocksService } from './internal/lockService.js'

export type { AcquireOptions, HeldLockInfo, Lock, LocksOptions, LocksService, LockStats, LockView } from './internal/lockService.js'
export { BUCKET, REPLICAS } from './internal/lockService.js'
export { MAX_NAME_BYTES, MAX_TTL_MS, MIN_TTL_MS } from './internal/locks.js'

/** The locks of this node. */
export class Locks extends Context.Tag('@mycorrizal/coordination/Locks')<Locks, LocksService>() {}

/** Builds the service in the current scope (it creates the `system.locks` cache bucket). */
export const make = (options: LocksOptions = {}) => Effect.map(makeLocks(options), (service) => Locks.of(service))

/** The service as a layer over `Nodosum` and `Mycel`. */
export const layer = (options: LocksOptions = {}): Layer.Layer<Locks, never, Nodosum.Nodosum | Mycel.Mycel> => Layer.scoped(Locks, make(options).pipe(Effect.orDie))
