/**
 * The Effect shell of locks, shared by `Locks` and `Elections`: it reads a lock's record from a
 * system Mycel bucket, asks the rules (`locks.ts`) for the next record and writes it with
 * `compareAndSet` on the exact bytes it read (atomic at the key's primary, replicated before it
 * answers). It measures each holder's lease on the monotonic clock from the moment it sent the
 * write, keeps what this node holds, wakes local waiters on a local release, counts.
 *
 * Each operation has two forms: Effects (the `Locks` and `Elections` services), and Promises with
 * no Effect fiber (`unsafeAttempt`, `unsafeRelease`, `unsafeExtend`, used by the facade): the same
 * rules over the cache's Promise entry points. An acquire that has to wait for a holder goes on
 * as the Effect (its retries sleep on the Effect clock).
 */
import type { Nodosum } from '@mycorrizal/nodosum'
import type { Mycel, MycelError } from '@mycorrizal/mycel'
import type * as Clock from 'effect/Clock'
import * as Cause from 'effect/Cause'
import * as Deferred from 'effect/Deferred'
import * as Effect from 'effect/Effect'
import * as Exit from 'effect/Exit'
import * as Runtime from 'effect/Runtime'
import { CoordinationError, LockTimeout } from '../CoordinationError.js'
import {
  acquireNext,
  decodeRecord,
  encodeRecord,
  extendNext,
  holderAt,
  invalidName,
  invalidTtl,
  leaseDeadline,
  type LockRecord,
  releaseNext,
  retryDelayMs,
  sameBytes
} from './locks.js'

/** Lifetime of a record in the cache: the longest a bucket allows (records are rewritten by every acquire). */
export const RECORD_TTL_MS = 49 * 24 * 60 * 60 * 1000
/** Lock names whose last written record a node remembers (to skip the read before an acquire). */
const MAX_KNOWN = 10_000

/** A hold of this node. */
export interface Hold {
  readonly name: string
  readonly token: bigint
  /** The record this holder wrote last (what an extend or release must find). */
  record: LockRecord
  bytes: Uint8Array
  /** End of the lease on this node's monotonic clock (ms). */
  deadline: number
  /** Released by this holder, or found taken by another. */
  ended: boolean
}

/** The record this node wrote last for a name: its bytes and what they decode to. */
interface Known {
  readonly bytes: Uint8Array
  readonly record: LockRecord
}

/** Counts of one lock table. */
export interface LockCounts {
  /** Locks granted to this node. */
  acquires: number
  /** Acquires that found the lock held at least once. */
  contended: number
  /** Acquires that gave up after `waitMs` (LockTimeout). */
  timeouts: number
  /** Releases by this node. */
  releases: number
  /** Holds that ended without a release: an extend found the record taken, or the lease passed. */
  lost: number
  /** Grants or extends refused because this node saw fewer than `minMembers` members. */
  refused: number
}

export interface LockCoreOptions {
  readonly bucket: string
  readonly maxClockSkewMs: number
  readonly minMembers: number
}

const mycelFailure = (e: MycelError) =>
  new CoordinationError({ reason: e.reason === 'Closed' ? 'Closed' : 'Unavailable', message: `lock record: ${e.reason}: ${e.message}` })

