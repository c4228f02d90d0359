/**
 * The QUIC transport: quiche (shipped by `@matrixai/quic`) driven from a lean event loop of
 * our own. One UDP socket per node serves both roles; connections are keyed by connection
 * id; received datagrams go to quiche at once and each dirty connection is flushed once per
 * event-loop turn; one timer per connection from quiche's `timeout()`; stream writes are
 * bounded by quiche's stream capacity, so backpressure reaches the writer.
 *
 * TLS 1.3 with ALPN `mycorrizal/1`. With a CA both sides verify the peer's chain against it
 * (mTLS); without one any certificate is accepted and the cluster handshake authenticates
 * (cluster secret bound to the certificates both sides saw).
 *
 * @since 0.1.0
 */
import * as Config from 'effect/Config'
import type * as EffectConfigError from 'effect/ConfigError'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Queue from 'effect/Queue'
import type * as Scope from 'effect/Scope'
import { QuicEndpoint, type QuicTls } from './internal/quic/endpoint.js'
import { TransportError } from './NodosumError.js'
import { Transport, type TransportConnection } from './Transport.js'
import * as TransportConfig from './TransportConfig.js'
import type { ConfigError } from './NodosumError.js'

/** Options of a QUIC transport: settings over the LAN defaults, and the TLS identity. */
export interface QuicTransportOptions extends TransportConfig.TransportSettingsInput {
  readonly tls: QuicTls
}

/** Builds a QUIC transport bound to `host:port`; closing the scope closes every connection and the socket. */
export const make = (options: QuicTransportOptions): Effect.Effect<Transport['Type'], TransportError | ConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const { tls, ...input } = options
    const settings = yield* TransportConfig.make(input)
    const incoming = yield* Queue.bounded<TransportConnection>(256)
    const endpoint = new QuicEndpoint({
      tls,
      limits: settings,
      datagramSize: settings.datagramSize,
      idleTimeoutMs: Duration.toMillis(settings.idleTimeout),
      handshakeTimeoutMs: Duration.toMillis(settings.handshakeTimeout),
      socketBufferSize: settings.socketBufferSize,
      maxPendingHandshakes: settings.maxPendingHandshakes,
      retryThreshold: settings.retryThreshold,
      maxHandshakesPerSource: settings.maxHandshakesPerSource,
      maxNewConnectionsPerSource: settings.maxNewConnectionsPerSource,
      maxUnauthenticatedBytes: settings.maxUnauthenticatedBytes
    })
    endpoint.onAccept = (connection) => {
      if (!Queue.unsafeOffer(incoming, connection)) connection.close(0, 'accept queue full')
    }
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => endpoint.bind(settings.port, settings.host),
        catch: (e) => new TransportError({ reason: 'BindFailed', message: `cannot bind UDP ${settings.host}:${settings.port}: ${(e as Error).message}` })
      }),
      () => Effect.promise(() => endpoint.close()).pipe(Effect.andThen(Queue.shutdown(incoming)))
    )

    const connect = (address: { readonly host: string; readonly port: number }) =>
      Effect.async<TransportConnection, TransportError>((resume) => {
        if (endpoint.closed) {
          resume(Effect.fail(new TransportError({ reason: 'TransportClosed', message: 'transport is closed' })))
          return
        }
        let connection: ReturnType<QuicEndpoint['connect']>
        try {
          connection = endpoint.connect(address)
        } catch (e) {
          resume(Effect.fail(new TransportError({ reason: 'ConnectFailed', message: `cannot dial ${address.host}:${address.port}: ${String(e)}` })))
          return
        }
        connection.onEstablished = () => resume(Effect.succeed(connection))
        connection.onHandshakeFailed = (error) => resume(Effect.fail(error))
        return Effect.sync(() => {
          if (!connection.established) connection.close(0, 'dial interrupted')
        })
      })

    return Transport.of({
      address: endpoint.address,
      connect,
      accept: Queue.take(incoming),
      connections: () => endpoint.connections(),
      stats: () => endpoint.stats()
    })
  })

/** A QUIC transport as a layer. */
export const layer = (options: QuicTransportOptions): Layer.Layer<Transport, TransportError | ConfigError> => Layer.scoped(Transport, make(options))

/**
 * A QUIC transport whose settings come from Effect `Config` (`TransportConfig.config`, read
 * under `MYCORRIZAL_TRANSPORT_*` from the environment by default), over the LAN defaults.
 */
export const layerConfig = (tls: QuicTls): Layer.Layer<Transport, TransportError | ConfigError | EffectConfigError.ConfigError> =>
  Layer.unwrapEffect(Config.nested(TransportConfig.config, 'MYCORRIZAL_TRANSPORT').pipe(Effect.map((input) => layer({ ...input, tls }))))
