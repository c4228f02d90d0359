/**
 * The Effect shell of the cache engine: it feeds the engine client operations, the bucket
 * streams' messages, membership changes and clock ticks (all timed by the Effect `Clock`), and
 * carries out what the engine outputs — sends on the bucket streams, completions of the waiting
 * operations, log lines. One timer fiber, owned by the service's scope, wakes the engine when it
 * asks; after shutdown nothing runs, sends or logs.
 */
import { Nodosum } from '@mycorrizal/nodosum'
import { type Application, Streams, type Stream as BucketStream } from '@mycorrizal/streams'
import { CacheMessage } from '@mycorrizal/wire'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as FiberSet from 'effect/FiberSet'
import * as LogLevel from 'effect/LogLevel'
import * as Runtime from 'effect/Runtime'
import { MycelError } from '../MycelError.js'
import { millisOf } from './clock.js'
import { Completions, type Answer } from './completions.js'
import { Engine, type EngineOptions, PENDING, type Output } from './engine.js'
import { type NearConfig, TRACKED_KEYS } from './near.js'
import { Outbox } from './outbox.js'
import type { BucketOptions, BucketStats, MycelOptions } from './types.js'

const EMPTY = new Uint8Array(0)

/** Application id of the cache. */
export const APP_ID = 'SYSTEM-MYCEL'

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/
const levels = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error } as const
const streamName = (bucket: string) => `bucket:${bucket}`

/** What the service offers (the shape of the `Mycel` tag). */
export interface MycelService {
  readonly createBucket: (name: string, ttl: Duration.DurationInput, maxSize: number, options?: BucketOptions) => Effect.Effect<void, MycelError>
  readonly deleteBucket: (name: string) => Effect.Effect<void, MycelError>
  /** Stores on every owner; resolves when the primary (or every owner) has it. */
  readonly put: (bucket: string, key: string, value: Uint8Array, ttl?: Duration.DurationInput) => Effect.Effect<void, MycelError>
  /** The value, or undefined on a miss. */
  readonly get: (bucket: string, key: string) => Effect.Effect<Uint8Array | undefined, MycelError>
  readonly delete: (bucket: string, key: string) => Effect.Effect<void, MycelError>
  /**
   * `get`, `put` and `delete` for a Promise caller (the `mycorrizal` facade): the same
   * operations without an Effect fiber per call; an answer this node has resolves at once.
   * They reject with `MycelError`.
   */
  readonly unsafeGet: (bucket: string, key: string) => Promise<Uint8Array | undefined>
  readonly unsafePut: (bucket: string, key: string, value: Uint8Array, ttl?: Duration.DurationInput) => Promise<void>
  readonly unsafeDelete: (bucket: string, key: string) => Promise<void>
  /**
   * Stores `value` only when the key holds no value (absent, deleted or expired); true when it
   * stored. Runs at the key's primary and is replicated like a put before it answers.
   */
  readonly putIfAbsent: (bucket: string, key: string, value: Uint8Array, ttl?: Duration.DurationInput) => Effect.Effect<boolean, MycelError>
  /**
   * Stores `value` only when the key holds `expected` (undefined: holds no value); true when it
   * stored. Linearizable per key while the key's primary lives.
   */
  readonly compareAndSet: (bucket: string, key: string, expected: Uint8Array | undefined, value: Uint8Array, ttl?: Duration.DurationInput) => Effect.Effect<boolean, MycelError>
  /**
   * Adds `delta` (default 1) to the count the key holds (absent: 0) and returns the new count.
   * The count is stored as decimal text like Redis, so `get` reads it; a value that is not an
   * integer fails with `NotInteger`, a result beyond the safe integers with `Overflow`. Without
   * `ttl` an existing count keeps its lifetime (a new one gets the bucket's). An acknowledged
   * increment is applied once, and survives the loss of any one owner (R ≥ 2).
   */
  readonly increment: (bucket: string, key: string, delta?: number, ttl?: Duration.DurationInput) => Effect.Effect<number, MycelError>
  /** `putIfAbsent`, `compareAndSet` and `increment` for a Promise caller: no Effect fiber per call; they reject with `MycelError`. */
  readonly unsafePutIfAbsent: (bucket: string, key: string, value: Uint8Array, ttl?: Duration.DurationInput) => Promise<boolean>
  readonly unsafeCompareAndSet: (bucket: string, key: string, expected: Uint8Array | undefined, value: Uint8Array, ttl?: Duration.DurationInput) => Promise<boolean>
  readonly unsafeIncrement: (bucket: string, key: string, delta?: number, ttl?: Duration.DurationInput) => Promise<number>
  readonly stats: (bucket: string) => BucketStats | undefined
  readonly buckets: () => ReadonlyArray<string>
  /** True once a joining node has received its keys from the others (or waited long enough). */
  readonly ready: () => boolean
}