export const makeLockCore = (mycel: Mycel.Mycel['Type'], nodosum: Nodosum.Nodosum['Type'], clock: Clock.Clock, options: LockCoreOptions, runtime: Runtime.Runtime<never> = Runtime.defaultRuntime) => {
  const { bucket, maxClockSkewMs } = options
  const self = nodosum.nodeId
  const wall = () => clock.unsafeCurrentTimeMillis()
  const mono = () => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)
  const holds = new Map<string, Hold>()
  const waiters = new Map<string, Set<Deferred.Deferred<void>>>()
  const counts: LockCounts = { acquires: 0, contended: 0, timeouts: 0, releases: 0, lost: 0, refused: 0 }

  const check = (name: string, ttlMs: number) => {
    const bad = invalidName(name) ?? invalidTtl(ttlMs)
    return bad === undefined ? Effect.void : Effect.fail(new CoordinationError({ reason: 'InvalidLock', message: bad }))
  }

  const enoughMembers = (minMembers: number) => {
    // this node counts itself: 1 always holds (and spares the member list)
    if (minMembers <= 1 || nodosum.nodes().length >= minMembers) return Effect.void
    counts.refused++
    return Effect.fail(
      new CoordinationError({ reason: 'NotEnoughMembers', message: `this node sees ${nodosum.nodes().length} members, fewer than minMembers (${minMembers})` })
    )
  }

  const readBytes = (name: string) => Effect.mapError(mycel.get(bucket, name), mycelFailure)

  const decoded = (name: string, bytes: Uint8Array | undefined) => {
    if (bytes === undefined) return Effect.succeed(undefined)
    const record = decodeRecord(bytes)
    return record === undefined
      ? Effect.fail(new CoordinationError({ reason: 'InvalidLock', message: `the record of lock '${name}' in bucket '${bucket}' is not a lock record` }))
      : Effect.succeed(record)
  }

  /**
   * Writes `next` over `expected` with compareAndSet; true when it is stored. When the write
   * failed (the outcome unknown), reads the record again: our exact record there means it was
   * stored (records carry a unique token, so no other write makes these bytes).
   */
  const swap = (name: string, expected: Uint8Array | undefined, next: Uint8Array) =>
    mycel.compareAndSet(bucket, name, expected, next, RECORD_TTL_MS).pipe(
      Effect.catchAll((e) =>
        e.reason === 'Closed'
          ? Effect.fail(mycelFailure(e))
          : readBytes(name).pipe(
              Effect.flatMap((now) => (sameBytes(now, next) ? Effect.succeed(true) : sameBytes(now, expected) ? Effect.fail(mycelFailure(e)) : Effect.succeed(false)))
            )
      )
    )

  /**
   * The record bytes this node wrote last per name (its own release, mostly): an acquire first
   * tries compareAndSet against them without reading, which is right whenever no other node
   * wrote since — one round trip instead of two for a node that takes a lock again. Bounded:
   * cleared past `MAX_KNOWN` names.
   */
  const known = new Map<string, Known>()
  const remember = (name: string, bytes: Uint8Array, record: LockRecord) => {
    if (known.size >= MAX_KNOWN && !known.has(name)) known.clear()
    known.set(name, { bytes, record })
  }

  /** Tries to take the lock over `bytes` (what the record holds, as far as this node knows; `record` when decoded already). */
  const takeOver = (name: string, bytes: Uint8Array | undefined, ttlMs: number, record?: LockRecord) =>
    Effect.gen(function* () {
      const current = record ?? (yield* decoded(name, bytes))
      // the lease starts before the wall-clock time written in the record
      const sentAt = mono()
      const next = acquireNext(current, self, wall(), ttlMs, maxClockSkewMs)
      if (next === undefined) return { seen: current } as const
      const nextBytes = encodeRecord(next)
      if (!(yield* swap(name, bytes, nextBytes))) return { seen: current, stale: true } as const
      const hold: Hold = { name, token: next.token, record: next, bytes: nextBytes, deadline: leaseDeadline(sentAt, ttlMs), ended: false }
      holds.set(name, hold)
      remember(name, nextBytes, next)
      counts.acquires++
      return { hold } as const
    })

  /** One attempt: the hold when granted, else the record that holds the lock. */
  const attempt = (name: string, ttlMs: number): Effect.Effect<{ readonly hold?: Hold | undefined; readonly seen?: LockRecord | undefined }, CoordinationError> =>
    Effect.gen(function* () {
      const guess = known.get(name)
      if (guess !== undefined) {
        const got = yield* takeOver(name, guess.bytes, ttlMs, guess.record)
        if (got.hold !== undefined) return got
        known.delete(name)
      }
      const got = yield* takeOver(name, yield* readBytes(name), ttlMs)
      return got.hold !== undefined ? got : { hold: undefined, seen: got.seen }
    })

  // ---- the same without Effect (the facade's Promise entry points) ---------------------

  const invalid = (name: string, ttlMs: number): CoordinationError | undefined => {
    const bad = invalidName(name) ?? invalidTtl(ttlMs)
    return bad === undefined ? undefined : new CoordinationError({ reason: 'InvalidLock', message: bad })
  }

  const tooFewMembers = (minMembers: number): CoordinationError | undefined => {
    if (minMembers <= 1 || nodosum.nodes().length >= minMembers) return undefined
    counts.refused++
    return new CoordinationError({ reason: 'NotEnoughMembers', message: `this node sees ${nodosum.nodes().length} members, fewer than minMembers (${minMembers})` })
  }

  const unsafeRead = (name: string): Promise<Uint8Array | undefined> =>
    mycel.unsafeGet(bucket, name).catch((e: MycelError) => {
      throw mycelFailure(e)
    })

  /** `swap` as a Promise. */
  const unsafeSwap = async (name: string, expected: Uint8Array | undefined, next: Uint8Array): Promise<boolean> => {
    try {
      return await mycel.unsafeCompareAndSet(bucket, name, expected, next, RECORD_TTL_MS)
    } catch (error) {
      const e = error as MycelError
      if (e.reason === 'Closed') throw mycelFailure(e)
      const now = await unsafeRead(name)
      if (sameBytes(now, next)) return true
      if (sameBytes(now, expected)) throw mycelFailure(e)
      return false
    }
  }

  const decodedNow = (name: string, bytes: Uint8Array | undefined): LockRecord | undefined => {
    if (bytes === undefined) return undefined
    const record = decodeRecord(bytes)
    if (record === undefined) throw new CoordinationError({ reason: 'InvalidLock', message: `the record of lock '${name}' in bucket '${bucket}' is not a lock record` })
    return record
  }

  /** `takeOver` as a Promise. */
  const unsafeTakeOver = async (name: string, bytes: Uint8Array | undefined, ttlMs: number, record?: LockRecord): Promise<{ readonly hold?: Hold; readonly seen: LockRecord | undefined }> => {
    const current = record ?? decodedNow(name, bytes)
    const sentAt = mono()
    const next = acquireNext(current, self, wall(), ttlMs, maxClockSkewMs)
    if (next === undefined) return { seen: current }
    const nextBytes = encodeRecord(next)
    if (!(await unsafeSwap(name, bytes, nextBytes))) return { seen: current }
    const hold: Hold = { name, token: next.token, record: next, bytes: nextBytes, deadline: leaseDeadline(sentAt, ttlMs), ended: false }
    holds.set(name, hold)
    remember(name, nextBytes, next)
    counts.acquires++
    return { hold, seen: current }
  }

  /** `attempt` as a Promise: one compareAndSet when this node wrote the record last, else a read first. */
  const unsafeAttempt = async (name: string, ttlMs: number): Promise<{ readonly hold?: Hold | undefined; readonly seen?: LockRecord | undefined }> => {
    const guess = known.get(name)
    if (guess !== undefined) {
      const got = await unsafeTakeOver(name, guess.bytes, ttlMs, guess.record)
      if (got.hold !== undefined) return got
      known.delete(name)
    }
    return unsafeTakeOver(name, await unsafeRead(name), ttlMs)
  }

  /** `tryAcquire` as a Promise. */
  const unsafeTryAcquire = async (name: string, ttlMs: number, minMembers = options.minMembers) => {
    const bad = invalid(name, ttlMs) ?? tooFewMembers(minMembers)
    if (bad !== undefined) throw bad
    const got = await unsafeAttempt(name, ttlMs)
    if (got.hold === undefined) counts.contended++
    return got
  }

  /**
   * `acquire` as a Promise: the first attempt without Effect; a lock found held is waited for by
   * the Effect loop (backoff on the Effect clock, woken by a local release), for what is left of `waitMs`.
   */
  const unsafeAcquire = async (name: string, ttlMs: number, waitMs: number, minMembers = options.minMembers): Promise<Hold> => {
    const bad = invalid(name, ttlMs) ?? (Number.isInteger(waitMs) && waitMs >= 0 ? undefined : new CoordinationError({ reason: 'InvalidLock', message: `waitMs is an integer ≥ 0, got ${waitMs}` }))
    if (bad !== undefined) throw bad
    const start = mono()
    const refused = tooFewMembers(minMembers)
    if (refused !== undefined) throw refused
    const got = await unsafeAttempt(name, ttlMs)
    if (got.hold !== undefined) return got.hold
    counts.contended++
    const exit = await Runtime.runPromiseExit(runtime)(waitLoop(name, ttlMs, waitMs, minMembers, start, 1, got.seen))
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  }

  /** `release` as a Promise. */
  const unsafeRelease = async (hold: Hold): Promise<void> => {
    if (hold.ended) return
    const next = releaseNext(hold.record)
    const nextBytes = encodeRecord(next)
    let stillOurs: boolean
    try {
      stillOurs = await unsafeSwap(hold.name, hold.bytes, nextBytes)
    } catch (e) {
      ended(hold, true)
      throw e
    }
    if (stillOurs) remember(hold.name, nextBytes, next)
    else known.delete(hold.name)
    ended(hold, stillOurs)
    wake(hold.name)
  }

  /** `extend` as a Promise. */
  const unsafeExtend = async (hold: Hold, ttlMs: number, minMembers = options.minMembers): Promise<void> => {
    const bad = invalid(hold.name, ttlMs) ?? (hold.ended ? new CoordinationError({ reason: 'LockLost', message: `lock '${hold.name}' (token ${hold.token}) is no longer held here` }) : tooFewMembers(minMembers))
    if (bad !== undefined) throw bad
    const sentAt = mono()
    const next = extendNext(hold.record, wall(), ttlMs)
    const nextBytes = encodeRecord(next)
    if (!(await unsafeSwap(hold.name, hold.bytes, nextBytes))) {
      ended(hold, false)
      throw new CoordinationError({ reason: 'LockLost', message: `lock '${hold.name}' (token ${hold.token}) was taken by another holder after its lease` })
    }
    hold.record = next
    hold.bytes = nextBytes
    remember(hold.name, nextBytes, next)
    hold.deadline = Math.max(hold.deadline, leaseDeadline(sentAt, ttlMs))
  }

  const wake = (name: string) => {
    const set = waiters.get(name)
    if (set === undefined) return
    waiters.delete(name)
    for (const d of set) Deferred.unsafeDone(d, Effect.void)
  }

  /** Sleeps `ms`, or less when this node releases `name`. */
  const pause = (name: string, ms: number) =>
    Effect.gen(function* () {
      const d = yield* Deferred.make<void>()
      let set = waiters.get(name)
      if (set === undefined) waiters.set(name, (set = new Set()))
      set.add(d)
      yield* Deferred.await(d).pipe(
        Effect.timeout(ms),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => set.delete(d)))
      )
    })

  const tryAcquire = (name: string, ttlMs: number, minMembers = options.minMembers) =>
    Effect.gen(function* () {
      yield* check(name, ttlMs)
      yield* enoughMembers(minMembers)
      const got = yield* attempt(name, ttlMs)
      if (got.hold === undefined) counts.contended++
      return got
    })

  /** Attempts from `from` on (0-based) until granted or `waitMs` from `start` passed; `seen` the record found before. */
  const waitLoop = (name: string, ttlMs: number, waitMs: number, minMembers: number, start: number, from: number, before: LockRecord | undefined) =>
    Effect.gen(function* () {
      let seen = before
      for (let i = from; ; i++) {
        if (i > 0) {
          const left = start + waitMs - mono()
          if (left <= 0) {
            counts.timeouts++
            const holder = holderAt(seen, wall(), maxClockSkewMs)
            return yield* new LockTimeout({
              name,
              waitedMs: mono() - start,
              ...(holder === undefined ? {} : { holder }),
              message: `lock '${name}' stayed held${holder === undefined ? '' : ` by ${holder}`} for ${waitMs} ms`
            })
          }
          yield* pause(name, retryDelayMs(i - 1, Math.random(), seen, wall(), maxClockSkewMs, left))
        }
        yield* enoughMembers(minMembers)
        const got = yield* attempt(name, ttlMs)
        if (got.hold !== undefined) return got.hold
        if (i === 0) counts.contended++
        seen = got.seen ?? seen
      }
    })

  const acquire = (name: string, ttlMs: number, waitMs: number, minMembers = options.minMembers) =>
    Effect.gen(function* () {
      yield* check(name, ttlMs)
      if (!Number.isInteger(waitMs) || waitMs < 0) return yield* new CoordinationError({ reason: 'InvalidLock', message: `waitMs is an integer ≥ 0, got ${waitMs}` })
      return yield* waitLoop(name, ttlMs, waitMs, minMembers, mono(), 0, undefined)
    })

  const isHeld = (hold: Hold) => !hold.ended && mono() < hold.deadline

  const ended = (hold: Hold, released: boolean) => {
    if (hold.ended) return
    hold.ended = true
    if (holds.get(hold.name) === hold) holds.delete(hold.name)
    if (released) counts.releases++
    else counts.lost++
  }

  const extend = (hold: Hold, ttlMs: number, minMembers = options.minMembers) =>
    Effect.gen(function* () {
      yield* check(hold.name, ttlMs)
      if (hold.ended) return yield* new CoordinationError({ reason: 'LockLost', message: `lock '${hold.name}' (token ${hold.token}) is no longer held here` })
      yield* enoughMembers(minMembers)
      const sentAt = mono()
      const next = extendNext(hold.record, wall(), ttlMs)
      const nextBytes = encodeRecord(next)
      if (!(yield* swap(hold.name, hold.bytes, nextBytes))) {
        ended(hold, false)
        return yield* new CoordinationError({ reason: 'LockLost', message: `lock '${hold.name}' (token ${hold.token}) was taken by another holder after its lease` })
      }
      hold.record = next
      hold.bytes = nextBytes
      remember(hold.name, nextBytes, next)
      hold.deadline = Math.max(hold.deadline, leaseDeadline(sentAt, ttlMs))
    })

  const release = (hold: Hold) =>
    Effect.gen(function* () {
      if (hold.ended) return
      const next = releaseNext(hold.record)
      const nextBytes = encodeRecord(next)
      const stillOurs = yield* swap(hold.name, hold.bytes, nextBytes).pipe(Effect.tapError(() => Effect.sync(() => ended(hold, true))))
      if (stillOurs) remember(hold.name, nextBytes, next)
      else known.delete(hold.name)
      ended(hold, stillOurs)
      wake(hold.name)
    })

  /** The record of `name`, as this node reads it now (undefined: never taken). */
  const read = (name: string) => Effect.flatMap(readBytes(name), (bytes) => decoded(name, bytes))

  /** Marks holds whose lease passed as lost (so stats and debug views show what is held). */
  const sweep = () => {
    const t = mono()
    for (const hold of [...holds.values()]) if (t >= hold.deadline) ended(hold, false)
  }

  return {
    self,
    wall,
    mono,
    holds,
    counts,
    attempt,
    tryAcquire,
    acquire,
    extend,
    release,
    unsafeAttempt,
    unsafeTryAcquire,
    unsafeAcquire,
    unsafeRelease,
    unsafeExtend,
    isHeld,
    read,
    sweep,
    maxClockSkewMs,
    ended
  }
}

export type LockCore = ReturnType<typeof makeLockCore>
