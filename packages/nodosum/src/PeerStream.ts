/**
 * A framed stream to or from one peer: STREAM_INIT first, then length-prefixed messages.
 * What upper layers (streams, mycel) use; plain synchronous objects on the hot path.
 *
 * @since 0.1.0
 */
import type { TransportError } from './NodosumError.js'
import type { StreamPriority } from './Transport.js'

/** Callbacks of a peer stream. */
export interface PeerStreamHandler {
  /**
   * One whole message. When `owned` is false it is a view valid only during this call (copy
   * what you keep); when true the buffer is the receiver's to keep.
   */
  readonly onMessage: (payload: Uint8Array, owned: boolean) => void
  /** `send` may be called again after it returned `false`. */
  readonly onDrain?: () => void
  /** The peer finished its side. */
  readonly onEnd?: () => void
  /** The stream is gone; `error` says why when it did not end cleanly. */
  readonly onClose?: (error: PeerStreamError | undefined) => void
}

/** Why a peer stream closed abnormally. */
export type PeerStreamError = TransportError | { readonly _tag: 'WireError'; readonly reason: string; readonly message: string }

/** One application stream with one peer. */
export interface PeerStream {
  /** The peer's node id. */
  readonly peer: string
  readonly appId: string
  /** Empty for the application's default stream. */
  readonly streamName: string
  /** True when the peer opened it. */
  readonly incoming: boolean
  /**
   * Frames and queues one message. Returns `false` when the queue is at its high-water mark:
   * wait for `onDrain` before sending more. Throws `WireError` (FrameTooLarge) for a message
   * over the maximum size and `TransportError` (StreamClosed) after close. With `owned` the
   * caller gives the buffer away (it must not touch it again): a large one is then queued
   * without a copy. `onRelease`, when given, is called exactly once, as soon as nothing
   * refers to `payload` any more (sent, copied, closed or thrown): the buffer may be reused.
   */
  readonly send: (payload: Uint8Array, owned?: boolean, onRelease?: () => void) => boolean
  /** Frames and queues several messages in one write. */
  readonly sendMany: (payloads: ReadonlyArray<Uint8Array>) => boolean
  readonly setHandler: (handler: PeerStreamHandler) => void
  readonly writableLength: () => number
  /** How this side schedules the stream's data against the connection's other streams (see `Transport.StreamPriority`). */
  readonly setPriority: (priority: StreamPriority) => void
  readonly pause: () => void
  readonly resume: () => void
  readonly end: () => void
  readonly reset: (code: number) => void
  readonly isClosed: () => boolean
}

/** Application error codes carried by stream resets and connection closes. */
export const ErrorCode = {
  /** A frame could not be decoded. */
  ProtocolError: 0x100,
  /** A stream was opened before the handshake finished. */
  NotAuthenticated: 0x101,
  /** Nobody on this node takes streams of that application or name. */
  UnknownStream: 0x102,
  /** The stream's owner closed it. */
  StreamClosed: 0x103,
  /** The handshake failed (wrong cluster, secret, certificate, version). */
  HandshakeRefused: 0x110,
  /** A second connection between the same two nodes lost the tie-break. */
  DuplicateConnection: 0x111,
  /** The node is leaving the cluster. */
  Leaving: 0x112,
  /** The peer stopped answering heartbeats. */
  PeerFailed: 0x113
} as const
