import { describe, expect, it } from '@effect/vitest'
import { Nodosum } from '@mycorrizal/nodosum'
import { Context, Duration, Effect, Either, Fiber, Layer, Logger, LogLevel } from 'effect'
import * as Streams from '../src/Streams.js'
import type { SendError, StreamsError } from '../src/StreamsError.js'
import { spawnReceiver } from './fixtures/spawnReceiver.js'

const SECRET = 'faults-secret-123-of-at-least-32-characters'
const FAST = { heartbeatInterval: 100, failureTimeout: 1_000 }

describe('a peer killed while messages flow (QUIC, a real process)', () => {
  it.live(
    'SIGKILL of a slow receiver: the waiting send fails with a SendError naming it within the failure timeout, traffic to the others goes on',
    () =>
      Effect.gen(function* () {
        const { child, port } = yield* spawnReceiver({ nodeId: 'receiver', host: '127.0.0.1', port: 0, clusterSecret: SECRET, ...FAST, expect: 1e9 })
        const build = (nodeId: string) =>
          Layer.build(Streams.layer().pipe(Layer.provideMerge(Nodosum.layer({ nodeId, host: '127.0.0.1', port: 0, clusterSecret: SECRET, seeds: [`127.0.0.1:${port}`], ...FAST })))).pipe(
            Effect.map((ctx) => ({ nodosum: Context.get(ctx, Nodosum.Nodosum), streams: Context.get(ctx, Streams.Streams) }))
          )
        const a = yield* build('a')
        const c = yield* build('c')
        for (let i = 0; i < 1_000 && (a.nodosum.nodes().length < 3 || c.nodosum.nodes().length < 3); i++) yield* Effect.sleep(Duration.millis(10))
        expect(a.nodosum.nodes()).toEqual(['a', 'c', 'receiver'])
        const appA = yield* a.streams.registerApplication('bulk')
        const appC = yield* c.streams.registerApplication('bulk')
        let atC = 0
        appC.setReceiveFunc(() => void atC++)
        // the receiver takes one message per millisecond: a's buffer to it fills and sends wait
        const payload = new Uint8Array(64 * 1024)
        const outcomes: Array<Either.Either<void, SendError | StreamsError>> = []
        const sender = yield* Effect.gen(function* () {
          for (;;) outcomes.push(yield* Effect.either(appA.send(payload, ['receiver', 'c'])))
        }).pipe(Effect.fork)
        yield* Effect.sleep(Duration.millis(500))
        expect(appA.stats().defaultStreamStats.queuedMessages).toBeGreaterThan(0)
        const killedAt = Date.now()
        child.kill('SIGKILL')
        for (let i = 0; i < 1_000 && !outcomes.some(Either.isLeft); i++) yield* Effect.sleep(Duration.millis(10))
        const failedAfter = Date.now() - killedAt
        const failure = outcomes.find(Either.isLeft)!.left
        expect(failure._tag).toBe('SendError')
        const sendError = failure as SendError
        expect(sendError.failures.map((f) => f.node)).toEqual(['receiver'])
        expect(sendError.accepted).toEqual(['c'])
        // within the failure timeout plus a heartbeat and scheduling
        expect(failedAfter).toBeLessThan(3_000)
        expect(a.nodosum.nodes()).toEqual(['a', 'c'])
        // the survivors go on: sends to everyone now reach c, without waiting on the dead node
        const before = atC
        const count = outcomes.length
        yield* Effect.sleep(Duration.millis(500))
        yield* Fiber.interrupt(sender)
        expect(outcomes.length - count).toBeGreaterThan(10)
        for (let i = 0; i < 500 && atC === before; i++) yield* Effect.sleep(Duration.millis(10))
        expect(atC).toBeGreaterThan(before)
        expect(appA.stats().defaultStreamStats.failedSends).toBeGreaterThan(0)
        console.log(JSON.stringify({ scenario: 'sigkill-messaging', send_failed_after_ms: failedAfter, failed_sends: appA.stats().defaultStreamStats.failedSends }))
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error)),
    60_000
  )
})
