import { describe, expect, it } from '@effect/vitest'
import { Deferred, Duration, Effect, Fiber, type Scope, TestClock } from 'effect'
import * as MemoryTransport from '../src/MemoryTransport.js'
import { MemoryNetwork } from '../src/MemoryTransport.js'
import type { TransportError } from '../src/NodosumError.js'
import { turns } from '@mycorrizal/testing'
import { collector } from '../src/testing.js'
import { formatAddress } from '../src/Transport.js'

const connected = Effect.gen(function* () {
  const network = yield* MemoryNetwork
  const a = yield* MemoryTransport.make({ host: 'a', idleTimeoutMs: 3_000 })
  const b = yield* MemoryTransport.make({ host: 'b', idleTimeoutMs: 3_000 })
  const client = yield* a.connect(b.address)
  const accepted = yield* b.accept
  const clientClosed = yield* Deferred.make<TransportError | undefined>()
  const acceptedClosed = yield* Deferred.make<TransportError | undefined>()
  const received = yield* collector()
  accepted.setHandler({ onStream: (s) => s.setHandler(received.handler), onClose: (e) => Deferred.unsafeDone(acceptedClosed, Effect.succeed(e)) })
  client.setHandler({ onStream: () => {}, onClose: (e) => Deferred.unsafeDone(clientClosed, Effect.succeed(e)) })
  return { network, a, b, client, accepted, clientClosed, acceptedClosed, received }
})

const withNetwork = <A, E>(effect: Effect.Effect<A, E, MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer))

describe('MemoryNetwork faults', () => {
  it.effect('a killed node is detected by its peers after the idle timeout, not before', () =>
    withNetwork(
      Effect.gen(function* () {
        const { network, b, client, clientClosed } = yield* connected
        network.kill(formatAddress(b.address))
        yield* TestClock.adjust(Duration.millis(2_999))
        expect(yield* Deferred.isDone(clientClosed)).toBe(false)
        yield* TestClock.adjust(Duration.millis(1))
        const error = yield* Deferred.await(clientClosed)
        expect(error?.reason).toBe('IdleTimeout')
        expect(client.isClosed()).toBe(true)
        expect(network.endpoints()).not.toContain(formatAddress(b.address))
      })
    )
  )

  it.effect('a partition shorter than the idle timeout only delays bytes', () =>
    withNetwork(
      Effect.gen(function* () {
        const { network, client, clientClosed, received } = yield* connected
        network.partition(['a'], ['b'])
        const stream = client.openStream({ onData: () => {} })
        stream.write(new Uint8Array([1, 2, 3]))
        stream.end()
        yield* turns()
        expect(received.bytes()).toBe(0)
        yield* TestClock.adjust(Duration.seconds(2))
        network.heal()
        yield* turns()
        yield* Deferred.await(received.ended)
        expect([...received.concat()]).toEqual([1, 2, 3])
        yield* TestClock.adjust(Duration.seconds(5))
        expect(yield* Deferred.isDone(clientClosed)).toBe(false)
      })
    )
  )

  it.effect('a partition longer than the idle timeout closes the connection on both sides', () =>
    withNetwork(
      Effect.gen(function* () {
        const { network, clientClosed, acceptedClosed } = yield* connected
        network.partition(['a'], ['b'])
        yield* TestClock.adjust(Duration.seconds(3))
        expect((yield* Deferred.await(clientClosed))?.reason).toBe('IdleTimeout')
        expect((yield* Deferred.await(acceptedClosed))?.reason).toBe('IdleTimeout')
      })
    )
  )

  it.effect('a one-way drop also ends in an idle timeout', () =>
    withNetwork(
      Effect.gen(function* () {
        const { network, clientClosed } = yield* connected
        network.drop('b', 'a')
        yield* TestClock.adjust(Duration.seconds(3))
        expect((yield* Deferred.await(clientClosed))?.reason).toBe('IdleTimeout')
      })
    )
  )

  it.effect('delay holds bytes for the given time on the clock', () =>
    withNetwork(
      Effect.gen(function* () {
        const { network, client, received } = yield* connected
        network.delay('a', 'b', 100)
        const stream = client.openStream({ onData: () => {} })
        stream.write(new Uint8Array([7]))
        yield* turns()
        expect(received.bytes()).toBe(0)
        yield* TestClock.adjust(Duration.millis(100))
        yield* turns()
        expect(received.bytes()).toBe(1)
      })
    )
  )

  it.effect('dialing a killed or partitioned node times out after the handshake timeout', () =>
    withNetwork(
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const a = yield* MemoryTransport.make({ host: 'a', handshakeTimeoutMs: 5_000 })
        const b = yield* MemoryTransport.make({ host: 'b' })
        network.partition(['a'], ['b'])
        const fiber = yield* Effect.fork(Effect.flip(a.connect(b.address)))
        yield* TestClock.adjust(Duration.seconds(5))
        const error = yield* Fiber.join(fiber)
        expect(error.reason).toBe('HandshakeTimeout')
      })
    )
  )

  it.effect('a killed address can be bound again by a restarted node', () =>
    withNetwork(
      Effect.gen(function* () {
        const network = yield* MemoryNetwork
        const b = yield* MemoryTransport.make({ host: 'b', port: 7001 })
        const again = yield* Effect.flip(MemoryTransport.make({ host: 'b', port: 7001 }))
        expect(again.reason).toBe('BindFailed')
        network.kill('b:7001')
        const restarted = yield* MemoryTransport.make({ host: 'b', port: 7001 })
        expect(restarted.address).toEqual(b.address)
      })
    )
  )
})
