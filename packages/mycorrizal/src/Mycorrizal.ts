/**
 * The umbrella: one config builds every layer of a node (cluster, streams, cache), and a
 * Promise API for services that do not use Effect. The Effect layers stay the primary API:
 * `Mycorrizal.layer(config)` provides `Nodosum`, `Streams` and `Mycel` to an Effect program.
 *
 * @since 0.1.0
 */
import { Elections, Locks, Topics } from '@mycorrizal/coordination'
import { Mycel, MycelConfig, type MycelError } from '@mycorrizal/mycel'
import { ConfigError, Nodosum, NodosumConfig, type TransportError } from '@mycorrizal/nodosum'
import type { Application, ApplicationConfig, ApplicationStats, ReceiveFunc, Stream, StreamOptions, StreamStats, StreamsError } from '@mycorrizal/streams'
import { Streams, StreamsConfig } from '@mycorrizal/streams'
import type * as Schema from 'effect/Schema'
import * as Cause from 'effect/Cause'
import * as Config from 'effect/Config'
import type * as EffectConfigError from 'effect/ConfigError'
import * as Effect from 'effect/Effect'
import * as Exit from 'effect/Exit'
import * as Layer from 'effect/Layer'
import * as Logger from 'effect/Logger'
import * as LogLevel from 'effect/LogLevel'
import * as ManagedRuntime from 'effect/ManagedRuntime'

/** Everything a node needs; every field is validated with a message naming it. */
export interface MycorrizalConfig extends NodosumConfig.NodosumSettingsInput {
  /** How long an incoming stream for a name not created yet is held (default 5 s). */
  readonly streamGrace?: Streams.StreamsOptions['grace']
  /** Free buffers kept for copies of large outgoing messages: at most 64 MiB, dropped after 10 s idle by default. */
  readonly streamBufferPool?: Streams.StreamsOptions['bufferPool']
  /** Least severe log level printed (default 'info'); 'none' silences the library. */
  readonly logLevel?: 'debug' | 'info' | 'warning' | 'error' | 'none'
  /** Cache request timeout and readiness wait. */
  readonly cache?: Mycel.MycelOptions
  /** Publish and subscribe timeouts, topics per node. */
  readonly topics?: Topics.TopicsOptions
  /** Locks and elections: clock-skew allowance, `minMembers`, lock names kept. */
  readonly locks?: Locks.LocksOptions
}

/**
 * Why the layers of a node could not be built, as the packages' tagged errors:
 * `NodosumConfigError` (a cluster setting, or `logLevel`; `field` names it), `TransportError`
 * (the socket could not be bound), `StreamsError` (InvalidConfig: `streamGrace`) and
 * `MycelError` (InvalidConfig: an option of `cache`).
 */
export type MycorrizalError = ConfigError | TransportError | StreamsError | MycelError

/** The log levels of `MycorrizalConfig.logLevel`. */
export const LogLevels = ['debug', 'info', 'warning', 'error', 'none'] as const

/** What `fields` holds: the packages' schemas and the log level's. */
export type Fields = typeof NodosumConfig.fields & {
  readonly streamGrace: typeof StreamsConfig.fields.grace
  readonly logLevel: Schema.Schema<(typeof LogLevels)[number]>
  readonly cache: typeof MycelConfig.Options
}

/**
 * The rule of every field of `MycorrizalConfig`: the packages' schemas (`NodosumConfig.fields`,
 * `StreamsConfig.fields.grace`, `MycelConfig.Options`) and the log level. A live binding, set
 * by `load` (importing the package does not load `effect/Schema`); undefined before.
 */
export let fields: Fields

/**
 * Loads `effect/Schema` and builds the schemas of every package (`NodosumConfig.load`,
 * `StreamsConfig.load`, `MycelConfig.load`) and `fields`, once. The layers load what they
 * validate; this is for callers of the schemas themselves.
 */
export const load: Effect.Effect<void> = Effect.suspend(() =>
  fields !== undefined
    ? Effect.void
    : Effect.all([NodosumConfig.load, StreamsConfig.load, MycelConfig.load, Effect.promise(() => import('effect/Schema'))]).pipe(
        Effect.map(([, , , S]) => {
          fields = {
            ...NodosumConfig.fields,
            streamGrace: StreamsConfig.fields.grace,
            logLevel: S.Literal(...LogLevels).annotations({
              description: "least severe log level printed (default 'info'); 'none' silences the library",
              message: () => `must be one of ${LogLevels.join(', ')}`
            }),
            cache: MycelConfig.Options
          }
        })
      )
)

