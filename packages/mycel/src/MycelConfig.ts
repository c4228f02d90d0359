/**
 * Options of the cache (`MycelOptions`), declared once: the bounds and description of each
 * (`rules`), checked by one `effect/Schema` per option, built on first use (`load`) so that
 * importing the package does not load Schema. `Mycel.layer(options)` and `Mycel.layerConfig` (Effect `Config`,
 * the environment by default) check values with these schemas before the cache starts; a bad
 * value fails the layer with a `MycelError` (InvalidConfig) naming the option.
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import * as Effect from 'effect/Effect'
import * as Either from 'effect/Either'
import * as Option from 'effect/Option'
import type * as Schemas from './internal/mycelSchemas.js'
import type { MycelOptions } from './internal/types.js'
import type { MycelError } from './MycelError.js'

const MiB = 1024 * 1024

/** The bounds and description of every option (durations in ms); `fields` are the same rules as schemas. */
export const rules = {
  requestTimeout: { kind: 'duration', min: 1, max: 600_000, description: 'how long a remote read, acknowledged write or handoff batch waits for one owner (default 2 s)' },
  readyTimeout: { kind: 'duration', min: 0, max: 3_600_000, description: "after joining, how long to wait for peers' handoffs before calling the node ready anyway (default 10 s)" },
  handoffBatch: { kind: 'integer', min: 1, max: 1_000_000, description: 'entries per handoff batch at most (default 256)' },
  handoffBatchBytes: { kind: 'integer', min: 1024, max: 1024 * MiB, description: 'bytes per handoff batch at most (default 1 MiB)' },
  maxPeerBytes: { kind: 'integer', min: 64 * 1024, max: 64 * 1024 * MiB, description: 'bytes in flight to one peer at most (default 32 MiB)' },
  maxClockAhead: { kind: 'duration', min: 0, max: 7 * 86_400_000, description: "versions from peers further ahead of this node's clock are refused (default 1 hour)" },
  leaveTimeout: { kind: 'duration', min: 0, max: 600_000, description: 'at a graceful leave, how long to wait for the next owners to acknowledge every key (default 10 s; 0 = do not wait)' },
  antiEntropyInterval: { kind: 'duration', min: 100, max: 86_400_000, description: 'how often co-owners compare what they hold, besides 1 s after every membership change (default 5 s)' },
  firstRequestId: { kind: 'integer', min: 1, max: 2 ** 32 - 1, description: 'the first request id (default 1); for tests' },
} as const

let schemas: typeof Schemas | undefined

/*
 * The schemas are live bindings, set by `load`: importing the package does not load
 * `effect/Schema`; the layers build them where the options are validated. Undefined before.
 */

/** The rule of every option, with its description. Built by `load`. */
export let fields: typeof Schemas.fields

/** The options: every one optional, each checked by its rule in `fields`. Built by `load`. */
export let Options: typeof Schemas.Options

/**
 * Loads `effect/Schema` and builds the schemas, once. `check` and the layers run it; after it,
 * `validate` and the schemas above can be used synchronously.
 */
export const load: Effect.Effect<void> = Effect.suspend(() =>
  schemas !== undefined
    ? Effect.void
    : Effect.map(
        Effect.promise(() => import('./internal/mycelSchemas.js')),
        (m) => {
          schemas = m
          fields = m.fields
          Options = m.Options
        }
      )
)

/** True once `load` has built the schemas. */
export const isLoaded = (): boolean => schemas !== undefined

/**
 * Checks the options; the error names the first bad one. Synchronous, so the schemas must be
 * loaded (`load`; `check` does it): before, it throws.
 */
export const validate = (options: MycelOptions): Either.Either<MycelOptions, MycelError> => {
  if (schemas === undefined) throw new Error('MycelConfig.validate needs the schemas: run MycelConfig.load first (MycelConfig.check and the layers do)')
  return Either.map(schemas.check(options), () => options)
}

/** `validate` as an Effect that loads the schemas first. */
export const check = (options: MycelOptions): Effect.Effect<MycelOptions, MycelError> =>
  Effect.zipRight(
    load,
    Effect.suspend(() => validate(options))
  )

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
