/**
 * Leader election between the nodes of a cluster: at most one leader per name among connected
 * members, lease-based. Each election is a lock (in the system cache bucket `system.elections`)
 * that the leader holds with a lease it renews every third of it; the others try to take it at
 * an interval and learn the leader from its record. Every term has a fencing token, strictly
 * increasing per name; a leader that crashes is replaced within the failure timeout plus the
 * lease (plus the clock-skew allowance).
 *
 * ```ts
 * const election = yield* elections.elect('nightly-report', { onElected: (token) => {}, onRevoked: () => {} })
 * election.isLeader(); election.leader()
 * yield* election.resign
 * ```
 *
 * @since 0.1.0
 */
import type { Nodosum } from '@mycorrizal/nodosum'
import type { Mycel } from '@mycorrizal/mycel'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import { type ElectionsService, makeElections } from './internal/electionService.js'
import type { LocksOptions } from './internal/lockService.js'

export type { ElectOptions, Election, ElectionInfo, ElectionsService, ElectionStats } from './internal/electionService.js'
export { ELECTIONS_BUCKET as BUCKET } from './internal/electionService.js'

/** Settings of the elections service: the same as the locks' (`maxClockSkewMs`, `minMembers`, `maxLocks`). */
export type ElectionsOptions = LocksOptions

/** The elections of this node. */
export class Elections extends Context.Tag('@mycorrizal/coordination/Elections')<Elections, ElectionsService>() {}

/** Builds the service in the current scope (it creates the `system.elections` cache bucket). */
export const make = (options: ElectionsOptions = {}) => Effect.map(makeElections(options), (service) => Elections.of(service))

/** The service as a layer over `Nodosum` and `Mycel`. */
export const layer = (options: ElectionsOptions = {}): Layer.Layer<Elections, never, Nodosum.Nodosum | Mycel.Mycel> =>
  Layer.scoped(Elections, make(options).pipe(Effect.orDie))
