/**
 * The Effect shell of the topics engine: it registers the `SYSTEM-TOPICS` application, feeds the
 * engine client operations, messages, membership changes and clock ticks (the Effect `Clock`),
 * and carries out what it outputs — Interest and Delivered messages on the default stream,
 * publishes on each topic's own stream, calls of the local handlers, completions. One timer fiber
 * at a time, owned by the service's scope; after shutdown nothing runs, sends or calls a handler.
 */
import { Nodosum } from '@mycorrizal/nodosum'
import { SendError, Streams, type Stream as TopicStream } from '@mycorrizal/streams'
import { TopicMessage } from '@mycorrizal/wire'
import * as Cause from 'effect/Cause'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Exit from 'effect/Exit'
import * as FiberSet from 'effect/FiberSet'
import * as Runtime from 'effect/Runtime'
import { CoordinationError } from '../CoordinationError.js'
import { streamName, TopicsEngine, type Output, type TopicStats } from './topics.js'

/** Application id of the topics service. */
export const APP_ID = 'SYSTEM-TOPICS'

export type TopicHandler = (payload: Uint8Array, fromNode: string) => void | Promise<void>

export interface Subscription {
  readonly topic: string
  /** Stops delivery to this handler at once; completes when the members know (or left). */
  readonly unsubscribe: Effect.Effect<void>
}

export interface TopicsOptions {
  /** How long a publish waits for every node with a subscriber to take the message (default 5 s). */
  readonly publishTimeout?: Duration.DurationInput
  /** How long a subscribe waits for every member to learn of it (default 5 s). */
  readonly subscribeTimeout?: Duration.DurationInput
  /** Topics this node may subscribe to or publish on (default 1,000). */
  readonly maxTopics?: number
}

/** What the service offers (the shape of the `Topics` tag). */
export interface TopicsService {
  /**
   * Calls `handler` with every message published on `topic` by any node, this one included, once
   * each and in publish order per publisher. Completes once every member knows of the
   * subscription, so a publish started after it reaches this handler.
   */
  readonly subscribe: (topic: string, handler: TopicHandler) => Effect.Effect<Subscription, CoordinationError>
  /** Delivers to every subscriber; completes once every node with a subscriber took the message. */
  readonly publish: (topic: string, payload: Uint8Array) => Effect.Effect<void, CoordinationError>
  /**
   * `publish` as a Promise, for the Promise facade: no Effect fiber per message (it rejects with
   * the same `CoordinationError`s). Like the Effect, nothing happens when it is not called.
   */
  readonly unsafePublish: (topic: string, payload: Uint8Array) => Promise<void>
  /** Every topic this node subscribes to or published on, sorted by name. */
  readonly stats: () => ReadonlyArray<TopicStats>
}

const durationMs = (input: Duration.DurationInput | undefined, fallback: Duration.DurationInput) => Duration.toMillis(Duration.decode(input ?? fallback))

