/**
 * The streams service: registers applications on a node and routes their default and
 * named streams over the cluster. Each (application, stream) gets its own QUIC stream per
 * peer, opened on first use and announced with STREAM_INIT, so streams never wait on each other.
 *
 * @since 0.1.0
 */
import { Nodosum } from '@mycorrizal/nodosum'
import { Context, Duration, Effect, Layer, Stream as EStream } from 'effect'
import type { Application, ApplicationConfig } from './Application.js'
import { Registry } from './internal/registry.js'
import { StreamsError } from './StreamsError.js'

/** Options of the streams service. */
export interface StreamsOptions {
  /** How long an incoming stream for a name not created here yet is held before it is refused (default 5 s). */
  readonly grace?: Duration.DurationInput
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

/** Builds the service over the node's `Nodosum`; closing the scope closes every stream. */
export const make = (options: StreamsOptions = {}) =>
  Effect.gen(function* () {
    const nodosum = yield* Nodosum.Nodosum
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const registry = new Registry(
      nodosum,
      {
        graceMs: Duration.toMillis(Duration.decode(options.grace ?? '5 seconds')),
        maxMessageSize: nodosum.maxMessageSize,
        connectionStreamLimit: 100
      },
      runtime,
      () => clock.unsafeCurrentTimeMillis()
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => registry.close()))
    // peers that fail or leave take their QUIC streams with them
    yield* nodosum.events.pipe(
      EStream.runForEach((event) => Effect.sync(() => (event._tag === 'Joined' ? undefined : registry.forget(event.member.id)))),
      Effect.forkScoped
    )
    const register = (config: ApplicationConfig) =>
      Effect.suspend(() => {
        const app = registry.register(config)
        return app instanceof StreamsError ? Effect.fail(app) : Effect.succeed(app as Application)
      })
    return Streams.of({
      registerApplication: (id) => register({ id }),
      registerApplicationWithConfig: register,
      application: (id) =>
        Effect.suspend(() => {
          const app = registry.apps.get(id)
          return app === undefined
            ? Effect.fail(new StreamsError({ reason: 'UnknownApplication', message: `no application '${id}'` }))
            : Effect.succeed(app as Application)
        }),
      applications: () => [...registry.apps.values()]
    })
  })

/** The streams service as a layer over a `Nodosum`. */
export const layer = (options: StreamsOptions = {}): Layer.Layer<Streams, never, Nodosum.Nodosum> => Layer.scoped(Streams, make(options))