const ignore = (): void => {}

const durationMs = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) => Duration.toMillis(Duration.decode(input ?? fallback))

/** The engine's settings from the service's options and the node. */
const engineOptions = (options: MycelOptions, self: string, maxMessageSize: number): EngineOptions => ({
  self,
  maxMessageSize,
  requestTimeoutMs: durationMs(options.requestTimeout, '2 seconds'),
  readyTimeoutMs: durationMs(options.readyTimeout, '10 seconds'),
  settleMs: 1_000,
  rebalanceWindowMs: 10_000,
  handoffBatch: options.handoffBatch ?? 256,
  handoffBatchBytes: options.handoffBatchBytes ?? 1024 * 1024,
  maxPeerBytes: options.maxPeerBytes ?? 32 * 1024 * 1024,
  maxClockAheadMs: durationMs(options.maxClockAhead, '1 hour'),
  syncIntervalMs: durationMs(options.antiEntropyInterval, '5 seconds'),
  syncDelayMs: 1_000,
  ...(options.firstRequestId === undefined ? {} : { firstRequestId: options.firstRequestId })
})

/** A TTL in whole milliseconds (undefined: the bucket's), or the error naming the field. */
const ttlMsOf = (ttl: Duration.DurationInput | undefined, field: string): number | undefined | MycelError => {
  if (ttl === undefined) return undefined
  if (typeof ttl === 'number' && Number.isFinite(ttl) && ttl >= 1 && ttl <= 0xffffffff) return Math.round(ttl)
  const d = Duration.decodeUnknown(ttl)
  if (d._tag === 'None' || Duration.toMillis(d.value) < 1 || Duration.toMillis(d.value) > 0xffffffff) {
    return new MycelError({ reason: 'InvalidBucket', message: `${field} must be a duration from 1 ms to 49 days` })
  }
  return Math.round(Duration.toMillis(d.value))
}

/** A Promise caller's ttl, validated: `run` with it, or a rejection naming the field. */
const withTtl = <A>(ttl: Duration.DurationInput | undefined, run: (ttlMs: number | undefined) => Promise<A>): Promise<A> => {
  const ttlMs = ttlMsOf(ttl, 'ttl')
  return ttlMs instanceof MycelError ? Promise.reject(ttlMs) : run(ttlMs)
}

type AtomicCall = Parameters<Engine['atomic']>[2]
const putIfAbsentArgs = (key: string, value: Uint8Array, ttlMs: number | undefined): AtomicCall => ({ op: CacheMessage.AtomicOp.PutIfAbsent, key, expected: undefined, value, delta: 0, ttlMs })
const compareAndSetArgs = (key: string, expected: Uint8Array | undefined, value: Uint8Array, ttlMs: number | undefined): AtomicCall => ({
  op: CacheMessage.AtomicOp.CompareAndSet,
  key,
  expected,
  value,
  delta: 0,
  ttlMs
})
const incrementArgs = (key: string, delta: number, ttlMs: number | undefined): AtomicCall => ({ op: CacheMessage.AtomicOp.Increment, key, expected: undefined, value: EMPTY, delta, ttlMs })

