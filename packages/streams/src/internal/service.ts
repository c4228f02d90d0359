/**
 * The streams service's Effect shell: connects the registry to the node's `Nodosum`, the
 * Effect clock, a logger and timers that run as fibers of the layer's scope. Closing the scope
 * closes every stream and interrupts every timer.
 */
import { Nodosum, TransportConfig } from '@mycorrizal/nodosum'
import * as Config from 'effect/Config'
import type * as ConfigError from 'effect/ConfigError'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as FiberId from 'effect/FiberId'
import * as FiberSet from 'effect/FiberSet'
import * as Layer from 'effect/Layer'
import * as LogLevel from 'effect/LogLevel'
import * as Runtime from 'effect/Runtime'
import type * as Scope from 'effect/Scope'
import type { Application, ApplicationConfig } from '../Application.js'
import { Streams, type StreamsOptions } from '../Streams.js'
import * as StreamsConfig from '../StreamsConfig.js'
import { StreamsError } from '../StreamsError.js'
import { Registry, type RegistryRuntime } from './registry.js'
import type { LogLevelName } from './stream.js'

const levels: Record<LogLevelName, LogLevel.LogLevel> = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error }

/** The Effect clock, timers that are fibers of the current scope, and a logger, for the registry. */
const registryRuntime: Effect.Effect<RegistryRuntime, never, Scope.Scope> = Effect.gen(function* () {
  const clock = yield* Effect.clock
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  // closing the scope interrupts every timer still pending
  const run = yield* FiberSet.makeRuntime<never, void, never>()
  return {
    now: () => clock.unsafeCurrentTimeMillis(),
    later: (ms, f) => {
      const fiber = run(Effect.sleep(ms).pipe(Effect.andThen(Effect.sync(f))))
      return () => fiber.unsafeInterruptAsFork(FiberId.none)
    },
    // logged in place: no fiber per line
    log: (level, message, annotations) => runSync(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs(annotations)))
  }
})

/** Builds the service over the node's `Nodosum`; closing the scope closes every stream. */
export const make = (options: StreamsOptions = {}): Effect.Effect<Streams['Type'], StreamsError, Nodosum.Nodosum | Scope.Scope> =>
  Effect.gen(function* () {
    yield* StreamsConfig.check(options)
    const nodosum = yield* Nodosum.Nodosum
    const poolRetainedBytes = options.bufferPool?.maxRetainedBytes
    if (poolRetainedBytes !== undefined && !(Number.isSafeInteger(poolRetainedBytes) && poolRetainedBytes >= 0)) {
      return yield* Effect.dieMessage(`bufferPool.maxRetainedBytes must be a whole number of bytes, 0 or more, got ${String(poolRetainedBytes)}`)
    }
    const poolIdle = options.bufferPool?.idleTimeout
    const registry = new Registry(
      nodosum,
      {
        graceMs: Duration.toMillis(Duration.decode(options.grace ?? '5 seconds')),
        maxMessageSize: nodosum.maxMessageSize,
        connectionStreamLimit: options.transport?.maxStreams ?? TransportConfig.defaults.maxStreams,
        poolRetainedBytes,
        poolIdleMs: poolIdle === undefined ? undefined : Duration.toMillis(Duration.decode(poolIdle))
      },
      yield* registryRuntime
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => registry.close()))
    // peers that fail or leave take their QUIC streams with them
    const changes = yield* nodosum.subscribe
    yield* changes.take.pipe(
      Effect.andThen((event) => Effect.sync(() => (event._tag === 'Joined' ? undefined : registry.forget(event.member.id)))),
      Effect.forever,
      Effect.forkScoped
    )
    const register = (config: ApplicationConfig) =>
      Effect.suspend(() => Either.match(registry.register(config), { onLeft: Effect.fail, onRight: (app): Effect.Effect<Application> => Effect.succeed(app) }))
    return Streams.of({
      registerApplication: (id) => register({ id }),
      registerApplicationWithConfig: register,
      application: (id) =>
        Effect.suspend(() => {
          const app = registry.apps.get(id)
          return app === undefined
            ? Effect.fail(new StreamsError({ reason: 'UnknownApplication', message: `no application '${id}'` }))
            : Effect.succeed<Application>(app)
        }),
      applications: () => [...registry.apps.values()]
    })
  })

/** The streams service as a layer over a `Nodosum`. */
export const layer = (options: StreamsOptions = {}): Layer.Layer<Streams, StreamsError, Nodosum.Nodosum> => Layer.scoped(Streams, make(options))

/**
 * The service with options from Effect `Config` (`StreamsConfig.config` under `MYCORRIZAL_`:
 * `MYCORRIZAL_STREAM_GRACE`, `MYCORRIZAL_TRANSPORT_MAX_STREAMS`) over `options`.
 */
export const layerConfig = (options: StreamsOptions = {}): Layer.Layer<Streams, StreamsError | ConfigError.ConfigError, Nodosum.Nodosum> =>
  Layer.unwrapEffect(Effect.map(Config.nested(StreamsConfig.config, 'MYCORRIZAL'), (read) => layer({ ...options, ...read })))
