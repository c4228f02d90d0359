/**
 * The compliance suite every `Transport` implementation runs, plus helpers to drive
 * streams from tests. It imports no test runner: the caller passes its test functions
 * (`@effect/vitest`'s `describe`, `it`, `expect`), so this published package carries no test
 * dependency. In a vitest file:
 *
 * ```ts
 * import { describe, expect, it } from '@effect/vitest'
 * import { transportSuite } from '@mycorrizal/nodosum/testing'
 *
 * transportSuite('MyTransport', (options) => MyTransport.make(options), MyTransport.testEnvironment, { describe, it, expect })
 * ```
 *
 * The repository's own tests take the same functions, and their shared helpers (log capture,
 * clusters, event-loop turns), from the private `@mycorrizal/testing` package.
 *
 * @since 0.1.0
 */
import * as Deferred from 'effect/Deferred'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Schedule from 'effect/Schedule'
import type * as Scope from 'effect/Scope'
import type { TransportError } from './NodosumError.js'
import type { Transport, TransportConnection, TransportStream } from './Transport.js'

/** The assertions the suite makes (a subset of vitest's `expect`). */
export interface Assertion {
  readonly not: Assertion
  toBe(expected: unknown): void
  toBeDefined(): void
  toBeUndefined(): void
  toBeLessThan(expected: number | bigint): void
  toBeLessThanOrEqual(expected: number | bigint): void
  toContain(expected: unknown): void
  toThrow(expected?: string | RegExp): void
}

/** The test functions the suite runs with: `@effect/vitest`'s `describe`, `it` and `expect`, or any of that shape. */
export interface TestApi {
  readonly describe: (name: string, body: () => void) => void
  readonly it: { readonly live: (name: string, body: () => Effect.Effect<unknown, unknown>, timeout?: number) => void }
  readonly expect: (actual: unknown) => Assertion
}

/** What the suite asks of a transport under test. */
export interface SuiteTransportOptions {
  /** Dialing an unreachable address fails after this long. */
  readonly handshakeTimeoutMs: number
  /** Streams a peer may open to this transport at once. */
  readonly maxStreams: number
  /** A silent peer is dropped after this long (a lost close frame is noticed by it). */
  readonly idleTimeoutMs: number
}

/** Builds one transport in the current scope; all transports of one test must reach each other. */
export type TransportFactory<E, R> = (options: SuiteTransportOptions) => Effect.Effect<Transport['Type'], E, R | Scope.Scope>

/** A stream's bytes as they arrive, with promises for the end and the close. */
export interface Collector {
  readonly chunks: Array<Uint8Array>
  bytes: () => number
  concat: () => Uint8Array
  readonly ended: Deferred.Deferred<void>
  readonly closed: Deferred.Deferred<TransportError | undefined>
}

/** A handler that copies every chunk it gets. */
export const collector = (): Effect.Effect<Collector & { readonly handler: Parameters<TransportStream['setHandler']>[0] }> =>
  Effect.gen(function* () {
    const ended = yield* Deferred.make<void>()
    const closed = yield* Deferred.make<TransportError | undefined>()
    const chunks: Array<Uint8Array> = []
    let total = 0
    return {
      chunks,
      bytes: () => total,
      concat: () => {
        const out = new Uint8Array(total)
        let offset = 0
        for (const chunk of chunks) {
          out.set(chunk, offset)
          offset += chunk.byteLength
        }
        return out
      },
      ended,
      closed,
      handler: {
        onData: (chunk) => {
          chunks.push(new Uint8Array(chunk))
          total += chunk.byteLength
        },
        onEnd: () => Deferred.unsafeDone(ended, Effect.void),
        onClose: (error) => Deferred.unsafeDone(closed, Effect.succeed(error))
      }
    }
  })

/**
 * Writes `data` in `chunkSize` pieces, waiting for `onDrain` whenever `write` says so.
 * `drains` must be a function the stream's handler calls from `onDrain`.
 */
export const writeAll = (
  stream: TransportStream,
  data: Uint8Array,
  chunkSize: number,
  waitDrain: Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (let offset = 0; offset < data.byteLength; offset += chunkSize) {
      const ok = stream.write(data.subarray(offset, Math.min(data.byteLength, offset + chunkSize)))
      if (!ok) yield* waitDrain
    }
  })

