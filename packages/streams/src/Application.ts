/**
 * The application and stream API (the spec's "Enhanced Application Interface"), in
 * TypeScript casing. Sends and stream management return Effects; everything else is plain.
 *
 * @since 0.1.0
 */
import type * as Effect from 'effect/Effect'
import type { StreamPriority } from '@mycorrizal/nodosum'
import type { SendError, StreamsError } from './StreamsError.js'

/** A receive handler: the payload (yours to keep) and the sending node's id. May return a promise: the stream then waits for it (backpressure). */
export type ReceiveFunc = (payload: Uint8Array, fromNode: string) => void | Promise<void>

/** Counters of one stream. */
export interface StreamStats {
  readonly bytesSent: number
  readonly bytesReceived: number
  readonly messagesOut: number
  readonly messagesIn: number
  /** Messages that did not reach a node (refused, unknown node, connection lost). */
  readonly failedSends: number
  /** Receive handler calls that threw or rejected. */
  readonly receiveErrors: number
  /** failedSends / (messagesOut + failedSends), 0 when nothing was sent. */
  readonly errorRate: number
  /** Messages waiting in this node's outgoing buffers, sends waiting for room included. */
  readonly queuedMessages: number
  /** Bytes of those messages, plus what the transport still holds. */
  readonly queuedBytes: number
  /** ms since epoch. */
  readonly createdAt: number
  /** ms since epoch of the last message in or out (createdAt before any). */
  readonly lastActive: number
  /** Nodes with an open QUIC stream of this stream, sorted. */
  readonly activeNodes: ReadonlyArray<string>
}

/** Counters of one application. */
export interface ApplicationStats {
  readonly totalBytesSent: number
  readonly totalBytesReceived: number
  readonly totalMessagesOut: number
  readonly totalMessagesIn: number
  readonly totalFailedSends: number
  /** Named streams plus the default stream. */
  readonly activeStreams: number
  readonly defaultStreamStats: StreamStats
  /** Named streams by name. */
  readonly streams: Readonly<Record<string, StreamStats>>
}

/** One named stream (or the default stream, whose name is ""). */
export interface Stream {
  /**
   * Sends to the given nodes (empty: every alive node but this one). Resolves once every
   * target's buffer took the message; waits while a buffer is full. Fails with `SendError`
   * naming the nodes it could not reach, or `StreamsError` before anything is sent (closed,
   * too large).
   */
  readonly send: (payload: Uint8Array, nodeIds?: ReadonlyArray<string>) => Effect.Effect<void, SendError | StreamsError>
  /**
   * The same as `send` without an Effect, for hot paths: returns undefined when every target's
   * buffer took the message at once, else a promise that settles when they did (rejecting
   * with `SendError`). Throws `StreamsError` when nothing was sent.
   */
  readonly offer: (payload: Uint8Array, nodeIds?: ReadonlyArray<string>) => Promise<void> | undefined
  readonly setReceiveFunc: (fn: ReceiveFunc) => void
  /** Called with a node that refused this stream (it has no stream of this name, past its grace period). */
  readonly setRefusedFunc: (fn: (node: string) => void) => void
  /** Closes the stream here and its QUIC streams on every peer. */
  readonly close: Effect.Effect<void>
  readonly name: () => string
  /** The priority its QUIC streams are sent with on this node. */
  readonly priority: () => StreamPriority
  readonly stats: () => StreamStats
  readonly isClosed: () => boolean
}

/**
 * How a stream's data is scheduled against the other streams to the same peer when the
 * sending side is the bottleneck (RFC 9218, applied to the stream's QUIC streams in quiche):
 * `urgency` 0 (sent first) to 7, default 3; `incremental` (default true) shares bandwidth
 * round-robin with the streams of the same urgency, false sends them one after another.
 * It orders what this node sends; the peer orders what it sends by its own setting.
 */
export interface PriorityOptions {
  readonly urgency?: number
  readonly incremental?: boolean
}

/** Options of one named stream. */
export interface StreamOptions {
  /** Default: the application's `priority`. */
  readonly priority?: PriorityOptions
}

/** Settings of an application. */
export interface ApplicationConfig {
  readonly id: string
  /** Named streams this application may have at once (default 20). */
  readonly maxStreams?: number
  /** The priority of its default stream and, unless they say otherwise, its named streams (urgency 3, incremental). */
  readonly priority?: PriorityOptions
  /** Refuse named streams (default false). */
  readonly defaultStreamOnly?: boolean
  /** Messages buffered per stream and peer, in each direction (default 100). */
  readonly streamBufferSize?: number
  /** Bytes buffered per stream and peer, in each direction (default 8 MiB): with large messages this bounds memory first. */
  readonly streamBufferBytes?: number
  /**
   * Bytes of sends allowed to wait, per stream and peer, while that peer's buffer is full
   * (default: the larger of `streamBufferBytes` and the node's `maxMessageSize`, so a message
   * of the largest size can wait beside smaller ones). Past it a send fails at once for that
   * peer with a `SendError` whose failure has reason `Overloaded`, instead of queueing: a peer
   * that stops reading cannot make this node hold unbounded memory. One send may always wait;
   * 0 means sends never wait.
   */
  readonly maxWaitingBytes?: number
  /** How long an incoming stream of a name not created here is held before it is refused, in ms (default: the service's, 5 s). */
  readonly unknownStreamGraceMs?: number
}

/** A registered application: a default stream plus named streams. */
export interface Application {
  readonly id: string
  readonly config: Required<ApplicationConfig>
  /** Sends on the default stream. */
  readonly send: Stream['send']
  /** Receives from the default stream. */
  readonly setReceiveFunc: (fn: ReceiveFunc) => void
  /** Alive nodes, this one included, sorted. */
  readonly nodes: () => ReadonlyArray<string>
  readonly createStream: (name: string, options?: StreamOptions) => Effect.Effect<Stream, StreamsError>
  readonly getStream: (name: string) => Effect.Effect<Stream, StreamsError>
  readonly closeStream: (name: string) => Effect.Effect<void, StreamsError>
  /** Names of the named streams (the default stream is not listed). */
  readonly listStreams: () => ReadonlyArray<string>
  readonly stats: () => ApplicationStats
  readonly defaultStream: Stream
}
