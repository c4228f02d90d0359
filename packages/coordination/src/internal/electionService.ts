/**
 * The `Elections` service: one fiber per election (owned by the service's scope) runs the
 * candidate / leader loop of `elections.ts` over the lock core on the `system.elections` bucket.
 */
import type { Mycel } from '@mycorrizal/mycel'
import type { Nodosum } from '@mycorrizal/nodosum'
import * as Deferred from 'effect/Deferred'
import * as Effect from 'effect/Effect'
import * as Fiber from 'effect/Fiber'
import * as FiberSet from 'effect/FiberSet'
import * as Runtime from 'effect/Runtime'
import type * as Scope from 'effect/Scope'
import { CoordinationError } from '../CoordinationError.js'
import { afterRenew, candidateDelayMs, nextRenewMs, type RenewOutcome } from './elections.js'
import type { Hold } from './lockCore.js'
import { type LocksOptions, makeCore } from './lockService.js'
import { holderAt, invalidName, invalidTtl, type LockRecord } from './locks.js'

/** The cache bucket of election records. */
export const ELECTIONS_BUCKET = 'system.elections'

export interface ElectOptions {
  /** Called when this node becomes leader, with the term's fencing token. */
  readonly onElected?: (token: bigint) => void | Promise<void>
  /** Called when this node stops being leader: a renewal failed, the lease passed, or it resigned. */
  readonly onRevoked?: () => void | Promise<void>
  /** The leader's lease, in ms (default 10,000); renewed every third of it. */
  readonly ttlMs?: number
  /** How often a non-leader tries to take over, in ms (default a third of the lease). */
  readonly retryIntervalMs?: number
  /** Overrides the service's `minMembers`: lead only while this node sees this many members. */
  readonly minMembers?: number
}

/** This node's candidacy in one election. */
export interface Election {
  readonly name: string
  /** True while this node leads (its lease runs on its own clock). */
  readonly isLeader: () => boolean
  /** The leader as this node knows it (itself when leading), or undefined when it knows none. */
  readonly leader: () => string | undefined
  /** The fencing token of this node's current term, when leading. */
  readonly token: () => bigint | undefined
  /** Stops the candidacy: a leader releases the lock (so another takes over at once) and is revoked. */
  readonly resign: Effect.Effect<void>
}

/** One election of this node, for the debug view. */
export interface ElectionInfo {
  readonly name: string
  readonly isLeader: boolean
  readonly leader: string | undefined
  readonly token: bigint | undefined
  /** Terms this node led in this election. */
  readonly terms: number
}

export interface ElectionStats {
  /** Terms led by this node, all elections. */
  readonly led: number
  /** Terms that ended by a failed renewal or a passed lease (not by resigning). */
  readonly revoked: number
  readonly elections: ReadonlyArray<ElectionInfo>
}

/** What the service offers (the shape of the `Elections` tag). */
export interface ElectionsService {
  /**
   * Enters this node as a candidate in election `name`; completes after its first try (so
   * `isLeader()` already tells). One candidacy per name per node: InvalidLock otherwise.
   */
  readonly elect: (name: string, options?: ElectOptions) => Effect.Effect<Election, CoordinationError>
  readonly stats: () => ElectionStats
}

interface Candidacy {
  readonly name: string
  hold: Hold | undefined
  seen: LockRecord | undefined
  terms: number
  resigned: boolean
}