const ttlOf = (ttl: Duration.DurationInput | undefined, field: string): Effect.Effect<number | undefined, MycelError> => {
  const ms = ttlMsOf(ttl, field)
  return ms instanceof MycelError ? Effect.fail(ms) : Effect.succeed(ms)
}

/** Why a bucket's name, size or replica count is not valid, if it is not. */
const invalidBucket = (name: string, maxSize: number, replicas: number): MycelError | undefined => {
  if (!NAME.test(name)) {
    return new MycelError({ reason: 'InvalidBucket', message: 'a bucket name is 1-100 letters, digits, ".", "_", ":" or "-", starting with a letter or digit' })
  }
  if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > 100_000_000) {
    return new MycelError({ reason: 'InvalidBucket', message: `maxSize must be an integer number of entries from 1 to 100,000,000, got ${maxSize}` })
  }
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 16) {
    return new MycelError({ reason: 'InvalidBucket', message: `replicas must be an integer from 1 to 16, got ${replicas}` })
  }
  return undefined
}

/** The near cache's settings from a bucket's options, or the error naming the bad field. */
export const nearConfigOf = (near: BucketOptions['nearCache']): NearConfig | undefined | MycelError => {
  if (near === undefined) return undefined
  const bad = (message: string) => new MycelError({ reason: 'InvalidBucket', message })
  if (typeof near !== 'object' || near === null) return bad('nearCache must be an object { maxSize, ttlMs }')
  const { maxSize, ttlMs, trackedKeys = TRACKED_KEYS } = near
  if (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > 100_000_000) return bad(`nearCache.maxSize must be an integer number of entries from 1 to 100,000,000, got ${maxSize}`)
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > 86_400_000) return bad(`nearCache.ttlMs must be an integer number of milliseconds from 1 to 86,400,000, got ${ttlMs}`)
  if (!Number.isInteger(trackedKeys) || trackedKeys < 0 || trackedKeys > 10_000_000) {
    return bad(`nearCache.trackedKeys must be an integer number of keys from 0 to 10,000,000, got ${trackedKeys}`)
  }
  return { maxSize, ttlMs, trackedKeys }
}

/** What the service's operations need of the shell. */
interface Shell {
  readonly engine: Engine
  readonly app: Application
  readonly bucketStreams: Map<string, BucketStream>
  readonly now: () => number
  readonly log: (effect: Effect.Effect<void>) => void
  /** Carries out the engine's outputs. */
  readonly flush: () => void
  /** Sends what the outbox gathered, now. */
  readonly sendNow: () => void
  readonly operation: <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING) => Effect.Effect<A, MycelError>
  readonly operationPromise: <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING) => Promise<A>
  /**
   * `operationPromise` for atomic operations: the outputs are carried out at the end of the
   * current microtasks, so the operations a caller starts in one go on a key replicate as one
   * value (`atomic.ts`); they wait for the outbox's flush anyway.
   */
  readonly atomicPromise: <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING) => Promise<A>
  readonly isClosed: () => boolean
}