/** A drain signal for `writeAll`: `handler.onDrain` completes the current waiter. */
export const drainSignal = () => {
  let waiter: Deferred.Deferred<void> | undefined
  return {
    onDrain: () => {
      if (waiter !== undefined) Deferred.unsafeDone(waiter, Effect.void)
    },
    wait: Effect.suspend(() => {
      waiter = Deferred.unsafeMake<void>(undefined as never)
      return Deferred.await(waiter)
    })
  }
}

/** Deterministic pseudo-random bytes. */
export const patternBytes = (length: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Polls `condition` every few ms until it holds, failing after `timeoutMs`. */
export const eventually = (condition: () => boolean, timeoutMs = 5_000, what = 'condition'): Effect.Effect<void, Error> =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail(new Error(`${what} not yet true`)))).pipe(
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(5)), times: Math.ceil(timeoutMs / 5) }),
    Effect.mapError(() => new Error(`${what} did not hold within ${timeoutMs} ms`))
  )

const defaultOptions: SuiteTransportOptions = { handshakeTimeoutMs: 1_000, maxStreams: 100, idleTimeoutMs: 5_000 }

const pair = <E, R>(factory: TransportFactory<E, R>, server: Partial<SuiteTransportOptions> = {}) =>
  Effect.gen(function* () {
    const a = yield* factory(defaultOptions)
    const b = yield* factory({ ...defaultOptions, ...server })
    const client = yield* a.connect(b.address)
    const accepted = yield* b.accept.pipe(Effect.timeout(Duration.seconds(5)))
    return { a, b, client, accepted }
  })

/** A connected pair with one stream from the client, its drain signal, and what the peer receives on it. */
const writer = <E, R>(factory: TransportFactory<E, R>) =>
  Effect.gen(function* () {
    const { client, accepted } = yield* pair(factory)
    const received = yield* collector()
    accepted.setHandler({ onStream: (s) => s.setHandler(received.handler) })
    const drain = drainSignal()
    const stream = client.openStream({ onData: () => {}, onDrain: drain.onDrain })
    return { stream, received, drain }
  })

/** Opens a stream from `from` and returns it with the peer's end (first incoming stream). */
const openPair = (from: TransportConnection, to: TransportConnection, handler: Parameters<TransportConnection['openStream']>[0]) =>
  Effect.gen(function* () {
    const incoming = yield* Deferred.make<TransportStream>()
    to.setHandler({ onStream: (s) => Deferred.unsafeDone(incoming, Effect.succeed(s)) })
    const local = from.openStream(handler)
    local.write(new Uint8Array([0x2a]))
    const remote = yield* Deferred.await(incoming).pipe(Effect.timeout(Duration.seconds(5)))
    return { local, remote }
  })

/**
 * Runs the transport contract against an implementation with the given test functions.
 * `environment` provides what the factory needs (e.g. a `MemoryNetwork`); it is built fresh
 * for every test.
 */
