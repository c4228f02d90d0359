/**
 * An in-process `Transport` for fast, deterministic tests of many nodes in one process,
 * with fault injection through `MemoryNetwork`: delay, one-way drop, partition between sets
 * of nodes, kill. It honours the same contract as `QuicTransport` (flow control per stream,
 * high-water mark, stream limits, idle timeout of cut links), checked by the same suite.
 *
 * @since 0.1.0
 */
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as FiberSet from 'effect/FiberSet'
import * as Layer from 'effect/Layer'
import * as Queue from 'effect/Queue'
import { connectPair, MemoryNetworkImpl, type MemoryEndpoint } from './internal/memory.js'
import { TransportError } from './NodosumError.js'
import { type Address, formatAddress, Transport, type TransportConnection, type TransportLimits } from './Transport.js'
import { defaultLimits } from './TransportConfig.js'

/** Fault injection over every memory transport sharing this network. Addresses are `host:port` or hosts. */
export interface MemoryNetworkService {
  /** Bytes between the two sets stop in both directions until `heal`. */
  readonly partition: (a: ReadonlyArray<string>, b: ReadonlyArray<string>) => void
  /** Bytes from `from` to `to` stop (one direction) until `heal`. */
  readonly drop: (from: string, to: string) => void
  /** Every link delivers again; delays are kept. */
  readonly heal: () => void
  /** Adds latency to one direction (ms, on the Effect clock). */
  readonly delay: (from: string, to: string, ms: number) => void
  /** The endpoint vanishes like a killed process: no close frames, peers time out. */
  readonly kill: (address: string) => void
  /** Endpoints currently bound, as `host:port`. */
  readonly endpoints: () => ReadonlyArray<string>
}

/** The shared in-memory medium. Provide one per test; every `MemoryTransport` in it can reach the others. */
export class MemoryNetwork extends Context.Tag('@mycorrizal/nodosum/MemoryNetwork')<MemoryNetwork, MemoryNetworkService>() {}

/** Internal handle the transports use; not part of the fault-injection API. */
const impls = new WeakMap<MemoryNetworkService, MemoryNetworkImpl>()

const makeNetwork = Effect.gen(function* () {
  // every timer of the network (delays, idle timeouts of cut links) is a fiber of this set: the scope owns them
  const timers = yield* FiberSet.make<void>()
  const impl = new MemoryNetworkImpl(yield* FiberSet.runtime(timers)<never>())
  const matching = (pattern: string): Array<string> =>
    [...impl.endpoints.keys()].filter((key) => key === pattern || key.startsWith(`${pattern}:`) || key.startsWith(`[${pattern}]:`))
  const service: MemoryNetworkService = {
    partition: (a, b) => {
      const left = a.flatMap(matching)
      const right = b.flatMap(matching)
      for (const x of left) {
        for (const y of right) {
          impl.setBlocked(x, y, true)
          impl.setBlocked(y, x, true)
        }
      }
    },
    drop: (from, to) => {
      for (const x of matching(from)) for (const y of matching(to)) impl.setBlocked(x, y, true)
    },
    heal: () => {
      for (const x of impl.endpoints.keys()) for (const y of impl.endpoints.keys()) if (x !== y) impl.setBlocked(x, y, false)
    },
    delay: (from, to, ms) => {
      for (const x of matching(from)) for (const y of matching(to)) impl.setDelay(x, y, ms)
    },
    kill: (address) => {
      for (const key of matching(address)) {
        const endpoint = impl.endpoints.get(key)
        if (endpoint === undefined) continue
        endpoint.dead = true
        for (const connection of [...endpoint.connections]) connection.abandon()
        impl.unregister(endpoint)
      }
      impl.onLinksChanged()
    },
    endpoints: () => [...impl.endpoints.keys()]
  }
  impls.set(service, impl)
  return service
})

/** A fresh network, scoped. */
export const networkLayer: Layer.Layer<MemoryNetwork> = Layer.scoped(MemoryNetwork, makeNetwork)

/** Options of one memory transport. */
export interface MemoryTransportOptions {
  /** Any name; nodes are told apart by `host:port`. */
  readonly host?: string
  /** 0 picks a free port. */
  readonly port?: number
  readonly limits?: Partial<TransportLimits>
  /** A cut link closes its connections after this long (ms). */
  readonly idleTimeoutMs?: number
  /** Dialing an unreachable endpoint fails after this long (ms). */
  readonly handshakeTimeoutMs?: number
  /** DER certificate chain peers see from this endpoint, as a TLS transport would show them. */
  readonly certificates?: ReadonlyArray<Uint8Array>
}

/** Builds a memory transport bound in the given network; closing the scope closes it. */
export const make = (options: MemoryTransportOptions = {}) =>
  Effect.gen(function* () {
    const network = yield* MemoryNetwork
    const impl = impls.get(network)!
    const host = options.host ?? 'memory'
    const port = options.port === undefined || options.port === 0 ? impl.allocatePort(host) : options.port
    const address: Address = { host, port }
    const key = formatAddress(address)
    const existing = impl.endpoints.get(key)
    if (existing !== undefined && !existing.dead) {
      return yield* new TransportError({ reason: 'BindFailed', message: `${key} is already bound` })
    }
    const incoming = yield* Queue.bounded<TransportConnection>(1024)
    const endpoint: MemoryEndpoint = {
      key,
      address,
      limits: { ...defaultLimits, ...options.limits },
      idleTimeoutMs: options.idleTimeoutMs ?? 3_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5_000,
      incoming,
      connections: new Set(),
      certificates: options.certificates ?? [],
      dead: false
    }
    impl.register(endpoint)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        if (!endpoint.dead) for (const connection of [...endpoint.connections]) connection.close(0, 'transport closed')
        endpoint.dead = true
        impl.unregister(endpoint)
      }).pipe(Effect.andThen(Queue.shutdown(incoming)))
    )

    const connect = (target: Address) =>
      Effect.suspend(() => {
        if (endpoint.dead) return Effect.fail(new TransportError({ reason: 'TransportClosed', message: 'transport is closed' }))
        const targetKey = formatAddress(target)
        const server = impl.endpoints.get(targetKey)
        if (server === undefined || server.dead || !impl.canDeliver(key, targetKey) || !impl.canDeliver(targetKey, key)) {
          return Effect.sleep(endpoint.handshakeTimeoutMs).pipe(
            Effect.andThen(
              Effect.fail(
                new TransportError({ reason: 'HandshakeTimeout', message: `no answer from ${targetKey} within ${endpoint.handshakeTimeoutMs} ms` })
              )
            )
          )
        }
        const [client, accepted] = connectPair(impl, endpoint, server)
        const offered = Queue.unsafeOffer(server.incoming, accepted)
        if (!offered) {
          client.terminate(undefined)
          accepted.terminate(undefined)
          return Effect.fail(new TransportError({ reason: 'ConnectFailed', message: `${targetKey} refused: accept queue full` }))
        }
        return Effect.succeed(client)
      })

    return Transport.of({
      address,
      connect,
      accept: Queue.take(incoming),
      connections: () => [...endpoint.connections]
    })
  })

/** A memory transport as a layer (needs a `MemoryNetwork`). */
export const layer = (options: MemoryTransportOptions = {}): Layer.Layer<Transport, TransportError, MemoryNetwork> =>
  Layer.scoped(Transport, make(options))

