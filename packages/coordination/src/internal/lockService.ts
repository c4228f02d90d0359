/**
 * The `Locks` service: creates the `system.locks` cache bucket and hands out holds of the lock
 * core as `Lock` values.
 */
import { Nodosum } from '@mycorrizal/nodosum'
import { Mycel } from '@mycorrizal/mycel'
import * as Effect from 'effect/Effect'
import type { CoordinationError, LockTimeout } from '../CoordinationError.js'
import { CoordinationError as CoordinationErrorClass } from '../CoordinationError.js'
import { type Hold, type LockCore, type LockCounts, makeLockCore, RECORD_TTL_MS } from './lockCore.js'
import { holderAt } from './locks.js'

/** The cache bucket of lock records. */
export const BUCKET = 'system.locks'
/** Owners of each lock's record (the bucket's replicas): R kills in a row may take a record, and its tokens start over. */
export const REPLICAS = 2

export interface LocksOptions {
  /**
   * How far apart two nodes' wall clocks may be (default 1,000 ms): another node takes a lock
   * only once its lease ended this long ago by its own clock.
   */
  readonly maxClockSkewMs?: number
  /** Grant and extend locks only while this node sees at least this many members, itself included (default 1: always). */
  readonly minMembers?: number
  /** Most lock names the bucket keeps (default 100,000; past it the least recently used name's record is evicted). */
  readonly maxLocks?: number
}

export interface AcquireOptions {
  /** The lease, in ms (10 ms to 24 hours). */
  readonly ttlMs: number
  /** How long `acquire` keeps trying, in ms (default 0: one attempt, then LockTimeout). */
  readonly waitMs?: number
  /** Overrides the service's `minMembers` for this call. */
  readonly minMembers?: number
}

/** A lock this node holds. */
export interface Lock {
  readonly name: string
  /** The fencing token: strictly increasing per name; give it to the resource you protect. */
  readonly token: bigint
  /**
   * True while this holder's lease runs (measured on this node's monotonic clock from when it
   * sent the acquire or the last extend) and it did not release; false once the lease passed,
   * an extend found the lock taken, or it was released.
   */
  readonly isHeld: () => boolean
  /** Lease left on this node's clock, in ms (0 once it passed). */
  readonly remainingMs: () => number
  /**
   * Makes the lease end `ttlMs` from now (same token). Fails `LockLost` when another holder
   * took the lock, `NotEnoughMembers` below `minMembers`, `Unavailable` when the cache did not
   * answer (the lease runs on; try again while `isHeld()`).
   */
  readonly extend: (ttlMs: number) => Effect.Effect<void, CoordinationError>
  /** Frees the lock for the next holder (nothing when it is no longer this holder's). */
  readonly release: Effect.Effect<void, CoordinationError>
  /** `extend` for a Promise caller: no Effect fiber; rejects with `CoordinationError`. */
  readonly unsafeExtend?: (ttlMs: number) => Promise<void>
  /** `release` for a Promise caller: no Effect fiber; rejects with `CoordinationError`. */
  readonly unsafeRelease?: () => Promise<void>
}

/** A lock this node holds, for the debug view. */
export interface HeldLockInfo {
  readonly name: string
  readonly token: bigint
  readonly remainingMs: number
}

/** The record of a lock name as this node reads it. */
export interface LockView {
  readonly name: string
  /** The holder, or undefined when the lock is free. */
  readonly holder: string | undefined
  /** The last token granted (0n: never). */
  readonly token: bigint
  /** Wall-clock ms (the holder's clock) at which the lease ends. */
  readonly leaseUntil: number
  readonly released: boolean
}

export interface LockStats extends Readonly<LockCounts> {
  /** Locks this node holds now. */
  readonly held: ReadonlyArray<HeldLockInfo>
}

/** What the service offers (the shape of the `Locks` tag). */
export interface LocksService {
  /**
   * Takes the lock, trying again (with backoff, at once on a release on this node) until
   * `waitMs` passed; fails `LockTimeout` then. `CoordinationError`: InvalidLock,
   * NotEnoughMembers, Unavailable, Closed.
   */
  readonly acquire: (name: string, options: AcquireOptions) => Effect.Effect<Lock, CoordinationError | LockTimeout>
  /** One attempt: the lock, or undefined when another holder has it. */
  readonly tryAcquire: (name: string, options: AcquireOptions) => Effect.Effect<Lock | undefined, CoordinationError>
  /** The record of `name` as this node reads it from the cache. */
  readonly inspect: (name: string) => Effect.Effect<LockView, CoordinationError>
  readonly stats: () => LockStats
  /**
   * `acquire` for a Promise caller (the facade's): the attempt runs without an Effect fiber (a
   * lock found held is waited for as by `acquire`); rejects with `CoordinationError` or `LockTimeout`.
   */
  readonly unsafeAcquire: (name: string, options: AcquireOptions) => Promise<Lock>
  /** `tryAcquire` for a Promise caller: no Effect fiber; rejects with `CoordinationError`. */
  readonly unsafeTryAcquire: (name: string, options: AcquireOptions) => Promise<Lock | undefined>
}