/** The services of one node. */
export type Services = Nodosum.Nodosum | Streams.Streams | Mycel.Mycel | Topics.Topics | Locks.Locks | Elections.Elections

/** The layers of one node, for Effect programs; a bad setting fails them with the package error naming it. */
export const layer = (config: MycorrizalConfig): Layer.Layer<Services, MycorrizalError> =>
  Layer.merge(Locks.layer(config.locks), Elections.layer(config.locks)).pipe(
    Layer.provideMerge(Layer.merge(Mycel.layer(config.cache), Topics.layer(config.topics))),
    Layer.provideMerge(Streams.layer({ grace: config.streamGrace, transport: config.transport, bufferPool: config.streamBufferPool })),
    Layer.provideMerge(Nodosum.layer(config))
  )

/**
 * Effect `Config` of a node (the environment by default): `NodosumConfig.config`,
 * `StreamsConfig.config` and `MycelConfig.config` under `MYCORRIZAL_` (`MYCORRIZAL_NODE_ID`,
 * `MYCORRIZAL_CLUSTER_SECRET`, `MYCORRIZAL_SEEDS`, `MYCORRIZAL_STREAM_GRACE`,
 * `MYCORRIZAL_CACHE_REQUEST_TIMEOUT`, ...).
 */
export const config: Config.Config<MycorrizalConfig> = Config.nested(
  Config.all({ node: NodosumConfig.config, streams: StreamsConfig.config, cache: MycelConfig.config }).pipe(
    Config.map(({ node, streams, cache }): MycorrizalConfig => ({
      ...node,
      ...(streams.grace === undefined ? {} : { streamGrace: streams.grace }),
      ...(Object.keys(cache).length === 0 ? {} : { cache })
    }))
  ),
  'MYCORRIZAL'
)

/** `layer` with the settings of `config` (the environment) over `input`, checked by the same schemas. */
export const layerConfig = (
  input: MycorrizalConfig = {}
): Layer.Layer<Services, MycorrizalError | EffectConfigError.ConfigError> =>
  Layer.unwrapEffect(
    Effect.map(config, (read) =>
      layer({ ...input, ...read, transport: { ...input.transport, ...read.transport }, cache: { ...input.cache, ...read.cache } })
    )
  )

/** The cache, with Promises. */
export interface MycorrizalCache {
  /** Every node of the service creates the buckets it uses. `ttlMs` is the default time to live, `maxSize` the entry limit (LRU). */
  createBucket(name: string, ttlMs: number, maxSize: number, options?: Mycel.BucketOptions): Promise<void>
  deleteBucket(name: string): Promise<void>
  put(bucket: string, key: string, value: Uint8Array, ttlMs?: number): Promise<void>
  /** The value, or undefined on a miss. */
  get(bucket: string, key: string): Promise<Uint8Array | undefined>
  delete(bucket: string, key: string): Promise<void>
  /**
   * Atomic, at the key's primary, replicated before it answers: stores `value` only when the key
   * holds none; true when it stored.
   */
  putIfAbsent(bucket: string, key: string, value: Uint8Array, ttlMs?: number): Promise<boolean>
  /** Atomic: stores `value` only when the key holds `expected` (undefined: holds none); true when it stored. */
  compareAndSet(bucket: string, key: string, expected: Uint8Array | undefined, value: Uint8Array, ttlMs?: number): Promise<boolean>
  /**
   * Atomic: adds `delta` (default 1) to the count (absent: 0) and resolves with the new count,
   * stored as decimal text like Redis, so `get` reads it. Rejects with `MycelError` NotInteger
   * or Overflow. Applied once even when retried after a failover.
   */
  increment(bucket: string, key: string, delta?: number, ttlMs?: number): Promise<number>
  stats(bucket: string): Mycel.BucketStats | undefined
  /** The buckets this node created (the locks' and elections' system buckets left out). */
  buckets(): ReadonlyArray<string>
  /** True once this node has received the keys it owns (readiness). */
  ready(): boolean
}

