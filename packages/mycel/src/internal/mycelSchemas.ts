/**
 * The schemas of `MycelConfig`, built on first use: this module is the only one of the cache's
 * options that imports `effect/Schema`, and `MycelConfig.load` imports it dynamically, so
 * importing the package does not load Schema.
 */
import * as Duration from 'effect/Duration'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import { rules } from '../MycelConfig.js'
import { MycelError } from '../MycelError.js'

const integer = (min: number, max: number, description: string) =>
  Schema.Number.pipe(
    Schema.filter((n) => Number.isInteger(n) && n >= min && n <= max, { message: () => `must be an integer from ${min} to ${max}` })
  ).annotations({ description })

const duration = (minMs: number, maxMs: number, description: string) =>
  Schema.Union(Schema.DurationFromSelf, Schema.Number, Schema.String)
    .pipe(
      Schema.filter(
        (u) => {
          // Duration clamps a negative number to zero: a negative value is a mistake, not zero
          const d = typeof u === 'number' && !(u >= 0) ? undefined : Option.getOrUndefined(Duration.decodeUnknown(u))
          return d !== undefined && Duration.toMillis(d) >= minMs && Duration.toMillis(d) <= maxMs
        },
        { message: () => `must be a duration from ${minMs} ms to ${maxMs} ms, e.g. 2000 (ms) or "2 seconds"` }
      )
    )
    .annotations({ description })

/** The rule of every option, with its description. */
export const fields = {
  requestTimeout: duration(rules.requestTimeout.min, rules.requestTimeout.max, rules.requestTimeout.description),
  readyTimeout: duration(rules.readyTimeout.min, rules.readyTimeout.max, rules.readyTimeout.description),
  handoffBatch: integer(rules.handoffBatch.min, rules.handoffBatch.max, rules.handoffBatch.description),
  handoffBatchBytes: integer(rules.handoffBatchBytes.min, rules.handoffBatchBytes.max, rules.handoffBatchBytes.description),
  maxPeerBytes: integer(rules.maxPeerBytes.min, rules.maxPeerBytes.max, rules.maxPeerBytes.description),
  maxClockAhead: duration(rules.maxClockAhead.min, rules.maxClockAhead.max, rules.maxClockAhead.description),
  leaveTimeout: duration(rules.leaveTimeout.min, rules.leaveTimeout.max, rules.leaveTimeout.description),
  antiEntropyInterval: duration(rules.antiEntropyInterval.min, rules.antiEntropyInterval.max, rules.antiEntropyInterval.description),
  firstRequestId: integer(rules.firstRequestId.min, rules.firstRequestId.max, rules.firstRequestId.description),
} as const

/** The options: every one optional, each checked by its rule in `fields`. */
export const Options = Schema.Struct(
  Object.fromEntries(Object.entries(fields).map(([k, s]) => [k, Schema.optional(s as Schema.Schema<unknown>)])) as {
    readonly [K in keyof typeof fields]: Schema.optional<(typeof fields)[K]>
  }
)

const decode = Schema.decodeUnknownEither(Options, { errors: 'first', onExcessProperty: 'ignore' })

/** Checks the options; the error names the first bad one. */
export const check = (options: unknown): Either.Either<unknown, MycelError> =>
  Either.mapLeft(decode(options), (error) => {
    const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
    const field = issue === undefined || issue.path.length === 0 ? 'options' : issue.path.join('.')
    return new MycelError({ reason: 'InvalidConfig', message: `${field} ${issue?.message ?? 'is not valid'}` })
  })
