/**
 * The cluster service: this node's identity, the authenticated full mesh of connections
 * to the other members, membership (joined, left, failed), and framed application streams
 * to and from peers.
 *
 * This module is the contract only: the Tag and its types. The implementation is
 * `Cluster.ts` (`Cluster.make`, `Cluster.layer` over any `Transport` and `Discovery`, and the
 * `layerQuic`/`layerMemory` conveniences, also reachable as `Nodosum.layer`/`Nodosum.layerMemory`
 * from the package index).
 *
 * @since 0.1.0
 */
import * as Context from 'effect/Context'
import type * as Effect from 'effect/Effect'
import type * as Queue from 'effect/Queue'
import type * as Scope from 'effect/Scope'
import type * as Stream from 'effect/Stream'
import type { ClusterError } from './NodosumError.js'
import type { PeerStream, PeerStreamHandler } from './PeerStream.js'
import type { Address, ConnectionStats, TransportStats } from './Transport.js'

export {
  /** Reserved application id of the control stream (handshake, membership, heartbeats). */
  CONTROL_APP_ID,
  /** Version of the handshake and control messages this node speaks. */
  PROTOCOL_VERSION
} from './internal/protocol.js'

/** The life of a member as this node sees it. */
export type MemberState = 'alive' | 'failed' | 'left'

/** One member of the cluster, self included. */
export interface Member {
  readonly id: string
  readonly address: Address
  readonly state: MemberState
  /** Random per process start: a restarted node keeps its id and gets a new instance. */
  readonly instanceId: string
  /** When the state last changed: ms since epoch on the Effect clock's monotonic time (it starts at the wall clock and does not follow later steps of it). */
  readonly since: number
}

/** A change of membership. */
export type MembershipEvent =
  | { readonly _tag: 'Joined'; readonly member: Member }
  | { readonly _tag: 'Left'; readonly member: Member }
  | { readonly _tag: 'Failed'; readonly member: Member; readonly reason: string }

/** Counters of the connection to one peer. */
export interface PeerStats extends ConnectionStats {
  readonly id: string
  readonly address: Address
  /** Heartbeat round trip measured on the control stream, in microseconds. */
  readonly heartbeatRttMicros: number | undefined
  readonly dialedByUs: boolean
}

/** Counters of the cluster layer. */
export interface NodosumStats {
  readonly peers: ReadonlyArray<PeerStats>
  /** Refused handshakes by reason, cumulative. */
  readonly handshakeFailures: Readonly<Record<string, number>>
  readonly handshakesSucceeded: number
  /** Connections past the transport handshake whose cluster handshake has not finished (unauthenticated), both roles. */
  readonly handshakesInProgress?: number
  /** The transport's admission counters (QUIC handshakes in progress, Retry packets, dropped attempts). */
  readonly transport?: TransportStats
  readonly membersByState: Readonly<Record<MemberState, number>>
}

/** Takes incoming application streams; return `false` to refuse one. */
export type StreamAcceptor = (stream: PeerStream) => boolean

/** The cluster layer of one node. */
export class Nodosum extends Context.Tag('@mycorrizal/nodosum/Nodosum')<
  Nodosum,
  {
    readonly nodeId: string
    readonly clusterId: string
    /** The address peers dial (advertised). */
    readonly address: Address
    /** The address the transport actually bound. */
    readonly boundAddress: Address
    /** Every member this node knows, self included. */
    readonly members: () => ReadonlyArray<Member>
    /** Ids of the alive members, self included, sorted. */
    readonly nodes: () => ReadonlyArray<string>
    /**
     * Membership changes from now on, from when the stream starts running. `effect/Stream` is
     * loaded when this member is first read (synchronously: Node's `require()` of the ES module,
     * the same instance an `import` gives), not when the package is imported or a node starts;
     * `subscribe` gives the same changes without it.
     */
    readonly events: Stream.Stream<MembershipEvent>
    /**
     * Membership changes from now on, as a subscription to the node's membership hub: every
     * change after this Effect returns, once each, in order; ends with the scope. Needs no
     * `effect/Stream` (take with `dequeue.take`, `dequeue.takeAll`).
     */
    readonly subscribe: Effect.Effect<Queue.Dequeue<MembershipEvent>, never, Scope.Scope>
    /**
     * Opens an application stream to an alive peer; STREAM_INIT is sent first. Throws
     * `ClusterError` (UnknownNode) for a peer that is not alive and `TransportError`
     * (StreamLimit) when the peer allows no more streams.
     */
    readonly openStream: (peer: string, appId: string, streamName: string, handler: PeerStreamHandler) => PeerStream
    /** Sets who takes incoming application streams (the streams layer). Until set, they are refused. */
    readonly setStreamAcceptor: (acceptor: StreamAcceptor) => void
    /** Largest message the framing accepts, in bytes. */
    readonly maxMessageSize: number
    readonly stats: () => NodosumStats
    /** Announces leave to every peer and closes the connections; the scope's close does it too. */
    readonly leave: Effect.Effect<void>
    /** Resolves the seeds and dials the ones not connected yet (also runs periodically). */
    readonly discover: Effect.Effect<void>
    /** Dials one address and runs the handshake. */
    readonly dial: (address: Address) => Effect.Effect<string, ClusterError>
  }
>() {}

/** The TLS identity a node presents: its certificate (and key) as PEM. */
export interface TlsIdentity {
  readonly cert: string
  readonly key: string
  /** Cluster CA for mTLS; absent in cluster-secret mode. */
  readonly ca: string | undefined
}