/** A subscription to a topic. */
export interface MycorrizalSubscription {
  readonly topic: string
  /** Stops delivery to this handler at once; resolves when every member knows. */
  unsubscribe(): Promise<void>
}

/** Topics (publish/subscribe between nodes), with Promises. */
export interface MycorrizalTopics {
  /**
   * Calls `handler` with every message published on `topic` by any node, this one included, once
   * each and in publish order per publisher. Resolves once every member knows of the subscription.
   * Rejects with `CoordinationError` (InvalidTopic, TooManyTopics, Timeout, Closed).
   */
  subscribe(topic: string, handler: Topics.TopicHandler): Promise<MycorrizalSubscription>
  /** Resolves once every node with a subscriber took the message; rejects with `CoordinationError` (PublishFailed, Timeout, ...). */
  publish(topic: string, payload: Uint8Array): Promise<void>
  stats(): ReadonlyArray<Topics.TopicStats>
}

/** A lock this node holds, with Promises. */
export interface MycorrizalLock {
  readonly name: string
  /** The fencing token: strictly increasing per name; the protected resource refuses lower ones. */
  readonly token: bigint
  /** True while the lease runs on this node's clock and the lock was not released or taken. */
  isHeld(): boolean
  /** Lease left on this node's clock, in ms. */
  remainingMs(): number
  /** The lease ends `ttlMs` from now; rejects with `CoordinationError` (LockLost, NotEnoughMembers, Unavailable). */
  extend(ttlMs: number): Promise<void>
  /** Frees the lock for the next holder. */
  release(): Promise<void>
}

/** Locks with fencing tokens, with Promises. */
export interface MycorrizalLocks {
  /**
   * Takes the lock, trying until `waitMs` (default 0) passed; rejects with `LockTimeout` then,
   * or `CoordinationError` (InvalidLock, NotEnoughMembers, Unavailable, Closed).
   */
  acquire(name: string, options: Locks.AcquireOptions): Promise<MycorrizalLock>
  /** One attempt: the lock, or undefined when another holder has it. */
  tryAcquire(name: string, options: Locks.AcquireOptions): Promise<MycorrizalLock | undefined>
  /** The lock's record as this node reads it (holder, last token, lease end). */
  inspect(name: string): Promise<Locks.LockView>
  stats(): Locks.LockStats
}

/** This node's candidacy in an election, with Promises. */
export interface MycorrizalElection {
  readonly name: string
  isLeader(): boolean
  /** The leader as this node knows it (itself when leading). */
  leader(): string | undefined
  /** The fencing token of this node's term, when leading. */
  token(): bigint | undefined
  /** Stops the candidacy; a leader releases its lock and is revoked. */
  resign(): Promise<void>
}

/** A change of the cluster's membership, as this node saw it. */
export interface MembershipChange {
  readonly type: 'joined' | 'left' | 'failed'
  readonly nodeId: string
}

/** A stream of an application, with Promises. */
export interface MycorrizalStream {
  /** Resolves once every target's buffer took the message; rejects with `SendError` or `StreamsError`. */
  send(payload: Uint8Array, nodeIds?: ReadonlyArray<string>): Promise<void>
  setReceiveFunc(fn: ReceiveFunc): void
  close(): Promise<void>
  name(): string
  /** The priority its QUIC streams are sent with on this node (RFC 9218 urgency 0-7, incremental). */
  priority(): { readonly urgency: number; readonly incremental: boolean }
  stats(): StreamStats
}

/** An application, with Promises for what waits and plain calls for the rest. */
export interface MycorrizalApplication {
  readonly id: string
  send(payload: Uint8Array, nodeIds?: ReadonlyArray<string>): Promise<void>
  setReceiveFunc(fn: ReceiveFunc): void
  nodes(): ReadonlyArray<string>
  /** Throws `StreamsError` (DuplicateStream, MaxStreamsReached, DefaultStreamOnly, InvalidName, InvalidConfig for a bad priority). */
  createStream(name: string, options?: StreamOptions): MycorrizalStream
  /** Throws `StreamsError` (UnknownStream). */
  getStream(name: string): MycorrizalStream
  closeStream(name: string): Promise<void>
  listStreams(): ReadonlyArray<string>
  stats(): ApplicationStats
}