export const makeElections = (options: LocksOptions = {}): Effect.Effect<ElectionsService, CoordinationError, Mycel.Mycel | Nodosum.Nodosum | Scope.Scope> =>
  Effect.gen(function* () {
    const core = yield* makeCore(ELECTIONS_BUCKET, options)
    const runtime = yield* Effect.runtime<never>()
    const log = Runtime.runSync(runtime)
    const fibers = yield* FiberSet.make<void>()
    const candidacies = new Map<string, Candidacy>()
    let led = 0
    let revoked = 0

    const call = (what: string, name: string, f: () => void | Promise<void>) => {
      try {
        const r = f()
        if (r !== undefined && typeof (r as Promise<void>).then === 'function') {
          ;(r as Promise<void>).catch((e: unknown) => log(Effect.logWarning(`election ${what} callback failed`).pipe(Effect.annotateLogs({ election: name, error: String(e) }))))
        }
      } catch (e) {
        log(Effect.logWarning(`election ${what} callback failed`).pipe(Effect.annotateLogs({ election: name, error: String(e) })))
      }
    }

    const isLeader = (c: Candidacy) => c.hold !== undefined && core.isHeld(c.hold)

    const elect = (name: string, o: ElectOptions = {}) =>
      Effect.gen(function* () {
        const ttlMs = o.ttlMs ?? 10_000
        const retryMs = o.retryIntervalMs ?? Math.max(1, Math.floor(ttlMs / 3))
        const bad = invalidName(name) ?? invalidTtl(ttlMs) ?? (Number.isInteger(retryMs) && retryMs >= 1 ? undefined : `retryIntervalMs is an integer ≥ 1, got ${retryMs}`)
        if (bad !== undefined) return yield* new CoordinationError({ reason: 'InvalidLock', message: bad })
        if (candidacies.has(name)) return yield* new CoordinationError({ reason: 'InvalidLock', message: `this node is already a candidate in election '${name}'` })
        const c: Candidacy = { name, hold: undefined, seen: undefined, terms: 0, resigned: false }
        candidacies.set(name, c)
        const firstTry = yield* Deferred.make<void>()

        const revoke = (byResign: boolean) => {
          const hold = c.hold
          if (hold === undefined) return
          c.hold = undefined
          core.ended(hold, byResign)
          if (!byResign) revoked++
          if (o.onRevoked !== undefined) call('onRevoked', name, o.onRevoked)
        }

        const lead = (hold: Hold) =>
          Effect.gen(function* () {
            c.hold = hold
            c.terms++
            led++
            if (o.onElected !== undefined) call('onElected', name, () => o.onElected!(hold.token))
            let outcome: RenewOutcome = 'renewed'
            for (;;) {
              yield* Effect.sleep(nextRenewMs(outcome, ttlMs, hold.deadline - core.mono()))
              const left = hold.deadline - core.mono()
              if (left <= 0) outcome = 'failed'
              else {
                const r = yield* Effect.either(Effect.timeout(core.extend(hold, ttlMs, o.minMembers), left))
                outcome = r._tag === 'Right' ? 'renewed' : r.left._tag === 'CoordinationError' && (r.left.reason === 'LockLost' || r.left.reason === 'NotEnoughMembers') ? 'lost' : 'failed'
              }
              if (afterRenew(outcome, hold.deadline - core.mono()) === 'revoked') return revoke(false)
            }
          })

        const loop = Effect.gen(function* () {
          for (;;) {
            const r = yield* Effect.either(core.tryAcquire(name, ttlMs, o.minMembers))
            if (r._tag === 'Right') c.seen = r.right.seen ?? (r.right.hold === undefined ? c.seen : undefined)
            yield* Deferred.succeed(firstTry, undefined)
            if (r._tag === 'Right' && r.right.hold !== undefined) yield* lead(r.right.hold)
            else yield* Effect.sleep(candidateDelayMs(retryMs, c.seen, core.wall(), core.maxClockSkewMs))
          }
        })
        const fiber = yield* FiberSet.run(fibers, loop)
        yield* Deferred.await(firstTry)

        const election: Election = {
          name,
          isLeader: () => isLeader(c),
          leader: () => (isLeader(c) ? core.self : holderAt(c.seen, core.wall(), core.maxClockSkewMs)),
          token: () => (isLeader(c) ? c.hold!.token : undefined),
          resign: Effect.gen(function* () {
            if (c.resigned) return
            c.resigned = true
            yield* Fiber.interrupt(fiber)
            candidacies.delete(name)
            const hold = c.hold
            if (hold !== undefined) {
              yield* Effect.ignore(core.release(hold))
              revoke(true)
            }
          })
        }
        return election
      })

    const service: ElectionsService = {
      elect,
      stats: () => ({
        led,
        revoked,
        elections: [...candidacies.values()]
          .map((c) => ({
            name: c.name,
            isLeader: isLeader(c),
            leader: isLeader(c) ? core.self : holderAt(c.seen, core.wall(), core.maxClockSkewMs),
            token: isLeader(c) ? c.hold!.token : undefined,
            terms: c.terms
          }))
          .sort((a, b) => (a.name < b.name ? -1 : 1))
      })
    }
    return service
  })