export const makeService = (options: MycelOptions = {}) =>
  Effect.gen(function* () {
    const nodosum = yield* Nodosum.Nodosum
    const streams = yield* Streams.Streams
    // a node that lacks a bucket refuses its stream after 1 s (buckets are created at start-up,
    // within that time on every node), so a request to it fails with BucketNotFound before its timeout
    const app = yield* streams.registerApplicationWithConfig({ id: APP_ID, maxStreams: 1_000, streamBufferSize: 1_000, unknownStreamGraceMs: 1_000, priority: { urgency: 1 } })
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    // one clock: Effect's, with sub-millisecond resolution for the latency histograms
    const now = millisOf(clock)
    const engine = new Engine(engineOptions(options, nodosum.nodeId, nodosum.maxMessageSize), nodosum.nodes(), now())
    const fibers = yield* FiberSet.make<void>()
    const runInScope = yield* FiberSet.runtime(fibers)<never>()
    const log = Runtime.runSync(runtime)
    const bucketStreams = new Map<string, BucketStream>()
    const completions = new Completions()
    let closed = false
    let flushing = false
    let timerAt = Infinity

    /** A payload for `to` could not be sent: the engine hears of each message it carried. */
    const sendFailed = (bucket: string, to: string, carried: ReadonlyArray<CacheMessage.CacheMessage>, e: { readonly message: string }) => {
      if (closed) return
      for (const message of carried) engine.sendFailed(bucket, to, message, e.message, now())
      flush()
    }
    // what the engine sends goes out once per turn, per bucket and peer, as one payload (outbox.ts)
    const outbox = new Outbox(
      {
        send: (bucket, to, bytes, carried) => {
          const stream = bucketStreams.get(bucket)
          if (stream === undefined || closed) return
          try {
            const waiting = stream.offer(bytes, [to])
            if (waiting !== undefined) {
              // the peer's buffer is full: these bytes count against its budget until it takes them
              const n = bytes.byteLength
              engine.queuedChanged(to, n)
              waiting.then(
                () => engine.queuedChanged(to, -n),
                (e: Error) => {
                  engine.queuedChanged(to, -n)
                  sendFailed(bucket, to, carried, e)
                }
              )
            }
          } catch (e) {
            sendFailed(bucket, to, carried, e as Error)
          }
        },
        unencodable: (bucket, to, message, error) => {
          if (closed) return
          engine.sendFailed(bucket, to, message, error instanceof Error ? error.message : String(error), now())
          flush()
        }
      },
      nodosum.maxMessageSize
    )
    const send = (o: Output & { readonly _tag: 'Send' }) => {
      if (!closed) outbox.add(o.bucket, o.to, o.message)
    }

    /** Carries out the engine's outputs, then sets the timer it asks for. */
    const flush = (): void => {
      if (flushing) return
      flushing = true
      try {
        const out = engine.out
        for (let i = 0; i < out.length; i++) {
          const o = out[i]!
          switch (o._tag) {
            case 'Send':
              send(o)
              break
            case 'Done':
              completions.settle(o.op, undefined, o.value)
              break
            case 'Result':
              completions.settle(o.op, undefined, o.result)
              break
            case 'Fail':
              completions.settle(o.op, o.error, undefined)
              break
            case 'Log':
              if (!closed) log(Effect.logWithLevel(levels[o.level], o.message).pipe(Effect.annotateLogs({ node: engine.self, ...o.annotations })))
              break
          }
        }
        // emptied only when it holds something: setting an array's length is a runtime call, and most operations output nothing
        if (out.length !== 0) out.length = 0
      } finally {
        flushing = false
      }
      schedule()
    }

    const schedule = () => {
      if (closed) return
      const at = engine.nextWake()
      if (at === undefined || at >= timerAt) return
      timerAt = at
      // the engine's time never goes back: the wait is measured on it, not on the clock
      const wait = engine.wakeIn(now()) ?? 0
      runInScope(
        Effect.sleep(Duration.millis(Math.ceil(wait))).pipe(
          Effect.andThen(
            Effect.sync(() => {
              if (timerAt === at) timerAt = Infinity
              if (closed) return
              engine.tick(now())
              flush()
            })
          )
        )
      )
    }

    /** Runs a client operation: its result at once, or a wait for its completion. */
    const operation = <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING): Effect.Effect<A, MycelError> =>
      Effect.suspend(() => {
        const op = completions.start()
        const result = start(op)
        flush()
        if (result === PENDING) return completions.effect<A>(op)
        return result instanceof MycelError ? Effect.fail(result) : Effect.succeed(result)
      })

    /**
     * An operation for a Promise caller: no fiber; a result at hand resolves at once. `after`
     * carries out the engine's outputs once the operation started (even when it threw).
     */
    const promiseOf = <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING, after: () => void): Promise<A> => {
      const op = completions.start()
      let result: A | MycelError | typeof PENDING
      try {
        result = start(op)
      } finally {
        after()
      }
      if (result === PENDING) return completions.promise<A>(op)
      return result instanceof MycelError ? Promise.reject(result) : Promise.resolve(result)
    }
    const operationPromise = <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING): Promise<A> => promiseOf(start, flush)

    // the atomic operations of one turn share a replication: their outputs are carried out once,
    // after the turn's microtasks
    let flushQueued = false
    const deferredFlush = () => {
      flushQueued = false
      flush()
    }
    const queueFlush = () => {
      if (flushQueued) return
      flushQueued = true
      queueMicrotask(deferredFlush)
    }
    const atomicPromise = <A extends Answer>(start: (op: number) => A | MycelError | typeof PENDING): Promise<A> => promiseOf(start, queueFlush)

    // subscribed before the fiber starts: no change between here and its first take is missed
    const changes = yield* nodosum.subscribe
    yield* changes.take.pipe(
      Effect.andThen(
        Effect.sync(() => {
          engine.membership(nodosum.nodes(), now())
          flush()
        })
      ),
      Effect.forever,
      Effect.forkScoped
    )
    // registered after the membership fiber, so it runs first at shutdown: a graceful leave hands
    // every key to the owners after this node and waits (at most leaveTimeout) for their
    // acknowledgements while membership changes and answers still arrive
    const leaveTimeoutMs = durationMs(options.leaveTimeout, '10 seconds')
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        // the member set as it is now (a node that left the mesh already has no one to hand to)
        engine.membership(nodosum.nodes(), now())
        engine.leave(now())
        flush()
        if (leaveTimeoutMs > 0 && !engine.drained()) {
          // finalizers are not interruptible: the wait checks its deadline itself
          const deadline = now() + leaveTimeoutMs
          yield* Effect.sleep(Duration.millis(Math.min(50, leaveTimeoutMs))).pipe(
            Effect.repeat({ until: () => closed || engine.drained() || now() >= deadline }),
            Effect.withClock(clock)
          )
          if (!engine.drained()) log(Effect.logWarning('left before every key was handed off').pipe(Effect.annotateLogs({ node: engine.self, waitedMs: leaveTimeoutMs })))
        }
        engine.close()
        flush()
        outbox.flush()
        closed = true
        completions.failAll(new MycelError({ reason: 'Closed', message: 'the cache is shutting down' }))
      })
    )
    // joining, an alone node turns ready after settling, a joiner after its ready timeout at most
    flush()

    return serviceOver({ engine, app, bucketStreams, now, log, flush, sendNow: outbox.flush, operation, operationPromise, atomicPromise, isClosed: () => closed })
  })