export const lockOf = (core: LockCore, hold: Hold): Lock => ({
  name: hold.name,
  token: hold.token,
  isHeld: () => core.isHeld(hold),
  remainingMs: () => (hold.ended ? 0 : Math.max(0, hold.deadline - core.mono())),
  extend: (ttlMs) => core.extend(hold, ttlMs),
  // built when asked for: a Promise caller never uses it
  get release() {
    return core.release(hold)
  },
  unsafeExtend: (ttlMs) => core.unsafeExtend(hold, ttlMs),
  unsafeRelease: () => core.unsafeRelease(hold)
})

export const viewOf = (core: LockCore, name: string) =>
  Effect.map(
    core.read(name),
    (record): LockView => ({
      name,
      holder: holderAt(record, core.wall(), core.maxClockSkewMs),
      token: record?.token ?? 0n,
      leaseUntil: record?.leaseUntil ?? 0,
      released: record?.released ?? false
    })
  )

/** Checks the service's options; the core's settings. */
export const settings = (options: LocksOptions) => {
  const maxClockSkewMs = options.maxClockSkewMs ?? 1_000
  const minMembers = options.minMembers ?? 1
  const maxLocks = options.maxLocks ?? 100_000
  if (!Number.isInteger(maxClockSkewMs) || maxClockSkewMs < 0 || maxClockSkewMs > 60_000) return `maxClockSkewMs is an integer from 0 to 60,000, got ${maxClockSkewMs}`
  if (!Number.isInteger(minMembers) || minMembers < 1 || minMembers > 1_000) return `minMembers is an integer from 1 to 1,000, got ${minMembers}`
  if (!Number.isInteger(maxLocks) || maxLocks < 1 || maxLocks > 10_000_000) return `maxLocks is an integer from 1 to 10,000,000, got ${maxLocks}`
  return { maxClockSkewMs, minMembers, maxLocks }
}

/** Creates `bucket` (R = `REPLICAS`) and the lock core over it. */
export const makeCore = (bucket: string, options: LocksOptions): Effect.Effect<LockCore, CoordinationError, Mycel.Mycel | Nodosum.Nodosum> =>
  Effect.gen(function* () {
    const s = settings(options)
    if (typeof s === 'string') return yield* Effect.dieMessage(`locks: ${s}`)
    const mycel = yield* Mycel.Mycel
    const nodosum = yield* Nodosum.Nodosum
    const clock = yield* Effect.clock
    const runtime = yield* Effect.runtime<never>()
    yield* mycel
      .createBucket(bucket, RECORD_TTL_MS, s.maxLocks, { replicas: REPLICAS })
      .pipe(Effect.catchIf((e) => e.reason === 'BucketExists', () => Effect.void), Effect.mapError((e) => new CoordinationErrorClass({ reason: 'Unavailable', message: e.message })))
    return makeLockCore(mycel, nodosum, clock, { bucket, maxClockSkewMs: s.maxClockSkewMs, minMembers: s.minMembers }, runtime)
  })

export const makeLocks = (options: LocksOptions = {}): Effect.Effect<LocksService, CoordinationError, Mycel.Mycel | Nodosum.Nodosum> =>
  Effect.gen(function* () {
    const core = yield* makeCore(BUCKET, options)
    const service: LocksService = {
      acquire: (name, o) => Effect.map(core.acquire(name, o.ttlMs, o.waitMs ?? 0, o.minMembers), (hold) => lockOf(core, hold)),
      tryAcquire: (name, o) => Effect.map(core.tryAcquire(name, o.ttlMs, o.minMembers), (got) => (got.hold === undefined ? undefined : lockOf(core, got.hold))),
      unsafeAcquire: (name, o) => core.unsafeAcquire(name, o.ttlMs, o.waitMs ?? 0, o.minMembers).then((hold) => lockOf(core, hold)),
      unsafeTryAcquire: (name, o) => core.unsafeTryAcquire(name, o.ttlMs, o.minMembers).then((got) => (got.hold === undefined ? undefined : lockOf(core, got.hold))),
      inspect: (name) => viewOf(core, name),
      stats: () => {
        core.sweep()
        const t = core.mono()
        return {
          ...core.counts,
          held: [...core.holds.values()].map((h) => ({ name: h.name, token: h.token, remainingMs: Math.max(0, h.deadline - t) })).sort((a, b) => (a.name < b.name ? -1 : 1))
        }
      }
    }
    return service
  })
