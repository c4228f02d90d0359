/**
 * Settings of the streams service and of each application, declared once: one
 * `effect/Schema` per setting with its bounds and description. `Streams.layer(options)`,
 * `Streams.layerConfig` (Effect `Config`, the environment by default) and
 * `registerApplicationWithConfig` check values with these schemas; a bad value fails with a
 * `StreamsError` (InvalidConfig) naming the field.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Duration from 'effect/Duration'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import type { StreamsOptions } from './Streams.js'
import { StreamsError } from './StreamsError.js'

const GiB = 1024 * 1024 * 1024

const integer = (min: number, max: number, description: string) =>
  Schema.Number.pipe(
    Schema.filter((n) => Number.isInteger(n) && n >= min && n <= max, { message: () => `must be an integer from ${min} to ${max}` })
  ).annotations({ description })

/** The rules of an application's settings (`ApplicationConfig`), with their descriptions. */
export const applicationFields = {
  maxStreams: integer(0, 10_000, 'named streams the application may have at once (default 20)'),
  defaultStreamOnly: Schema.Boolean.annotations({ description: 'refuse named streams (default false)', message: () => 'must be true or false' }),
  streamBufferSize: integer(1, 1_000_000, 'messages buffered per stream and peer, in each direction (default 100)'),
  streamBufferBytes: integer(1024, GiB, 'bytes buffered per stream and peer, in each direction (default 8 MiB)'),
  maxWaitingBytes: integer(0, GiB, 'bytes of sends allowed to wait per stream and peer while its buffer is full'),
  unknownStreamGraceMs: integer(0, 600_000, 'ms an incoming stream of a name not created here is held before it is refused')
} as const

/** An application's settings besides its id, all present (after defaults). */
export const ApplicationSettings = Schema.Struct(applicationFields)

/** The rules of the service's options (`StreamsOptions`). */
export const fields = {
  grace: Schema.Union(Schema.DurationFromSelf, Schema.Number, Schema.String)
    .pipe(
      Schema.filter(
        (u) => {
          // Duration clamps a negative number to zero: a negative value is a mistake, not zero
          const d = typeof u === 'number' && !(u >= 0) ? undefined : Option.getOrUndefined(Duration.decodeUnknown(u))
          return d !== undefined && Duration.toMillis(d) >= 0 && Duration.toMillis(d) <= 600_000
        },
        { message: () => 'must be a duration from 0 to 10 minutes, e.g. 5000 (ms) or "5 seconds"' }
      )
    )
    .annotations({ description: 'how long an incoming stream for a name not created here yet is held before it is refused (default 5 s)' }),
  transport: Schema.Struct({
    maxStreams: Schema.optional(integer(1, 10_000, 'streams a peer may keep open at once (the transport setting; default 100)'))
  })
} as const

/** The service's options. */
export const Options = Schema.Struct({ grace: Schema.optional(fields.grace), transport: Schema.optional(fields.transport) })

const fieldOf = (issue: ParseResult.ArrayFormatterIssue | undefined) => (issue === undefined || issue.path.length === 0 ? 'options' : issue.path.join('.'))

const toError = (error: ParseResult.ParseError): StreamsError => {
  const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
  return new StreamsError({ reason: 'InvalidConfig', message: `${fieldOf(issue)} ${issue?.message ?? 'is not valid'}` })
}

const decodeOptions = Schema.decodeUnknownEither(Options, { errors: 'first', onExcessProperty: 'ignore' })
const decodeApplication = Schema.decodeUnknownEither(ApplicationSettings, { errors: 'first', onExcessProperty: 'ignore' })

/** Checks the service's options; the error names the first bad field. */
export const validate = (options: StreamsOptions): Either.Either<StreamsOptions, StreamsError> =>
  Either.mapLeft(decodeOptions(options), toError) as Either.Either<StreamsOptions, StreamsError>

/** Checks an application's settings (defaults applied); the error names the first bad field. */
export const validateApplication = <A extends Schema.Schema.Type<typeof ApplicationSettings>>(settings: A): Either.Either<A, StreamsError> =>
  Either.map(Either.mapLeft(decodeApplication(settings), toError), () => settings)

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
