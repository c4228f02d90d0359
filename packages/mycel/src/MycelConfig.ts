/**
 * Options of the cache (`MycelOptions`), declared once: one `effect/Schema` per option with
 * its bounds and description. `Mycel.layer(options)` and `Mycel.layerConfig` (Effect `Config`,
 * the environment by default) check values with these schemas before the cache starts; a bad
 * value fails the layer with a `MycelError` (InvalidConfig) naming the option.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Duration from 'effect/Duration'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import * as ParseResult from 'effect/ParseResult'
import * as Schema from 'effect/Schema'
import type { MycelOptions } from './internal/types.js'
import { MycelError } from './MycelError.js'

const MiB = 1024 * 1024

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
  requestTimeout: duration(1, 600_000, 'how long a remote read, acknowledged write or handoff batch waits for one owner (default 2 s)'),
  readyTimeout: duration(0, 3_600_000, "after joining, how long to wait for peers' handoffs before calling the node ready anyway (default 10 s)"),
  handoffBatch: integer(1, 1_000_000, 'entries per handoff batch at most (default 256)'),
  handoffBatchBytes: integer(1024, 1024 * MiB, 'bytes per handoff batch at most (default 1 MiB)'),
  maxPeerBytes: integer(64 * 1024, 64 * 1024 * MiB, 'bytes in flight to one peer at most (default 32 MiB)'),
  maxClockAhead: duration(0, 7 * 86_400_000, "versions from peers further ahead of this node's clock are refused (default 1 hour)"),
  leaveTimeout: duration(0, 600_000, 'at a graceful leave, how long to wait for the next owners to acknowledge every key (default 10 s; 0 = do not wait)'),
  antiEntropyInterval: duration(100, 86_400_000, 'how often co-owners compare what they hold, besides 1 s after every membership change (default 5 s)'),
  firstRequestId: integer(1, 2 ** 32 - 1, 'the first request id (default 1); for tests')
} as const

/** The options: every one optional, each checked by its rule in `fields`. */
export const Options = Schema.Struct(
  Object.fromEntries(Object.entries(fields).map(([k, s]) => [k, Schema.optional(s as Schema.Schema<unknown>)])) as {
    readonly [K in keyof typeof fields]: Schema.optional<(typeof fields)[K]>
  }
)

const decode = Schema.decodeUnknownEither(Options, { errors: 'first', onExcessProperty: 'ignore' })

/** Checks the options; the error names the first bad one. */
export const validate = (options: MycelOptions): Either.Either<MycelOptions, MycelError> =>
  Either.match(decode(options), {
    onLeft: (error) => {
      const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
      const field = issue === undefined || issue.path.length === 0 ? 'options' : issue.path.join('.')
      return Either.left(new MycelError({ reason: 'InvalidConfig', message: `${field} ${issue?.message ?? 'is not valid'}` }))
    },
    onRight: () => Either.right(options)
  })

/**
 * The options from Effect `Config` (the environment by default): `CACHE_REQUEST_TIMEOUT`,
 * `CACHE_READY_TIMEOUT`, `CACHE_LEAVE_TIMEOUT`, `CACHE_MAX_CLOCK_AHEAD` (durations such as
 * "2 seconds"), `CACHE_ANTI_ENTROPY_INTERVAL`, `CACHE_HANDOFF_BATCH`, `CACHE_HANDOFF_BATCH_BYTES`, `CACHE_MAX_PEER_BYTES`;
 * `Mycel.layerConfig` nests them under `MYCORRIZAL_`. The values read are checked by
 * `validate`, the same schemas as any other input.
 */
export const config: Config.Config<MycelOptions> = Config.all({
  requestTimeout: Config.duration('CACHE_REQUEST_TIMEOUT').pipe(Config.withDescription('remote operation timeout'), Config.option),
  readyTimeout: Config.duration('CACHE_READY_TIMEOUT').pipe(Config.withDescription('readiness wait after joining'), Config.option),
  leaveTimeout: Config.duration('CACHE_LEAVE_TIMEOUT').pipe(Config.withDescription('handoff wait at a graceful leave'), Config.option),
  maxClockAhead: Config.duration('CACHE_MAX_CLOCK_AHEAD').pipe(Config.withDescription('largest accepted clock lead of a peer'), Config.option),
  handoffBatch: Config.integer('CACHE_HANDOFF_BATCH').pipe(Config.withDescription('entries per handoff batch'), Config.option),
  handoffBatchBytes: Config.integer('CACHE_HANDOFF_BATCH_BYTES').pipe(Config.withDescription('bytes per handoff batch'), Config.option),
  maxPeerBytes: Config.integer('CACHE_MAX_PEER_BYTES').pipe(Config.withDescription('bytes in flight to one peer'), Config.option),
  antiEntropyInterval: Config.duration('CACHE_ANTI_ENTROPY_INTERVAL').pipe(Config.withDescription('anti-entropy interval'), Config.option)
}).pipe(
  Config.map((values) => {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(values) as Array<[string, Option.Option<unknown>]>) if (Option.isSome(v)) out[k] = v.value
    return out as MycelOptions
  })
)
