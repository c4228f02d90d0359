/**
 * The umbrella: one config builds every layer of a node (cluster, streams, cache), and a
 * Promise API for services that do not use Effect. The Effect layers stay the primary API:
 * `Mycorrizal.layer(config)` provides `Nodosum`, `Streams` and `Mycel` to an Effect program.
 *
 * @since 0.1.0
 */
import { Mycel } from '@mycorrizal/mycel'
import { Nodosum, type NodosumConfig } from '@mycorrizal/nodosum'
import type { Application, ApplicationConfig, ApplicationStats, ReceiveFunc, Stream, StreamStats } from '@mycorrizal/streams'
import { Streams } from '@mycorrizal/streams'
import { Cause, Effect, Exit, Layer, Logger, LogLevel, ManagedRuntime } from 'effect'

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
}

/** The layers of one node, for Effect programs. */
export const layer = (config: MycorrizalConfig): Layer.Layer<Nodosum.Nodosum | Streams.Streams | Mycel.Mycel, unknown> =>
  Mycel.layer(config.cache).pipe(Layer.provideMerge(Streams.layer({ grace: config.streamGrace, transport: config.transport, bufferPool: config.streamBufferPool })), Layer.provideMerge(Nodosum.layer(config)))

/** The cache, with Promises. */
export interface MycorrizalCache {
  /** Every node of the service creates the buckets it uses. `ttlMs` is the default time to live, `maxSize` the entry limit (LRU). */
  createBucket(name: string, ttlMs: number, maxSize: number, options?: Mycel.BucketOptions): Promise<void>
  deleteBucket(name: string): Promise<void>
  put(bucket: string, key: string, value: Uint8Array, ttlMs?: number): Promise<void>
  /** The value, or undefined on a miss. */
  get(bucket: string, key: string): Promise<Uint8Array | undefined>
  delete(bucket: string, key: string): Promise<void>
  stats(bucket: string): Mycel.BucketStats | undefined
  buckets(): ReadonlyArray<string>
  /** True once this node has received the keys it owns (readiness). */
  ready(): boolean
}

/** A stream of an application, with Promises. */
export interface MycorrizalStream {
  /** Resolves once every target's buffer took the message; rejects with `SendError` or `StreamsError`. */
  send(payload: Uint8Array, nodeIds?: ReadonlyArray<string>): Promise<void>
  setReceiveFunc(fn: ReceiveFunc): void
  close(): Promise<void>
  name(): string
  stats(): StreamStats
}

/** An application, with Promises for what waits and plain calls for the rest. */
export interface MycorrizalApplication {
  readonly id: string
  send(payload: Uint8Array, nodeIds?: ReadonlyArray<string>): Promise<void>
  setReceiveFunc(fn: ReceiveFunc): void
  nodes(): ReadonlyArray<string>
  /** Throws `StreamsError` (DuplicateStream, MaxStreamsReached, DefaultStreamOnly, InvalidName). */
  createStream(name: string): MycorrizalStream
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
  /** The Effect services behind this node, for code that mixes both styles. */
  readonly services: { readonly nodosum: Nodosum.Nodosum['Type']; readonly streams: Streams.Streams['Type']; readonly mycel: Mycel.Mycel['Type'] }
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
  const runtime = ManagedRuntime.make(layer(config).pipe(Layer.provide(Logger.minimumLogLevel(levels[config.logLevel ?? 'info']))))
  const run = <A, E>(effect: Effect.Effect<A, E, Nodosum.Nodosum | Streams.Streams | Mycel.Mycel>): Promise<A> =>
    runtime.runPromiseExit(effect).then((exit) => {
      if (Exit.isSuccess(exit)) return exit.value
      throw Cause.squash(exit.cause)
    })
  const runSync = <A, E>(effect: Effect.Effect<A, E, Nodosum.Nodosum | Streams.Streams | Mycel.Mycel>): A => {
    const exit = runtime.runSyncExit(effect)
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  }
  let services: MycorrizalNode['services']
  try {
    services = await run(Effect.all({ nodosum: Nodosum.Nodosum, streams: Streams.Streams, mycel: Mycel.Mycel }))
  } catch (error) {
    await runtime.dispose()
    throw error
  }
  const { nodosum, streams, mycel } = services

  const wrapStream = (stream: Stream): MycorrizalStream => ({
    send: (payload, nodeIds) => run(stream.send(payload, nodeIds)),
    setReceiveFunc: (fn) => stream.setReceiveFunc(fn),
    close: () => run(stream.close),
    name: () => stream.name(),
    stats: () => stream.stats()
  })
  const wrapApp = (app: Application): MycorrizalApplication => ({
    id: app.id,
    send: (payload, nodeIds) => run(app.send(payload, nodeIds)),
    setReceiveFunc: (fn) => app.setReceiveFunc(fn),
    nodes: () => app.nodes(),
    createStream: (name) => wrapStream(runSync(app.createStream(name))),
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
      put: (bucket, key, value, ttlMs) => run(mycel.put(bucket, key, value, ttlMs)),
      get: (bucket, key) => run(mycel.get(bucket, key)),
      delete: (bucket, key) => run(mycel.delete(bucket, key)),
      stats: (bucket) => mycel.stats(bucket),
      buckets: () => mycel.buckets(),
      ready: () => mycel.ready()
    },
    services,
    shutdown: () => (stopped ??= runtime.dispose())
  }
}