export const transportSuite = <E, R, RE>(name: string, factory: TransportFactory<E, R>, environment: Layer.Layer<R, RE>, test: TestApi) => {
  const { describe, expect, it } = test
  const run = <A, E2>(effect: Effect.Effect<A, E2, R | Scope.Scope>) =>
    effect.pipe(Effect.timeout(Duration.seconds(60)), Effect.scoped, Effect.provide(environment))

  describe(`Transport compliance: ${name}`, () => {
    it.live('dials and accepts; both ends know each other', () =>
      run(
        Effect.gen(function* () {
          const { a, b, client, accepted } = yield* pair(factory)
          expect(client.initiator).toBe(true)
          expect(accepted.initiator).toBe(false)
          expect(client.remoteAddress.port).toBe(b.address.port)
          expect(accepted.remoteAddress.port).toBe(a.address.port)
          expect(a.connections()).toContain(client)
          expect(b.connections()).toContain(accepted)
          expect(client.isClosed()).toBe(false)
        })
      )
    )

    it.live('carries bytes in order and intact, from 1 byte to megabytes, and delivers the end', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          for (const size of [1, 1_000, 65_536, 3 * 1024 * 1024 + 7]) {
            const data = patternBytes(size, size)
            const received = yield* collector()
            const incoming = yield* Deferred.make<TransportStream>()
            accepted.setHandler({
              onStream: (s) => {
                s.setHandler(received.handler)
                Deferred.unsafeDone(incoming, Effect.succeed(s))
              }
            })
            const drain = drainSignal()
            const sentClosed = yield* Deferred.make<TransportError | undefined>()
            const stream = client.openStream({
              onData: () => {},
              onDrain: drain.onDrain,
              onClose: (e) => Deferred.unsafeDone(sentClosed, Effect.succeed(e))
            })
            yield* writeAll(stream, data, 16_384, drain.wait)
            stream.end()
            yield* Deferred.await(received.ended)
            expect(received.bytes()).toBe(size)
            expect(Buffer.from(received.concat()).equals(Buffer.from(data))).toBe(true)
            // the receiver finishes its side too: the stream closes cleanly on both ends
            const remote = yield* Deferred.await(incoming)
            remote.end()
            expect(yield* Deferred.await(received.closed)).toBeUndefined()
            expect(yield* Deferred.await(sentClosed)).toBeUndefined()
          }
        })
      )
    )

    it.live('a writer may reuse its buffer as soon as write returns', () =>
      run(
        Effect.gen(function* () {
          const { stream, received, drain } = yield* writer(factory)
          const expected = patternBytes(2 * 1024 * 1024, 11)
          // one Node Buffer, refilled after every write: the transport must have copied what it kept
          const scratch = Buffer.allocUnsafe(32 * 1024)
          for (let offset = 0; offset < expected.byteLength; offset += scratch.byteLength) {
            scratch.set(expected.subarray(offset, offset + scratch.byteLength))
            const ok = stream.write(scratch)
            scratch.fill(0xee)
            if (!ok) yield* drain.wait
          }
          stream.end()
          yield* Deferred.await(received.ended)
          expect(Buffer.from(received.concat()).equals(Buffer.from(expected))).toBe(true)
        })
      )
    )

    it.live('an owned buffer is released once, when the transport is done with it, and may be reused from then on', () =>
      run(
        Effect.gen(function* () {
          const { stream, received, drain } = yield* writer(factory)
          const piece = 512 * 1024
          const expected = patternBytes(8 * piece, 13)
          // two buffers take turns; a buffer is refilled only after its release, and scribbled over at once
          const free: Array<Uint8Array> = [new Uint8Array(piece), new Uint8Array(piece)]
          const released = drainSignal()
          let releases = 0
          for (let offset = 0; offset < expected.byteLength; offset += piece) {
            while (free.length === 0) yield* released.wait
            const buffer = free.pop()!
            buffer.set(expected.subarray(offset, offset + piece))
            let once = false
            const ok = stream.write(buffer, true, () => {
              expect(once).toBe(false)
              once = true
              releases++
              buffer.fill(0xee)
              free.push(buffer)
              released.onDrain()
            })
            if (!ok) yield* drain.wait
          }
          stream.end()
          yield* Deferred.await(received.ended)
          expect(Buffer.from(received.concat()).equals(Buffer.from(expected))).toBe(true)
          expect(releases).toBe(8)
          // a write that throws releases too
          let afterEnd = 0
          expect(() => stream.write(new Uint8Array(10), true, () => afterEnd++)).toThrow()
          expect(afterEnd).toBe(1)
        })
      )
    )

    it.live('holds streams the peer opened before a handler was set, losing nothing', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const stream = client.openStream({ onData: () => {} })
          const data = patternBytes(100_000, 7)
          stream.write(data)
          stream.end()
          yield* Effect.sleep(Duration.millis(50))
          const received = yield* collector()
          accepted.setHandler({ onStream: (s) => s.setHandler(received.handler) })
          yield* Deferred.await(received.ended)
          expect(Buffer.from(received.concat()).equals(Buffer.from(data))).toBe(true)
        })
      )
    )

    it.live('a paused stream does not block another; its writer is held back and resumes losslessly', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const slow = yield* collector()
          const fast = yield* collector()
          const streams: Array<TransportStream> = []
          accepted.setHandler({
            onStream: (s) => {
              streams.push(s)
              if (streams.length === 1) {
                s.setHandler(slow.handler)
                s.pause()
              } else {
                s.setHandler(fast.handler)
              }
            }
          })
          const slowDrain = drainSignal()
          const slowStream = client.openStream({ onData: () => {}, onDrain: slowDrain.onDrain })
          const big = patternBytes(24 * 1024 * 1024, 3)
          const chunk = 65_536
          // write until the transport says stop: it must say so well before 24 MiB
          let written = 0
          while (written < big.byteLength) {
            const ok = slowStream.write(big.subarray(written, written + chunk))
            written += chunk
            if (!ok) break
            yield* Effect.yieldNow()
          }
          expect(written).toBeLessThan(big.byteLength)
          // the queue stays bounded while the peer does not read
          yield* Effect.sleep(Duration.millis(200))
          expect(slowStream.writableLength()).toBeLessThanOrEqual(written)
          // another stream flows meanwhile
          const fastData = patternBytes(1024 * 1024, 9)
          const fastDrain = drainSignal()
          const fastStream = client.openStream({ onData: () => {}, onDrain: fastDrain.onDrain })
          yield* writeAll(fastStream, fastData, chunk, fastDrain.wait)
          fastStream.end()
          yield* Deferred.await(fast.ended)
          expect(Buffer.from(fast.concat()).equals(Buffer.from(fastData))).toBe(true)
          // resume: everything written arrives, then the rest follows
          streams[0]!.resume()
          yield* writeAll(slowStream, big.subarray(written), chunk, slowDrain.wait)
          slowStream.end()
          yield* Deferred.await(slow.ended)
          expect(slow.bytes()).toBe(big.byteLength)
          expect(Buffer.from(slow.concat()).equals(Buffer.from(big))).toBe(true)
        })
      )
    )

    it.live('a stream takes a priority (urgency 0-7, incremental) on either end, refuses one out of range, and its data still arrives', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const received = yield* collector()
          const { local, remote } = yield* openPair(client, accepted, { onData: () => {} })
          remote.setHandler(received.handler)
          for (const urgency of [0, 3, 7]) {
            local.setPriority({ urgency, incremental: urgency !== 7 })
            remote.setPriority({ urgency, incremental: true })
          }
          for (const bad of [{ urgency: -1, incremental: true }, { urgency: 8, incremental: true }, { urgency: 1.5, incremental: false }]) {
            expect(() => local.setPriority(bad)).toThrow(/urgency from 0 to 7/)
          }
          const data = patternBytes(256 * 1024, 5)
          const drain = drainSignal()
          local.setHandler({ onData: () => {}, onDrain: drain.onDrain })
          yield* writeAll(local, data, 16_384, drain.wait)
          local.end()
          yield* Deferred.await(received.ended)
          // the first byte came with the opening write of openPair
          expect(received.bytes()).toBe(1 + data.byteLength)
        })
      )
    )

    it.live('twenty streams in parallel all arrive intact', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const received = new Map<number, Collector>()
          const collectors = yield* Effect.forEach(Array.from({ length: 20 }), () => collector())
          let next = 0
          accepted.setHandler({
            onStream: (s) => {
              const c = collectors[next++]!
              received.set(s.id, c)
              s.setHandler(c.handler)
            }
          })
          yield* Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i),
            () =>
              Effect.gen(function* () {
                const drain = drainSignal()
                const stream = client.openStream({ onData: () => {}, onDrain: drain.onDrain })
                const data = patternBytes(256 * 1024, 100 + stream.id)
                yield* writeAll(stream, data, 8192, drain.wait)
                stream.end()
                return { id: stream.id, data }
              }).pipe(
                Effect.flatMap(({ id, data }) =>
                  Effect.gen(function* () {
                    yield* eventuallyDefined(() => received.get(id))
                    const c = received.get(id)!
                    yield* Deferred.await(c.ended)
                    expect(Buffer.from(c.concat()).equals(Buffer.from(data))).toBe(true)
                  })
                )
              ),
            { concurrency: 'unbounded' }
          )
        })
      )
    )

    it.live('reset reaches the peer as StreamReset with its code', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const received = yield* collector()
          const { local, remote } = yield* openPair(client, accepted, { onData: () => {} })
          remote.setHandler(received.handler)
          local.reset(77)
          const error = yield* Deferred.await(received.closed)
          expect(error?.reason).toBe('StreamReset')
          expect(error?.code).toBe(77)
          expect(remote.isClosed()).toBe(true)
          expect(() => local.write(new Uint8Array(1))).toThrow()
        })
      )
    )

    it.live('closing a connection closes its streams on both sides; the peer learns why', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const peerClosed = yield* Deferred.make<TransportError | undefined>()
          const received = yield* collector()
          const { remote } = yield* openPair(client, accepted, { onData: () => {} })
          remote.setHandler(received.handler)
          accepted.setHandler({ onStream: () => {}, onClose: (e) => Deferred.unsafeDone(peerClosed, Effect.succeed(e)) })
          client.close(5, 'bye')
          const error = yield* Deferred.await(peerClosed)
          expect(error?.reason).toBe('PeerClosed')
          expect(error?.code).toBe(5)
          expect(yield* Deferred.await(received.closed)).toBeDefined()
          expect(client.isClosed()).toBe(true)
          expect(accepted.isClosed()).toBe(true)
          expect(() => client.openStream({ onData: () => {} })).toThrow()
        })
      )
    )

    it.live('dialing an address nobody answers fails with a TransportError in time', () =>
      run(
        Effect.gen(function* () {
          const a = yield* factory({ ...defaultOptions, handshakeTimeoutMs: 500 })
          // an address that was served a moment ago and is not any more
          const gone = yield* Effect.scoped(factory(defaultOptions).pipe(Effect.map((b) => b.address)))
          const error = yield* a.connect(gone).pipe(Effect.flip)
          expect(error._tag).toBe('TransportError')
          expect(['HandshakeTimeout', 'ConnectFailed']).toContain(error.reason)
        })
      )
    )

    it.live('refuses streams past the peer limit and allows more once some close', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory, { maxStreams: 4 })
          const incoming: Array<TransportStream> = []
          accepted.setHandler({
            onStream: (s) => {
              incoming.push(s)
              s.setHandler({ onData: () => {} })
            }
          })
          const opened: Array<TransportStream> = []
          const closed: Array<Deferred.Deferred<TransportError | undefined>> = []
          for (let i = 0; i < 4; i++) {
            const done = yield* Deferred.make<TransportError | undefined>()
            closed.push(done)
            const s = client.openStream({ onData: () => {}, onClose: (e) => Deferred.unsafeDone(done, Effect.succeed(e)) })
            s.write(new Uint8Array([i]))
            opened.push(s)
          }
          const error = (() => {
            try {
              client.openStream({ onData: () => {} })
              return undefined
            } catch (e) {
              return e as TransportError
            }
          })()
          expect(error?.reason).toBe('StreamLimit')
          yield* eventually(() => incoming.length === 4, 5_000, 'peer saw four streams')
          // end one stream on both sides (the peer may have seen the streams in another order)
          opened[0]!.end()
          incoming.find((s) => s.id === opened[0]!.id)!.end()
          expect(yield* Deferred.await(closed[0]!)).toBeUndefined()
          yield* eventually(() => client.streamsLeft() > 0, 5_000, 'stream credit returned')
          const again = client.openStream({ onData: () => {} })
          expect(again.write(new Uint8Array([9]))).toBe(true)
        })
      )
    )

    it.live('a handler that throws resets only its own stream', () =>
      run(
        Effect.gen(function* () {
          const { client, accepted } = yield* pair(factory)
          const good = yield* collector()
          const badClosed = yield* Deferred.make<TransportError | undefined>()
          let n = 0
          accepted.setHandler({
            onStream: (s) => {
              if (n++ === 0) {
                s.setHandler({
                  onData: () => {
                    throw new Error('handler bug')
                  },
                  onClose: (e) => Deferred.unsafeDone(badClosed, Effect.succeed(e))
                })
              } else {
                s.setHandler(good.handler)
              }
            }
          })
          const bad = client.openStream({ onData: () => {} })
          bad.write(new Uint8Array([1, 2, 3]))
          yield* Deferred.await(badClosed)
          const ok = client.openStream({ onData: () => {} })
          ok.write(patternBytes(10_000, 5))
          ok.end()
          yield* Deferred.await(good.ended)
          expect(good.bytes()).toBe(10_000)
          expect(client.isClosed()).toBe(false)
        })
      )
    )

    it.live('closing the transport closes every connection; peers see it', () =>
      run(
        Effect.gen(function* () {
          const b = yield* factory(defaultOptions)
          const peerClosed = yield* Deferred.make<TransportError | undefined>()
          const inner = Effect.gen(function* () {
            const a = yield* factory(defaultOptions)
            const client = yield* a.connect(b.address)
            return client
          })
          const client = yield* Effect.scoped(
            inner.pipe(
              Effect.tap(() =>
                b.accept.pipe(
                  Effect.timeout(Duration.seconds(5)),
                  Effect.tap((accepted) => accepted.setHandler({ onStream: () => {}, onClose: (e) => Deferred.unsafeDone(peerClosed, Effect.succeed(e)) }))
                )
              )
            )
          )
          expect(client.isClosed()).toBe(true)
          const error = yield* Deferred.await(peerClosed)
          expect(error).toBeDefined()
        })
      )
    )
  })
}

const eventuallyDefined = <A>(get: () => A | undefined) => eventually(() => get() !== undefined, 5_000, 'value present')

/** Runs an effect once per test with a fresh environment; exported for suites of other contracts. */
export const withEnvironment = <R, RE>(environment: Layer.Layer<R, RE>) => <A, E>(effect: Effect.Effect<A, E, R | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(Layer.fresh(environment)))
