/**
 * Settings of the streams service and of each application, declared once with their bounds
 * and descriptions. `Streams.layer(options)` and `Streams.layerConfig` (Effect `Config`, the
 * environment by default) check the service's options with `effect/Schema` schemas, built on
 * first use (`load`) so that importing the package does not load Schema;
 * `registerApplicationWithConfig` checks an application's settings by `applicationRules`
 * (the same rules as the `applicationFields` schemas). A bad value fails with a `StreamsError`
 * (InvalidConfig) naming the field.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import type * as Schemas from './internal/streamsSchemas.js'
import type { StreamsOptions } from './Streams.js'
import { StreamsError } from './StreamsError.js'

const GiB = 1024 * 1024 * 1024

/**
 * The rules of an application's settings (`ApplicationConfig`) as data: the bounds of each
 * integer and every description. `validateApplication` checks them without `effect/Schema`
 * (the streams engine registers applications synchronously); `applicationFields` are the same
 * rules as schemas.
 */
export const applicationRules = {
  maxStreams: { min: 0, max: 10_000, description: 'named streams the application may have at once (default 20)' },
  defaultStreamOnly: { description: 'refuse named streams (default false)' },
  streamBufferSize: { min: 1, max: 1_000_000, description: 'messages buffered per stream and peer, in each direction (default 100)' },
  streamBufferBytes: { min: 1024, max: GiB, description: 'bytes buffered per stream and peer, in each direction (default 8 MiB)' },
  maxWaitingBytes: { min: 0, max: GiB, description: 'bytes of sends allowed to wait per stream and peer while its buffer is full' },
  unknownStreamGraceMs: { min: 0, max: 600_000, description: 'ms an incoming stream of a name not created here is held before it is refused' }
} as const

/** The descriptions of the service's options. */
export const descriptions = {
  grace: 'how long an incoming stream for a name not created here yet is held before it is refused (default 5 s)',
  transportMaxStreams: 'streams a peer may keep open at once (the transport setting; default 100)'
} as const

let schemas: typeof Schemas | undefined

/*
 * The schemas are live bindings, set by `load`: importing the package does not load
 * `effect/Schema`; the layers build them where the options are validated. Undefined before.
 */

/** The rules of an application's settings as schemas, with their descriptions. Built by `load`. */
export let applicationFields: typeof Schemas.applicationFields

/** An application's settings besides its id, all present (after defaults). Built by `load`. */
export let ApplicationSettings: typeof Schemas.ApplicationSettings

/** The rules of the service's options (`StreamsOptions`). Built by `load`. */
export let fields: typeof Schemas.fields

/** The service's options. Built by `load`. */
export let Options: typeof Schemas.Options

/**
 * Loads `effect/Schema` and builds the schemas, once. `check` and the layers run it; after it,
 * `validate` and the schemas above can be used synchronously.
 */
export const load: Effect.Effect<void> = Effect.suspend(() =>
  schemas !== undefined
    ? Effect.void
    : Effect.map(
        Effect.promise(() => import('./internal/streamsSchemas.js')),
        (m) => {
          schemas = m
          applicationFields = m.applicationFields
          ApplicationSettings = m.ApplicationSettings
          fields = m.fields
          Options = m.Options
        }
      )
)

/** True once `load` has built the schemas. */
export const isLoaded = (): boolean => schemas !== undefined

/**
 * Checks the service's options; the error names the first bad field. Synchronous, so the
 * schemas must be loaded (`load`; `check` does it): before, it throws.
 */
export const validate = (options: StreamsOptions): Either.Either<StreamsOptions, StreamsError> => {
  if (schemas === undefined) throw new Error('StreamsConfig.validate needs the schemas: run StreamsConfig.load first (StreamsConfig.check and the layers do)')
  return Either.map(schemas.checkOptions(options), () => options)
}

/** `validate` as an Effect that loads the schemas first. */
export const check = (options: StreamsOptions): Effect.Effect<StreamsOptions, StreamsError> =>
  Effect.zipRight(
    load,
    Effect.suspend(() => validate(options))
  )

/** What `validateApplication` checks: an application's settings besides its id. */
export interface ApplicationSettingsInput {
  readonly maxStreams: number
  readonly defaultStreamOnly: boolean
  readonly streamBufferSize: number
  readonly streamBufferBytes: number
  readonly maxWaitingBytes: number
  readonly unknownStreamGraceMs: number
}

/**
 * Checks an application's settings (defaults applied) by `applicationRules`; the error names
 * the first bad field. Needs no schema.
 */
export const validateApplication = <A extends ApplicationSettingsInput>(settings: A): Either.Either<A, StreamsError> => {
  for (const field of Object.keys(applicationRules) as Array<keyof typeof applicationRules>) {
    const rule = applicationRules[field]
    const value: unknown = settings[field]
    const message =
      'min' in rule
        ? typeof value === 'number' && Number.isInteger(value) && value >= rule.min && value <= rule.max
          ? undefined
          : `must be an integer from ${rule.min} to ${rule.max}`
        : typeof value === 'boolean'
          ? undefined
          : 'must be true or false'
    if (message !== undefined) return Either.left(new StreamsError({ reason: 'InvalidConfig', message: `${field} ${message}` }))
  }
  return Either.right(settings)
}

/**
 * The options from Effect `Config` (the environment by default): `STREAM_GRACE` (a duration
 * such as "5 seconds") and `TRANSPORT_MAX_STREAMS`; `Streams.layerConfig` nests them under
 * `MYCORRIZAL_`. The values read are checked by `validate`, the same schemas as any other input.
 */
export const config: Config.Config<StreamsOptions> = Config.all({
  grace: Config.duration('STREAM_GRACE').pipe(Config.withDescription('held time of incoming streams for names not created yet'), Config.option),
  maxStreams: Config.integer('TRANSPORT_MAX_STREAMS').pipe(Config.withDescription('streams a peer may keep open at once'), Config.option)
}).pipe(
  Config.map(({ grace, maxStreams }) => ({
    ...(Option.isSome(grace) ? { grace: grace.value } : {}),
    ...(Option.isSome(maxStreams) ? { transport: { maxStreams: maxStreams.value } } : {})
  }))
)
