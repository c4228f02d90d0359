/**
 * One node process: the cluster, streams and cache layers from the validated settings, the
 * buckets it was told to create, Prometheus metrics and the admin HTTP API. It runs until its
 * scope closes (SIGTERM or SIGINT in `mycorrizal node`), then leaves the cluster gracefully.
 *
 * @since 0.1.0
 */
import { Metrics } from '@mycorrizal/metrics'
import { Mycel, Mycorrizal, Nodosum, type MycorrizalConfig, type MycorrizalError } from 'mycorrizal'
import * as Context from 'effect/Context'
import * as Data from 'effect/Data'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import type * as Scope from 'effect/Scope'
import * as Admin from './Admin.js'
import { clusterField, describeField, NodeConfigError, type NodeSettings } from './NodeConfig.js'

/** The node could not start for a reason other than its settings (a port in use, say). */
export class NodeStartError extends Data.TaggedError('NodeStartError')<{ readonly message: string }> {}

/** A running node, as its parent process and the operator see it. */
export interface RunningNode {
  readonly id: string
  readonly quic: { readonly host: string; readonly port: number }
  readonly admin: Admin.AdminServer
  /** Alive member ids, this node included, sorted. */
  readonly nodes: () => ReadonlyArray<string>
}

/** How long a node that finds no peer waits before it serves alone and reports ready. */
export const JOIN_GRACE = Duration.seconds(10)

/** The library config of these settings. */
export const libraryConfig = (settings: NodeSettings): MycorrizalConfig => ({
  nodeId: settings.nodeId,
  clusterId: settings.clusterId,
  host: settings.host,
  port: settings.port,
  advertiseHost: settings.advertiseHost,
  advertisePort: settings.advertisePort,
  clusterSecret: settings.clusterSecret,
  tls: settings.tls,
  seeds: settings.seeds,
  dns: settings.dns,
  dnsPort: settings.dns === undefined ? undefined : settings.dnsPort,
  consul: settings.consul,
  ...(settings.consulToken === undefined ? {} : { consulToken: settings.consulToken }),
  single: settings.single,
  heartbeatInterval: settings.heartbeatIntervalMs,
  failureTimeout: settings.failureTimeoutMs
})

/** The umbrella's typed layer error as this process reports it: a cluster setting by its flag, anything else as a start failure. */
const startError = (error: MycorrizalError): NodeConfigError | NodeStartError => {
  switch (error._tag) {
    case 'NodosumConfigError': {
      const key = clusterField(error.field)
      return new NodeConfigError({ field: key, message: `${describeField(key)}: ${error.message}` })
    }
    case 'TransportError':
    case 'StreamsError':
    case 'MycelError':
      return new NodeStartError({ message: error.message })
  }
}

/** Starts a node in the current scope; closing the scope stops it (leave, then every resource released). */
export const start = (settings: NodeSettings): Effect.Effect<RunningNode, NodeConfigError | NodeStartError, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(Metrics.layer().pipe(Layer.provideMerge(Mycorrizal.layer(libraryConfig(settings))))).pipe(Effect.mapError(startError))
    const nodosum = Context.get(context, Nodosum.Nodosum)
    const mycel = Context.get(context, Mycel.Mycel)
    const metrics = Context.get(context, Metrics.Metrics)
    for (const bucket of settings.buckets) {
      yield* mycel.createBucket(bucket.name, Duration.millis(bucket.ttlMs), bucket.maxSize).pipe(
        Effect.mapError((e) => new NodeConfigError({ field: 'buckets', message: `${describeField('buckets')}: bucket "${bucket.name}": ${e.message}` }))
      )
    }
    const startedAt = Date.now()
    const alone = settings.single || (settings.seeds.length === 0 && settings.dns === undefined && settings.consul === undefined)
    const joined = () => alone || nodosum.nodes().length > 1 || Date.now() - startedAt >= Duration.toMillis(JOIN_GRACE)
    const admin = yield* Admin.make({
      host: settings.adminHost,
      port: settings.adminPort,
      adminToken: settings.adminToken,
      readToken: settings.adminReadToken,
      metrics: metrics.text,
      metricsContentType: metrics.contentType,
      joined
    }).pipe(
      Effect.provide(context),
      Effect.mapError((e) => new NodeStartError({ message: `the admin API could not listen on ${settings.adminHost}:${settings.adminPort}: ${String(e.cause ?? e)}` }))
    )
    const running: RunningNode = { id: nodosum.nodeId, quic: nodosum.boundAddress, admin, nodes: () => nodosum.nodes() }
    yield* Effect.logInfo('node started').pipe(
      Effect.annotateLogs({
        node: running.id,
        cluster: nodosum.clusterId,
        quic: `${running.quic.host}:${running.quic.port}`,
        admin: admin.url,
        auth: settings.tls !== undefined ? 'mtls' : settings.clusterSecret !== undefined ? 'secret' : 'none',
        buckets: settings.buckets.map((b) => b.name).join(',')
      })
    )
    yield* Effect.addFinalizer(() => Effect.logInfo('node stopping: leaving the cluster').pipe(Effect.annotateLogs({ node: running.id })))
    return running
  })