/** A running node. */
export interface MycorrizalNode {
  readonly id: string
  /** The address actually bound (port 0 resolved). */
  readonly address: { readonly host: string; readonly port: number }
  /** Alive member ids, this node included, sorted. */
  nodes(): ReadonlyArray<string>
  members(): ReadonlyArray<Nodosum.Member>
  /** Throws `StreamsError` (DuplicateApplication, ReservedApplication, InvalidName). */
  registerApplication(id: string): MycorrizalApplication
  registerApplicationWithConfig(config: ApplicationConfig): MycorrizalApplication
  /** The distributed cache. */
  readonly mycel: MycorrizalCache
  /** Publish/subscribe between the nodes. */
  readonly topics: MycorrizalTopics
  /** Locks with fencing tokens. */
  readonly locks: MycorrizalLocks
  /**
   * Enters this node in election `name` (at most one leader per name among connected members,
   * lease-based); resolves after its first try. Rejects with `CoordinationError` (InvalidLock).
   */
  elect(name: string, options?: Elections.ElectOptions): Promise<MycorrizalElection>
  /**
   * Calls `listener` with every membership change from now on, once each, in the order this node
   * saw them. Returns the function that unsubscribes it.
   */
  onMembership(listener: (change: MembershipChange) => void): () => void
  /** The Effect services behind this node, for code that mixes both styles. */
  readonly services: {
    readonly nodosum: Nodosum.Nodosum['Type']
    readonly streams: Streams.Streams['Type']
    readonly mycel: Mycel.Mycel['Type']
    readonly topics: Topics.Topics['Type']
    readonly locks: Locks.Locks['Type']
    readonly elections: Elections.Elections['Type']
  }
  /** Announces leave, closes every stream and connection, releases the socket. */
  shutdown(): Promise<void>
}

const levels = {
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  none: LogLevel.None
} as const

