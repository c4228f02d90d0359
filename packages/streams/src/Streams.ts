/**
 * The streams service: registers applications on a node and routes their default and
 * named streams over the cluster. Each (application, stream) gets its own QUIC stream per
 * peer, opened on first use and announced with STREAM_INIT, so streams never wait on each other.
 *
 * This module is the contract: the Tag and its types. The implementation (`make`, `layer`)
 * is `internal/service.ts`; the package's `Streams` namespace exports both.
 *
 * @since 0.1.0
 */
import * as Context from 'effect/Context'
import type * as Duration from 'effect/Duration'
import type * as Effect from 'effect/Effect'
import type { Application, ApplicationConfig } from './Application.js'
import type { StreamsError } from './StreamsError.js'

/** Options of the streams service. */
export interface StreamsOptions {
  /** How long an incoming stream for a name not created here yet is held before it is refused (default 5 s). */
  readonly grace?: Duration.DurationInput
  /**
   * The node's transport settings, as given to `Nodosum.layer` (`transport`): `maxStreams`
   * (streams a peer may keep open, default the transport's 100) is the limit at which an
   * open stream count is logged as an error.
   */
  readonly transport?: { readonly maxStreams?: number }
  /**
   * The buffers kept for copies of large outgoing messages (64 KiB and more) that wait for the
   * transport: at most `maxRetainedBytes` of free buffers (default 64 MiB), all dropped after
   * `idleTimeout` without a copy (default 10 s). Lower bounds the node's peak memory under bulk
   * traffic, at the price of more allocation (and full collections) while it lasts.
   */
  readonly bufferPool?: { readonly maxRetainedBytes?: number; readonly idleTimeout?: Duration.DurationInput }
}

/** The applications of this node. */
export class Streams extends Context.Tag('@mycorrizal/streams/Streams')<
  Streams,
  {
    /** Registers an application with the defaults (20 named streams, buffers of 100 messages). */
    readonly registerApplication: (id: string) => Effect.Effect<Application, StreamsError>
    readonly registerApplicationWithConfig: (config: ApplicationConfig) => Effect.Effect<Application, StreamsError>
    readonly application: (id: string) => Effect.Effect<Application, StreamsError>
    readonly applications: () => ReadonlyArray<Application>
  }
>() {}
