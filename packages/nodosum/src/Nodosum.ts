/**
 * The cluster service: this node's identity, the authenticated full mesh of connections
 * to the other members, membership (joined, left, failed), and framed application streams
 * to and from peers.
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer, Redacted, type Scope, type Stream } from 'effect'
import * as Certificates from './Certificates.js'
import * as Discovery from './Discovery.js'
import { makeCluster } from './internal/cluster.js'
import type { MemoryNetwork } from './MemoryTransport.js'
import * as MemoryTransport from './MemoryTransport.js'
import * as NodosumConfig from './NodosumConfig.js'
import * as QuicTransport from './QuicTransport.js'
import type { NodosumSettings, NodosumSettingsInput } from './NodosumConfig.js'
import type { ClusterError, ConfigError, TransportError } from './NodosumError.js'
import type { PeerStream, PeerStreamHandler } from './PeerStream.js'
import { type Address, type ConnectionStats, formatAddress, Transport } from './Transport.js'

/** Reserved application id of the control stream (handshake, membership, heartbeats). */
export const CONTROL_APP_ID = 'SYSTEM-NODOSUM'

/** Version of the handshake and control messages this node speaks. */
export const PROTOCOL_VERSION = 1

/** The life of a member as this node sees it. */
export type MemberState = 'alive' | 'failed' | 'left'

/** One member of the cluster, self included. */
export interface Member {
  readonly id: string
  readonly address: Address
  readonly state: MemberState
  /** Random per process start: a restarted node keeps its id and gets a new instance. */
  readonly instanceId: string
  /** When the state last changed (ms since epoch, on the Effect clock). */
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
    /** Membership changes from now on. */
    readonly events: Stream.Stream<MembershipEvent>
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

/** The certificate a node presents: the configured one (mTLS) or a fresh self-signed one (secret mode). */
export const tlsIdentity = (settings: NodosumSettings): Effect.Effect<TlsIdentity> =>
  settings.auth?._tag === 'Tls'
    ? Effect.succeed({ cert: settings.auth.cert, key: Redacted.value(settings.auth.key), ca: settings.auth.ca })
    : Certificates.createSelfSigned(settings.nodeId).pipe(Effect.map((c) => ({ cert: c.cert, key: c.key, ca: undefined })))

/** The cluster service over whatever `Transport` and `Discovery` are provided. */
export const make = (settings: NodosumSettings, identity: TlsIdentity): Effect.Effect<Nodosum['Type'], never, Transport | Discovery.Discovery | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const discovery = yield* Discovery.Discovery
    return yield* makeCluster(settings, transport, discovery, { certificate: Certificates.toDer(identity.cert) })
  })

/**
 * A node over the in-memory transport (needs a `MemoryNetwork`): for deterministic tests of
 * many nodes in one process. `host` names the node in the network.
 */
export const layerMemory = (input: NodosumSettingsInput): Layer.Layer<Nodosum, ConfigError | TransportError, MemoryNetwork> =>
  Layer.scoped(
    Nodosum,
    Effect.gen(function* () {
      const settings = yield* NodosumConfig.make({ host: 'memory', ...input })
      const identity = yield* tlsIdentity(settings)
      const transport = yield* MemoryTransport.make({
        host: settings.transport.host,
        port: settings.transport.port,
        handshakeTimeoutMs: Duration.toMillis(settings.transport.handshakeTimeout),
        idleTimeoutMs: Duration.toMillis(settings.transport.idleTimeout),
        limits: settings.transport,
        certificates: [Certificates.toDer(identity.cert)]
      })
      return yield* makeCluster(settings, transport, Discovery.fromSettings(settings.discovery), { certificate: Certificates.toDer(identity.cert) })
    })
  )

/** A node over QUIC: validates the settings, binds the transport, joins the cluster. */
export const layer = (input: NodosumSettingsInput): Layer.Layer<Nodosum, ConfigError | TransportError> =>
  Layer.scoped(
    Nodosum,
    Effect.gen(function* () {
      const settings = yield* NodosumConfig.make(input)
      const identity = yield* tlsIdentity(settings)
      if (settings.single) {
        // no cluster: nothing is bound, local features only
        const transport = yield* MemoryTransport.make({ host: 'single', certificates: [Certificates.toDer(identity.cert)] }).pipe(
          Effect.provide(MemoryTransport.networkLayer)
        )
        return yield* makeCluster(settings, transport, Discovery.fixed([]), { certificate: Certificates.toDer(identity.cert) })
      }
      const transport = yield* QuicTransport.make({
        ...settings.transport,
        tls: { cert: identity.cert, key: identity.key, ca: identity.ca }
      })
      yield* Effect.logInfo('node listening').pipe(
        Effect.annotateLogs({ node: settings.nodeId, cluster: settings.clusterId, address: formatAddress(transport.address), auth: settings.auth?._tag ?? 'none' })
      )
      return yield* makeCluster(settings, transport, Discovery.fromSettings(settings.discovery), { certificate: Certificates.toDer(identity.cert) })
    })
  )