/** Starts a node: validates the config, binds, joins the cluster through its seeds. */
export const createMycorrizal = async (config: MycorrizalConfig): Promise<MycorrizalNode> => {
  if (config.logLevel !== undefined && !(LogLevels as ReadonlyArray<unknown>).includes(config.logLevel)) {
    throw new ConfigError({ field: 'logLevel', message: `logLevel must be one of ${LogLevels.join(', ')}` })
  }
  // one reader of the membership events for every onMembership listener, owned by the node's scope
  const listeners = new Set<(change: MembershipChange) => void>()
  const types = { Joined: 'joined', Left: 'left', Failed: 'failed' } as const
  const membershipReader = Layer.scopedDiscard(
    Effect.flatMap(Nodosum.Nodosum, (nodosum) => nodosum.subscribe).pipe(
      Effect.flatMap((changes) =>
        Effect.forkScoped(
          changes.take.pipe(
            Effect.andThen((event) =>
              Effect.sync(() => {
                const change: MembershipChange = { type: types[event._tag], nodeId: event.member.id }
                for (const l of [...listeners]) {
                  try {
                    l(change)
                  } catch {
                    // a listener's failure is its own
                  }
                }
              })
            ),
            Effect.forever
          )
        )
      )
    )
  )
  const runtime = ManagedRuntime.make(
    membershipReader.pipe(Layer.provideMerge(layer(config)), Layer.provide(Logger.minimumLogLevel(levels[config.logLevel ?? 'info'])))
  )
  const run = <A, E>(effect: Effect.Effect<A, E, Services>): Promise<A> =>
    runtime.runPromiseExit(effect).then((exit) => {
      if (Exit.isSuccess(exit)) return exit.value
      throw Cause.squash(exit.cause)
    })
  const runSync = <A, E>(effect: Effect.Effect<A, E, Services>): A => {
    const exit = runtime.runSyncExit(effect)
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  }
  let services: MycorrizalNode['services']
  try {
    services = await run(
      Effect.all({ nodosum: Nodosum.Nodosum, streams: Streams.Streams, mycel: Mycel.Mycel, topics: Topics.Topics, locks: Locks.Locks, elections: Elections.Elections })
    )
  } catch (error) {
    await runtime.dispose()
    throw error
  }
  const { nodosum, streams, mycel, topics, locks, elections } = services
  const systemBuckets = new Set([Locks.BUCKET, Elections.BUCKET])
  const wrapLock = (lock: Locks.Lock): MycorrizalLock => ({
    name: lock.name,
    token: lock.token,
    isHeld: () => lock.isHeld(),
    remainingMs: () => lock.remainingMs(),
    extend: (ttlMs) => (lock.unsafeExtend === undefined ? run(lock.extend(ttlMs)) : lock.unsafeExtend(ttlMs)),
    release: () => (lock.unsafeRelease === undefined ? run(lock.release) : lock.unsafeRelease())
  })

  const onMembership = (listener: (change: MembershipChange) => void) => {
    listeners.add(listener)
    return () => void listeners.delete(listener)
  }

  const wrapStream = (stream: Stream): MycorrizalStream => ({
    send: (payload, nodeIds) => run(stream.send(payload, nodeIds)),
    setReceiveFunc: (fn) => stream.setReceiveFunc(fn),
    close: () => run(stream.close),
    name: () => stream.name(),
    priority: () => stream.priority(),
    stats: () => stream.stats()
  })
  const wrapApp = (app: Application): MycorrizalApplication => ({
    id: app.id,
    send: (payload, nodeIds) => run(app.send(payload, nodeIds)),
    setReceiveFunc: (fn) => app.setReceiveFunc(fn),
    nodes: () => app.nodes(),
    createStream: (name, options) => wrapStream(runSync(app.createStream(name, options))),
    getStream: (name) => wrapStream(runSync(app.getStream(name))),
    closeStream: (name) => run(app.closeStream(name)),
    listStreams: () => app.listStreams(),
    stats: () => app.stats()
  })

  let stopped: Promise<void> | undefined
  return {
    id: nodosum.nodeId,
    address: nodosum.boundAddress,
    nodes: () => nodosum.nodes(),
    members: () => nodosum.members(),
    registerApplication: (id) => wrapApp(runSync(streams.registerApplication(id))),
    registerApplicationWithConfig: (appConfig) => wrapApp(runSync(streams.registerApplicationWithConfig(appConfig))),
    mycel: {
      createBucket: (name, ttlMs, maxSize, options) => run(mycel.createBucket(name, ttlMs, maxSize, options)),
      deleteBucket: (name) => run(mycel.deleteBucket(name)),
      // no fiber per call: an answer this node has resolves at once
      put: (bucket, key, value, ttlMs) => mycel.unsafePut(bucket, key, value, ttlMs),
      get: (bucket, key) => mycel.unsafeGet(bucket, key),
      delete: (bucket, key) => mycel.unsafeDelete(bucket, key),
      putIfAbsent: (bucket, key, value, ttlMs) => mycel.unsafePutIfAbsent(bucket, key, value, ttlMs),
      compareAndSet: (bucket, key, expected, value, ttlMs) => mycel.unsafeCompareAndSet(bucket, key, expected, value, ttlMs),
      increment: (bucket, key, delta, ttlMs) => mycel.unsafeIncrement(bucket, key, delta, ttlMs),
      stats: (bucket) => mycel.stats(bucket),
      buckets: () => mycel.buckets().filter((b) => !systemBuckets.has(b)),
      ready: () => mycel.ready()
    },
    topics: {
      subscribe: (topic, handler) =>
        run(topics.subscribe(topic, handler)).then((sub) => ({ topic: sub.topic, unsubscribe: () => run(sub.unsubscribe) })),
      publish: (topic, payload) => topics.unsafePublish(topic, payload),
      stats: () => topics.stats()
    },
    locks: {
      acquire: (name, options) => locks.unsafeAcquire(name, options).then(wrapLock),
      tryAcquire: (name, options) => locks.unsafeTryAcquire(name, options).then((lock) => (lock === undefined ? undefined : wrapLock(lock))),
      inspect: (name) => run(locks.inspect(name)),
      stats: () => locks.stats()
    },
    elect: (name, options) =>
      run(elections.elect(name, options)).then((e) => ({
        name: e.name,
        isLeader: () => e.isLeader(),
        leader: () => e.leader(),
        token: () => e.token(),
        resign: () => run(e.resign)
      })),
    onMembership,
    services,
    shutdown: () =>
      (stopped ??= runtime.dispose().then(() => {
        listeners.clear()
      }))
  }
}