export const makeService = (options: TopicsOptions = {}) =>
  Effect.gen(function* () {
    const maxTopics = options.maxTopics ?? 1_000
    if (!Number.isInteger(maxTopics) || maxTopics < 1 || maxTopics > 10_000) {
      return yield* Effect.dieMessage(`topics: maxTopics must be an integer from 1 to 10,000, got ${maxTopics}`)
    }
    const nodosum = yield* Nodosum.Nodosum
    const streams = yield* Streams.Streams
    const app = yield* streams.registerApplicationWithConfig({ id: APP_ID, maxStreams: maxTopics, streamBufferSize: 1_000, priority: { urgency: 2 } })
    const runtime = yield* Effect.runtime<never>()
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const log = Runtime.runSync(runtime)
    const fibers = yield* FiberSet.make<void>()
    const runInScope = yield* FiberSet.runtime(fibers)<never>()
    const engine = new TopicsEngine(
      {
        self: nodosum.nodeId,
        epoch: (Math.random() * 0x100000000) >>> 0,
        publishTimeoutMs: durationMs(options.publishTimeout, '5 seconds'),
        subscribeTimeoutMs: durationMs(options.subscribeTimeout, '5 seconds'),
        maxTopics
      },
      nodosum.nodes()
    )
    const handlers = new Map<string, Map<number, TopicHandler>>()
    const topicStreams = new Map<string, TopicStream>()
    /** Who waits for an op: called once with its error, or undefined when it completed. */
    const waiters = new Map<number, (error: CoordinationError | undefined) => void>()
    /** Ops that completed before anyone waited for them. */
    const early = new Map<number, CoordinationError | undefined>()
    let nextOp = 1
    let closed = false
    let flushing = false
    let timerAt = Infinity
    let ackScheduled = false

    const settle = (op: number, error: CoordinationError | undefined) => {
      const resume = waiters.get(op)
      if (resume === undefined) early.set(op, error)
      else {
        waiters.delete(op)
        resume(error)
      }
    }

    const warn = (message: string, annotations: Record<string, unknown>) => {
      if (!closed) log(Effect.logWarning(message).pipe(Effect.annotateLogs({ node: engine.self, ...annotations })))
    }

    /** Calls the topic's handlers; adds the promises of those that did not finish at once to `running` (made on the first). */
    const deliver = (topic: string, from: string, payload: Uint8Array, running: Array<Promise<unknown>> | undefined) => {
      const subscribers = handlers.get(topic)
      if (subscribers === undefined) return running
      for (const handler of subscribers.values()) {
        try {
          const result = handler(payload, from)
          if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
            ;(running ??= []).push((result as Promise<void>).catch((e: unknown) => warn('topic handler failed', { topic, from, error: String(e) })))
          }
        } catch (e) {
          warn('topic handler failed', { topic, from, error: String(e) })
        }
      }
      return running
    }

    const publishOut = (o: Output & { readonly _tag: 'Publish' }) => {
      const stream = topicStreams.get(o.topic)
      const failed = (nodes: ReadonlyArray<string>, reason: string) => {
        if (closed) return
        engine.publishFailed(o.op, o.topic, nodes, reason)
        flush()
      }
      if (stream === undefined) return failed(o.to, 'the topic has no stream')
      const onError = (e: unknown) =>
        e instanceof SendError
          ? failed(
              e.failures.map((f) => f.node),
              e.failures.map((f) => `${f.node}: ${f.reason}`).join('; ')
            )
          : failed(o.to, String((e as Error)?.message ?? e))
      try {
        stream.offer(TopicMessage.encode(o.message), o.to)?.catch(onError)
      } catch (e) {
        onError(e)
      }
    }

    const sendOut = (o: Output & { readonly _tag: 'Send' }) => {
      try {
        // a lost Interest or Delivered shows as a timeout of what waits for it
        app.defaultStream.offer(TopicMessage.encode(o.message), [o.to])?.catch(() => {})
      } catch {
        // the node is gone; membership tells the engine
      }
    }

    /** Carries out the engine's outputs; returns the promises of handlers still running, if any. */
    const flush = (): Array<Promise<unknown>> | undefined => {
      let running: Array<Promise<unknown>> | undefined
      if (flushing) return running
      flushing = true
      try {
        const out = engine.out
        for (let i = 0; i < out.length; i++) {
          const o = out[i]!
          switch (o._tag) {
            case 'Send':
              if (!closed) sendOut(o)
              break
            case 'Publish':
              if (!closed) publishOut(o)
              break
            case 'Deliver':
              if (!closed) running = deliver(o.topic, o.from, o.payload, running)
              break
            case 'Done':
              settle(o.op, undefined)
              break
            case 'Fail':
              settle(o.op, o.error)
              break
          }
        }
        if (out.length !== 0) out.length = 0
      } finally {
        flushing = false
      }
      if (engine.hasUnacked() && !ackScheduled && !closed) {
        // the turn ends: one Delivered per node and topic for what arrived after its first report
        ackScheduled = true
        queueMicrotask(() => {
          ackScheduled = false
          if (closed) return
          engine.flushDelivered()
          flush()
        })
      }
      schedule()
      return running
    }

    const schedule = () => {
      if (closed) return
      const at = engine.nextWake()
      if (at === undefined || at >= timerAt) return
      timerAt = at
      runInScope(
        Effect.suspend(() => Effect.sleep(Duration.millis(Math.max(0, Math.ceil(at - now()))))).pipe(
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

    const waitFor = (op: number): Effect.Effect<void, CoordinationError> =>
      Effect.async<void, CoordinationError>((resume) => {
        if (early.has(op)) {
          const error = early.get(op)
          early.delete(op)
          resume(error === undefined ? Effect.void : Effect.fail(error))
          return
        }
        waiters.set(op, (error) => resume(error === undefined ? Effect.void : Effect.fail(error)))
        return Effect.sync(() => waiters.delete(op))
      })

    /** The topic's stream, created on first use so that publishers' streams are taken. */
    const topicStream = (topic: string): Effect.Effect<TopicStream, CoordinationError> =>
      Effect.suspend(() => {
        const known = topicStreams.get(topic)
        if (known !== undefined) return Effect.succeed(known)
        return app.createStream(streamName(topic)).pipe(
          Effect.mapError((e) =>
            e.reason === 'MaxStreamsReached'
              ? new CoordinationError({ reason: 'TooManyTopics', message: `topic '${topic}': ${e.message}` })
              : new CoordinationError({ reason: 'InvalidTopic', message: `topic '${topic}': ${e.message}` })
          ),
          Effect.tap((stream) =>
            Effect.sync(() => {
              topicStreams.set(topic, stream)
              stream.setReceiveFunc((payload, from) => {
                if (closed) return
                let message: TopicMessage.TopicMessage
                try {
                  message = TopicMessage.decode(payload)
                } catch (e) {
                  warn('malformed topic message', { topic, from, error: (e as Error).message })
                  return
                }
                if (message._tag !== 'Publish') return warn('unexpected message on a topic stream', { topic, from, type: message._tag })
                engine.receivePublish(from, topic, message)
                const running = flush()
                // a slow handler holds back this topic's stream only
                if (running !== undefined) return Promise.all(running).then(() => undefined)
              })
            })
          )
        )
      })

    app.setReceiveFunc((payload, from) => {
      if (closed) return
      let message: TopicMessage.TopicMessage
      try {
        message = TopicMessage.decode(payload)
      } catch (e) {
        warn('malformed topics message', { from, error: (e as Error).message })
        return
      }
      engine.receive(from, message, now())
      flush()
    })

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
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        engine.close()
        flush()
        closed = true
        handlers.clear()
        const error = new CoordinationError({ reason: 'Closed', message: 'the topics service is shutting down' })
        for (const resume of waiters.values()) resume(error)
        waiters.clear()
        early.clear()
      })
    )
    engine.start()
    engine.membership(nodosum.nodes(), now())
    flush()

    const publish = (topic: string, payload: Uint8Array): Effect.Effect<void, CoordinationError> =>
      Effect.gen(function* () {
        if (closed) return yield* new CoordinationError({ reason: 'Closed', message: 'the topics service is shutting down' })
        yield* topicStream(topic)
        const op = nextOp++
        const error = engine.publish(op, topic, payload, now())
        if (error !== undefined) return yield* error
        flush()
        yield* waitFor(op)
      })
    const runPromise = (effect: Effect.Effect<void, CoordinationError>): Promise<void> =>
      Runtime.runPromiseExit(runtime)(effect).then((exit) => {
        if (Exit.isSuccess(exit)) return
        throw Cause.squash(exit.cause)
      })

    const service: TopicsService = {
      subscribe: (topic, handler) =>
        Effect.gen(function* () {
          if (closed) return yield* new CoordinationError({ reason: 'Closed', message: 'the topics service is shutting down' })
          yield* topicStream(topic)
          const op = nextOp++
          const subscriber = engine.subscribe(op, topic, now())
          if (subscriber instanceof CoordinationError) return yield* subscriber
          let perTopic = handlers.get(topic)
          if (perTopic === undefined) handlers.set(topic, (perTopic = new Map()))
          perTopic.set(subscriber, handler)
          flush()
          yield* waitFor(op).pipe(Effect.tapError(() => Effect.sync(() => perTopic.delete(subscriber))))
          const unsubscribe = Effect.suspend(() => {
            perTopic.delete(subscriber)
            const op = nextOp++
            engine.unsubscribe(op, topic, subscriber, now())
            flush()
            return waitFor(op).pipe(Effect.ignore)
          })
          return { topic, unsubscribe }
        }),
      publish,
      unsafePublish: (topic, payload) => {
        // the topic's stream exists after its first publish or subscribe: plain from then on
        if (closed || !topicStreams.has(topic)) return runPromise(publish(topic, payload))
        const op = nextOp++
        const error = engine.publish(op, topic, payload, now())
        if (error !== undefined) return Promise.reject(error)
        return new Promise<void>((resolve, reject) => {
          waiters.set(op, (e) => (e === undefined ? resolve() : reject(e)))
          flush()
        })
      },
      stats: () => engine.stats()
    }
    return service
  })
