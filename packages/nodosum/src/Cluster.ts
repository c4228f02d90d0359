/**
 * The implementation of the `Nodosum` service: the cluster engine over whatever `Transport`
 * and `Discovery` the context provides. A different transport is a different layer:
 *
 * ```ts
 * Cluster.layer(settings, identity).pipe(Layer.provide(QuicTransport.layer(...)), Layer.provide(Discovery.layer(...)))
 * ```
 *
 * `layerQuic` and `layerMemory` validate the settings and compose exactly that; the package
 * index also offers them as `Nodosum.layer` and `Nodosum.layerMemory`.
 *
 * @since 0.2.0
 */
import * as Config from 'effect/Config'
import type * as EffectConfigError from 'effect/ConfigError'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Redacted from 'effect/Redacted'
import type * as Scope from 'effect/Scope'
import * as Certificates from './Certificates.js'
import * as Discovery from './Discovery.js'
import * as internal from './internal/cluster.js'
import * as MemoryTransport from './MemoryTransport.js'
import { Nodosum, type TlsIdentity } from './Nodosum.js'
import * as NodosumConfig from './NodosumConfig.js'
import type { ConfigError, TransportError } from './NodosumError.js'
import * as QuicTransport from './QuicTransport.js'
import { formatAddress, Transport } from './Transport.js'

export type { TlsIdentity } from './Nodosum.js'

/** The certificate a node presents: the configured one (mTLS) or a fresh self-signed one (secret mode). */
export const tlsIdentity = (settings: NodosumConfig.NodosumSettings): Effect.Effect<TlsIdentity> =>
  settings.auth?._tag === 'Tls'
    ? Effect.succeed({ cert: settings.auth.cert, key: Redacted.value(settings.auth.key), ca: settings.auth.ca })
    : Certificates.createSelfSigned(settings.nodeId).pipe(Effect.map((c) => ({ cert: c.cert, key: c.key, ca: undefined })))

/** The cluster service over the `Transport` and `Discovery` of the context; the scope owns every fiber and timer of it. */
export const make = (
  settings: NodosumConfig.NodosumSettings,
  identity: TlsIdentity
): Effect.Effect<Nodosum['Type'], never, Transport | Discovery.Discovery | Scope.Scope> => internal.make(settings, Certificates.toDer(identity.cert))

/** `make` as a layer: provide a `Transport` and a `Discovery`. */
export const layer = (settings: NodosumConfig.NodosumSettings, identity: TlsIdentity): Layer.Layer<Nodosum, never, Transport | Discovery.Discovery> =>
  Layer.scoped(Nodosum, make(settings, identity))

/** A node over QUIC: validates the settings, binds the transport, joins the cluster. `single` runs without a cluster. */
export const layerQuic = (input: NodosumConfig.NodosumSettingsInput): Layer.Layer<Nodosum, ConfigError | TransportError> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const settings = yield* NodosumConfig.make(input)
      const identity = yield* tlsIdentity(settings)
      if (settings.single) {
        // no cluster: nothing is bound, local features only
        const transport = MemoryTransport.layer({ host: 'single', certificates: [Certificates.toDer(identity.cert)] }).pipe(Layer.provide(MemoryTransport.networkLayer))
        return layer(settings, identity).pipe(Layer.provide(transport), Layer.provide(Layer.succeed(Discovery.Discovery, Discovery.fixed([]))))
      }
      const transport = Layer.scoped(
        Transport,
        QuicTransport.make({ ...settings.transport, tls: identity }).pipe(
          Effect.tap((t) =>
            Effect.logInfo('node listening').pipe(
              Effect.annotateLogs({ node: settings.nodeId, cluster: settings.clusterId, address: formatAddress(t.address), auth: settings.auth?._tag ?? 'none' })
            )
          )
        )
      )
      return layer(settings, identity).pipe(Layer.provide(transport), Layer.provide(Discovery.layer(settings.discovery)))
    })
  )

/**
 * A node over the in-memory transport (needs a `MemoryNetwork`): for deterministic tests of
 * many nodes in one process. `host` names the node in the network.
 */
export const layerMemory = (input: NodosumConfig.NodosumSettingsInput): Layer.Layer<Nodosum, ConfigError | TransportError, MemoryTransport.MemoryNetwork> =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const settings = yield* NodosumConfig.make({ host: 'memory', ...input })
      const identity = yield* tlsIdentity(settings)
      const transport = MemoryTransport.layer({
        host: settings.transport.host,
        port: settings.transport.port,
        handshakeTimeoutMs: Duration.toMillis(settings.transport.handshakeTimeout),
        idleTimeoutMs: Duration.toMillis(settings.transport.idleTimeout),
        limits: settings.transport,
        certificates: [Certificates.toDer(identity.cert)]
      })
      return layer(settings, identity).pipe(Layer.provide(transport), Layer.provide(Discovery.layer(settings.discovery)))
    })
  )

/**
 * A node over QUIC whose settings come from Effect `Config` (`NodosumConfig.config` under
 * `MYCORRIZAL_`: `MYCORRIZAL_NODE_ID`, `MYCORRIZAL_CLUSTER_SECRET`, `MYCORRIZAL_SEEDS`, ...),
 * over `input`; the values are checked by the same schemas as `layerQuic`'s input.
 */
export const layerConfig = (input: NodosumConfig.NodosumSettingsInput = {}): Layer.Layer<Nodosum, ConfigError | TransportError | EffectConfigError.ConfigError> =>
  Layer.unwrapEffect(Config.nested(NodosumConfig.config, 'MYCORRIZAL').pipe(Effect.map((read) => layerQuic({ ...input, ...read, transport: { ...input.transport, ...read.transport } }))))
