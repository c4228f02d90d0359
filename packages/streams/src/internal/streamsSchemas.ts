/**
 * The schemas of `StreamsConfig`, built on first use: this module is the only one of the
 * streams settings that imports `effect/Schema`, and `StreamsConfig.load` imports it
 * dynamically, so importing the package does not load Schema.
 */
import * as Duration from 'effect/Duration'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import { applicationRules, descriptions } from '../StreamsConfig.js'
import { StreamsError } from '../StreamsError.js'

const integer = (rule: { readonly min: number; readonly max: number; readonly description: string }) =>
  Schema.Number.pipe(
    Schema.filter((n) => Number.isInteger(n) && n >= rule.min && n <= rule.max, { message: () => `must be an integer from ${rule.min} to ${rule.max}` })
  ).annotations({ description: rule.description })

/** The rules of an application's settings (`ApplicationConfig`), with their descriptions. */
export const applicationFields = {
  maxStreams: integer(applicationRules.maxStreams),
  defaultStreamOnly: Schema.Boolean.annotations({ description: applicationRules.defaultStreamOnly.description, message: () => 'must be true or false' }),
  streamBufferSize: integer(applicationRules.streamBufferSize),
  streamBufferBytes: integer(applicationRules.streamBufferBytes),
  maxWaitingBytes: integer(applicationRules.maxWaitingBytes),
  unknownStreamGraceMs: integer(applicationRules.unknownStreamGraceMs)
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
    .annotations({ description: descriptions.grace }),
  transport: Schema.Struct({
    maxStreams: Schema.optional(integer({ min: 1, max: 10_000, description: descriptions.transportMaxStreams }))
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

/** Checks the service's options; the error names the first bad field. */
export const checkOptions = (options: unknown): Either.Either<unknown, StreamsError> => Either.mapLeft(decodeOptions(options), toError)