/** The cache's operations over a running shell (the engine and what carries out its outputs). */
const serviceOver = (shell: Shell): MycelService => {
  const { engine, app, bucketStreams, now, log, flush, sendNow, operation, operationPromise, atomicPromise } = shell
  /** Starts an atomic operation on the engine (the same for the Effect and the Promise entry points). */
  const atomic = (bucket: string, args: AtomicCall) => (op: number) => engine.atomic(op, bucket, args, now())
  return {
    createBucket: (name, ttl, maxSize, bucketOptions = {}) =>
      Effect.gen(function* () {
        const replicas = bucketOptions.replicas ?? 2
        const invalid = invalidBucket(name, maxSize, replicas)
        if (invalid !== undefined) return yield* invalid
        const nearCache = nearConfigOf(bucketOptions.nearCache)
        if (nearCache instanceof MycelError) return yield* nearCache
        const ttlMs = (yield* ttlOf(ttl, 'ttl'))!
        if (engine.buckets.has(name)) return yield* new MycelError({ reason: 'BucketExists', message: `bucket '${name}' exists` })
        const stream = yield* app.createStream(streamName(name)).pipe(
          Effect.mapError((e) => new MycelError({ reason: 'InvalidBucket', message: `bucket '${name}': ${e.message}` }))
        )
        bucketStreams.set(name, stream)
        const created = engine.addBucket(name, { ttlMs, maxSize, replicas, maxBytes: bucketOptions.maxBytes ?? 0, writeConcern: bucketOptions.writeConcern ?? 'primary', nearCache }, now())
        stream.setReceiveFunc((payload, from) => {
          if (shell.isClosed()) return
          const at = now()
          CacheMessage.decodeEach(
            payload,
            (message) => engine.receive(name, from, message, at),
            (e) => log(Effect.logWarning('malformed cache message').pipe(Effect.annotateLogs({ node: engine.self, bucket: name, from, error: e.message })))
          )
          flush()
        })
        stream.setRefusedFunc((node) => {
          if (shell.isClosed()) return
          engine.refused(name, node, now())
          flush()
        })
        flush()
        if (created instanceof MycelError) return yield* created
      }),
    deleteBucket: (name) =>
      Effect.gen(function* () {
        // what is gathered for the bucket's stream goes before it closes
        sendNow()
        const stream = bucketStreams.get(name)
        if (stream === undefined || !engine.removeBucket(name)) return yield* new MycelError({ reason: 'BucketNotFound', message: `no bucket '${name}' on this node` })
        bucketStreams.delete(name)
        flush()
        yield* stream.close
      }),
    put: (bucket, key, value, ttl) =>
      ttlOf(ttl, 'ttl').pipe(Effect.flatMap((ttlMs) => Effect.asVoid(operation((op) => engine.put(op, bucket, key, value, ttlMs, now()))))),
    get: (bucket, key) => operation((op) => engine.get(op, bucket, key, now())),
    delete: (bucket, key) => Effect.asVoid(operation((op) => engine.delete(op, bucket, key, now()))),
    unsafeGet: (bucket, key) => operationPromise((op) => engine.get(op, bucket, key, now())),
    unsafePut: (bucket, key, value, ttl) => withTtl(ttl, (ttlMs) => operationPromise((op) => engine.put(op, bucket, key, value, ttlMs, now())).then(ignore)),
    unsafeDelete: (bucket, key) => operationPromise((op) => engine.delete(op, bucket, key, now())).then(ignore),
    putIfAbsent: (bucket, key, value, ttl) => ttlOf(ttl, 'ttl').pipe(Effect.flatMap((ttlMs) => operation<boolean>(atomic(bucket, putIfAbsentArgs(key, value, ttlMs))))),
    compareAndSet: (bucket, key, expected, value, ttl) =>
      ttlOf(ttl, 'ttl').pipe(Effect.flatMap((ttlMs) => operation<boolean>(atomic(bucket, compareAndSetArgs(key, expected, value, ttlMs))))),
    increment: (bucket, key, delta = 1, ttl) => ttlOf(ttl, 'ttl').pipe(Effect.flatMap((ttlMs) => operation<number>(atomic(bucket, incrementArgs(key, delta, ttlMs))))),
    unsafePutIfAbsent: (bucket, key, value, ttl) => withTtl(ttl, (ttlMs) => atomicPromise<boolean>(atomic(bucket, putIfAbsentArgs(key, value, ttlMs)))),
    unsafeCompareAndSet: (bucket, key, expected, value, ttl) =>
      withTtl(ttl, (ttlMs) => atomicPromise<boolean>(atomic(bucket, compareAndSetArgs(key, expected, value, ttlMs)))),
    unsafeIncrement: (bucket, key, delta = 1, ttl) => withTtl(ttl, (ttlMs) => atomicPromise<number>(atomic(bucket, incrementArgs(key, delta, ttlMs)))),
    stats: (bucket) => engine.stats(bucket),
    buckets: () => [...engine.buckets.keys()],
    ready: () => engine.ready(now())
  }
}

