/**
 * The transport contract: reliable, ordered, flow-controlled bidirectional byte streams
 * multiplexed over one connection per pair of nodes.
 *
 * The service itself (connect, accept, close) speaks Effect. Connections and streams are
 * plain objects with synchronous methods and callback handlers: they sit on the hot path,
 * where an Effect per chunk would cost more than the chunk.
 *
 * Contract rules every implementation keeps (checked by `@mycorrizal/nodosum/testing`):
 * - bytes written to a stream arrive in order and intact at the peer's `onData`;
 * - `write` queues and returns `false` once the stream's queue is at or above its high-water
 *   mark; the writer waits for `onDrain`. Nothing grows without the writer's consent;
 * - `onData` chunks are views into buffers the transport reuses: copy what you keep;
 * - a stream whose handler is not yet set, or that is paused, is not read: the peer's flow
 *   control stops the sender, nothing is lost;
 * - streams never wait on each other;
 * - `end` sends a FIN after the queued bytes; the peer sees `onEnd`; `reset` aborts both
 *   directions with an application code, the peer sees `onClose` with `StreamReset`;
 * - a closed or failed connection closes every stream on it with the connection's error.
 *
 * @since 0.1.0
 */
import * as Context from 'effect/Context'
import type * as Effect from 'effect/Effect'
import type { TransportError } from './NodosumError.js'

/** A UDP/QUIC (or in-memory) endpoint. */
export interface Address {
  readonly host: string
  readonly port: number
}

