/**
 * Errors of the cluster layer, as tagged data.
 *
 * @since 0.1.0
 */
import * as Data from 'effect/Data'

/** Why a transport operation failed. */
export type TransportErrorReason =
  | 'BindFailed'
  | 'ConnectFailed'
  | 'HandshakeTimeout'
  | 'TlsFailed'
  | 'IdleTimeout'
  | 'ConnectionClosed'
  | 'PeerClosed'
  | 'StreamClosed'
  | 'StreamReset'
  | 'StreamLimit'
  | 'TransportClosed'
  | 'UnauthenticatedBytes'

/** A transport operation failed. `code` carries the QUIC or application error code when there is one. */
export class TransportError extends Data.TaggedError('TransportError')<{
  readonly reason: TransportErrorReason
  readonly message: string
  readonly code?: number
}> {}

/** A configuration value is invalid; `field` names it and `message` says what is allowed. */
export class ConfigError extends Data.TaggedError('NodosumConfigError')<{
  readonly field: string
  readonly message: string
}> {}

/** Seeds could not be resolved (the node keeps running and tries again). */
export class DiscoveryError extends Data.TaggedError('DiscoveryError')<{
  readonly source: 'dns' | 'consul'
  readonly message: string
}> {}

/** Why a cluster operation failed. */
export type ClusterErrorReason =
  | 'UnknownNode'
  | 'HandshakeRefused'
  | 'HandshakeTimeout'
  | 'SelfConnection'
  | 'NotRunning'

/** A cluster operation failed: unknown peer, refused handshake, node shut down. */
export class ClusterError extends Data.TaggedError('ClusterError')<{
  readonly reason: ClusterErrorReason
  readonly message: string
}> {}