/** Formats an address as `host:port` (IPv6 hosts in brackets). */
export const formatAddress = (address: Address): string =>
  address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`

/** Callbacks of one stream. Every member is optional except `onData`. */
export interface StreamHandler {
  /** A chunk of the peer's bytes; a view valid only during this call. */
  readonly onData: (chunk: Uint8Array) => void
  /** The peer finished its side (FIN); no more `onData`. */
  readonly onEnd?: () => void
  /** The queue fell below the high-water mark after `write` returned `false`. */
  readonly onDrain?: () => void
  /** The stream is gone: both sides finished, reset, or the connection closed. */
  readonly onClose?: (error: TransportError | undefined) => void
}

/** A stream's sending priority (RFC 9218 urgency and incremental). */
export interface StreamPriority {
  /** 0 (first) to 7. */
  readonly urgency: number
  /** Share bandwidth round-robin with streams of the same urgency (true), or not (false). */
  readonly incremental: boolean
}

/** The priority of a stream nobody set one for: RFC 9218's default urgency, shared round-robin. */
export const DEFAULT_PRIORITY: StreamPriority = { urgency: 3, incremental: true }

/** True for an urgency 0-7 and a boolean `incremental`. */
export const isStreamPriority = (p: unknown): p is StreamPriority =>
  typeof p === 'object' && p !== null && Number.isInteger((p as StreamPriority).urgency) && (p as StreamPriority).urgency >= 0 && (p as StreamPriority).urgency <= 7 && typeof (p as StreamPriority).incremental === 'boolean'

/** One bidirectional stream of a connection. */
export interface TransportStream {
  /** Stream id, unique within its connection. */
  readonly id: number
  readonly connection: TransportConnection
  /** Sets (or replaces) the callbacks. An incoming stream is not read until a handler is set. */
  readonly setHandler: (handler: StreamHandler) => void
  /**
   * Queues bytes for sending. The transport copies what it cannot send at once, unless
   * `owned` is true: then the caller gives the buffer away (it must not touch it again) and
   * the transport keeps it as it is.
   * `onRelease`, when given, is called exactly once, as soon as the transport holds no
   * reference to `chunk` any more: it sent or copied all of it (possibly before `write`
   * returns), the stream closed, or `write` threw. An owned buffer may be reused from then on.
   * Returns `false` when the queue is at or above the high-water mark: wait for `onDrain`.
   * Throws `TransportError` (`StreamClosed`) after `end`, `reset` or close.
   */
  readonly write: (chunk: Uint8Array, owned?: boolean, onRelease?: () => void) => boolean
  /** Bytes queued and not yet taken by the transport. */
  readonly writableLength: () => number
  /** Sends FIN after the queued bytes. */
  readonly end: () => void
  /** Aborts both directions with an application error code. */
  readonly reset: (code: number) => void
  /**
   * Sets how this side schedules the stream's data against the connection's other streams
   * (RFC 9218): `urgency` 0 (sent first) to 7, `incremental` true to share the connection
   * round-robin with the streams of the same urgency, false to send them one after another.
   * It orders only this side's sending; a transport that does not schedule (memory) records it.
   */
  readonly setPriority: (priority: StreamPriority) => void
  /** Stops reading: the peer's flow control will stop its sender. */
  readonly pause: () => void
  /** Resumes reading. */
  readonly resume: () => void
  readonly isClosed: () => boolean
}

/** Callbacks of one connection. */
export interface ConnectionHandler {
  /** The peer opened a stream. Set its handler in this call, or later: it is not read until then. */
  readonly onStream: (stream: TransportStream) => void
  /** The connection closed; `error` is undefined for a local close. */
  readonly onClose?: (error: TransportError | undefined) => void
  /**
   * This handler authenticates the peer (the cluster handshake): until the connection's
   * `authenticated()`, the transport applies its limits on unauthenticated connections to an
   * accepted connection (QUIC: `maxUnauthenticatedBytes`). Absent, the transport keeps none.
   */
  readonly authenticates?: boolean
}

/** Counters of one connection, cheap to read. */
export interface ConnectionStats {
  readonly bytesSent: number
  readonly bytesReceived: number
  readonly packetsSent: number
  readonly packetsReceived: number
  readonly packetsLost: number
  /** Smoothed round-trip time in microseconds, when the transport measures it. */
  readonly rttMicros: number | undefined
  readonly streamsOpen: number
  readonly streamsOpened: number
}

/** One connection to a peer. */
export interface TransportConnection {
  /** Unique within this transport. */
  readonly id: string
  /** True when this side dialed. */
  readonly initiator: boolean
  readonly localAddress: Address
  readonly remoteAddress: Address
  /** The peer's certificate chain (DER, leaf first) as presented in TLS; empty when none. */
  readonly peerCertificates: () => ReadonlyArray<Uint8Array>
  /** Sets the callbacks. Streams opened by the peer before this are held and handed over. */
  readonly setHandler: (handler: ConnectionHandler) => void
  /**
   * Opens a bidirectional stream. Throws `TransportError` (`StreamLimit`) when the peer's
   * stream limit is reached, (`ConnectionClosed`) after close.
   */
  readonly openStream: (handler: StreamHandler) => TransportStream
  /** Streams the peer still allows us to open. */
  readonly streamsLeft: () => number
  /** Closes the connection with an application code; every stream closes. */
  readonly close: (code?: number, reason?: string) => void
  readonly isClosed: () => boolean
  readonly stats: () => ConnectionStats
  /**
   * The cluster handshake on this connection succeeded: lifts the limits a transport keeps on
   * connections that have not authenticated (`maxUnauthenticatedBytes`). Optional: a transport
   * without such limits leaves it out.
   */
  readonly authenticated?: () => void
}

/** Admission counters of a transport (optional: the memory transport keeps none). */
export interface TransportStats {
  /** Accepted connections whose transport (TLS) handshake has not finished. */
  readonly handshakesInProgress: number
  /** Address validations asked of new sources (QUIC Retry packets sent). */
  readonly retriesSent: number
  /** Connection attempts dropped before any state was kept, by reason. */
  readonly refused: Readonly<Record<string, number>>
}

/** Tunables every transport understands. */
export interface TransportLimits {
  /** Streams a peer may have open to us at once. */
  readonly maxStreams: number
  /** Per-stream receive window: initial and maximum, in bytes. */
  readonly streamWindow: number
  readonly maxStreamWindow: number
  /** Per-connection receive window: initial and maximum, in bytes. */
  readonly connectionWindow: number
  readonly maxConnectionWindow: number
  /** Queue size at which `write` starts returning `false`. */
  readonly writeHighWaterMark: number
}

/**
 * The transport service of one node: bound to one local address, dialing and accepting.
 * Closing the scope that built it closes every connection.
 */
export class Transport extends Context.Tag('@mycorrizal/nodosum/Transport')<
  Transport,
  {
    /** The address actually bound (port 0 resolved). */
    readonly address: Address
    /** Dials a peer; succeeds once the connection is established (handshake done). */
    readonly connect: (address: Address) => Effect.Effect<TransportConnection, TransportError>
    /** Waits for the next accepted connection. */
    readonly accept: Effect.Effect<TransportConnection>
    /** Connections currently open, dialed or accepted. */
    readonly connections: () => ReadonlyArray<TransportConnection>
    /** Admission counters, when the transport keeps them. */
    readonly stats?: () => TransportStats
  }
>() {}
