/**
 * Prometheus metrics of a node, read from the stats of the cluster, the streams and the cache
 * at scrape time. Counters are set from the cumulative totals each package keeps, so a scrape
 * never adds anything twice and a stream or bucket that is gone leaves no stale series.
 *
 * Everything goes on an injected prom-client `Registry`, never on the global one.
 *
 * @since 0.1.0
 */
import { Elections, Locks, Topics } from '@mycorrizal/coordination'
import { Mycel } from '@mycorrizal/mycel'
import { Nodosum } from '@mycorrizal/nodosum'
import { Streams, type StreamStats } from '@mycorrizal/streams'
import * as Context from 'effect/Context'
import * as Effect from 'effect/Effect'
import * as Layer from 'effect/Layer'
import * as Option from 'effect/Option'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'

/** What the metrics are read from. The cache is optional: a node may run without it. */
export interface Sources {
  readonly nodosum: Nodosum.Nodosum['Type']
  readonly streams: Streams.Streams['Type']
  readonly mycel?: Mycel.Mycel['Type'] | undefined
  /** Topics, when the node runs them. */
  readonly topics?: Topics.Topics['Type'] | undefined
  /** Locks, when the node runs them. */
  readonly locks?: Locks.Locks['Type'] | undefined
  /** Elections, when the node runs them. */
  readonly elections?: Elections.Elections['Type'] | undefined
}

/** Options of `register` and `layer`. */
export interface MetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop lag, GC, handles); default true. */
  readonly processMetrics?: boolean
}

/** The name the default stream has in metric labels. */
export const DEFAULT_STREAM = 'default'

type Labels<K extends string> = Partial<Record<K, string | number>>

/** A counter whose value is set from a cumulative total on each scrape. */
const totalCounter = <K extends string>(registry: Registry, name: string, help: string, labelNames: ReadonlyArray<K>, fill: (set: (labels: Labels<K>, value: number) => void) => void) =>
  new Counter<K>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset()
      fill((labels, value) => this.inc(labels, value))
    }
  })

/** A gauge set on each scrape. */
const gauge = <K extends string>(registry: Registry, name: string, help: string, labelNames: ReadonlyArray<K>, fill: (set: (labels: Labels<K>, value: number) => void) => void) =>
  new Gauge<K>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset()
      fill((labels, value) => this.set(labels, value))
    }
  })

/** A histogram exported from cumulative bucket counts kept elsewhere (prom-client's own only observes). */
const cumulativeHistogram = (
  registry: Registry,
  name: string,
  help: string,
  read: () => ReadonlyArray<{ readonly labels: Record<string, string>; readonly bounds: ReadonlyArray<number>; readonly cumulative: ReadonlyArray<number>; readonly sum: number; readonly count: number }>
) => {
  const metric = {
    name,
    help,
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    get: () => {
      const values: Array<{ value: number; labels: Record<string, string | number>; metricName: string }> = []
      for (const h of read()) {
        for (let i = 0; i < h.bounds.length; i++) values.push({ value: h.cumulative[i]!, labels: { ...h.labels, le: h.bounds[i]! }, metricName: `${name}_bucket` })
        values.push({ value: h.count, labels: { ...h.labels, le: '+Inf' }, metricName: `${name}_bucket` })
        values.push({ value: h.sum, labels: h.labels, metricName: `${name}_sum` })
        values.push({ value: h.count, labels: h.labels, metricName: `${name}_count` })
      }
      return { name, help, type: 'histogram' as const, aggregator: 'sum' as const, values }
    }
  }
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0])
}

/** Every stream of every application with its labels. */
const eachStream = (streams: Sources['streams'], f: (app: string, stream: string, stats: StreamStats) => void) => {
  for (const app of streams.applications()) {
    const stats = app.stats()
    f(app.id, DEFAULT_STREAM, stats.defaultStreamStats)
    for (const [name, s] of Object.entries(stats.streams)) f(app.id, name, s)
  }
}

/** Registers every Mycorrizal metric of one node on `registry`. */
export const register = (registry: Registry, sources: Sources, options: MetricsOptions = {}): void => {
  const { nodosum, streams, mycel } = sources

  // ---- streams (the spec's names and labels) -------------------------------------------
  totalCounter(registry, 'mycorrizal_stream_bytes_total', 'Total bytes sent/received per stream', ['app', 'stream', 'direction'], (set) =>
    eachStream(streams, (app, stream, s) => {
      set({ app, stream, direction: 'sent' }, s.bytesSent)
      set({ app, stream, direction: 'received' }, s.bytesReceived)
    })
  )
  totalCounter(registry, 'mycorrizal_stream_messages_total', 'Total messages sent/received per stream', ['app', 'stream', 'direction'], (set) =>
    eachStream(streams, (app, stream, s) => {
      set({ app, stream, direction: 'out' }, s.messagesOut)
      set({ app, stream, direction: 'in' }, s.messagesIn)
    })
  )
  totalCounter(registry, 'mycorrizal_stream_failed_sends_total', 'Messages that did not reach a node, per stream', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.failedSends))
  )
  totalCounter(registry, 'mycorrizal_stream_receive_errors_total', 'Receive handler calls that threw, per stream', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.receiveErrors))
  )
  gauge(registry, 'mycorrizal_stream_active', 'Number of active streams per application (the default stream included)', ['app'], (set) => {
    for (const app of streams.applications()) set({ app: app.id }, app.stats().activeStreams)
  })
  gauge(registry, 'mycorrizal_stream_error_rate', 'Error rate per stream (0.0-1.0): failed sends over all sends', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.errorRate))
  )
  gauge(registry, 'mycorrizal_stream_last_active_timestamp', 'Unix time in seconds of the last message in or out per stream', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.lastActive / 1000))
  )
  gauge(registry, 'mycorrizal_stream_queued_bytes', 'Bytes waiting in the outgoing buffers of a stream', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.queuedBytes))
  )
  gauge(registry, 'mycorrizal_stream_nodes', 'Nodes with an open QUIC stream of a stream', ['app', 'stream'], (set) =>
    eachStream(streams, (app, stream, s) => set({ app, stream }, s.activeNodes.length))
  )

  // ---- cluster --------------------------------------------------------------------------
  gauge(registry, 'mycorrizal_members', 'Members of the cluster known to this node by state (self included)', ['state'], (set) => {
    for (const [state, n] of Object.entries(nodosum.stats().membersByState)) set({ state }, n)
  })
  gauge(registry, 'mycorrizal_connections', 'Open QUIC connections to peers', [], (set) => set({}, nodosum.stats().peers.length))
  gauge(registry, 'mycorrizal_peer_rtt_seconds', 'Heartbeat round-trip time per peer', ['peer'], (set) => {
    for (const p of nodosum.stats().peers) if (p.heartbeatRttMicros !== undefined) set({ peer: p.id }, p.heartbeatRttMicros / 1e6)
  })
  totalCounter(registry, 'mycorrizal_connection_bytes_total', 'Bytes on the connection to a peer (QUIC, headers included)', ['peer', 'direction'], (set) => {
    for (const p of nodosum.stats().peers) {
      set({ peer: p.id, direction: 'sent' }, p.bytesSent)
      set({ peer: p.id, direction: 'received' }, p.bytesReceived)
    }
  })
  gauge(registry, 'mycorrizal_connection_streams', 'Open QUIC streams on the connection to a peer', ['peer'], (set) => {
    for (const p of nodosum.stats().peers) set({ peer: p.id }, p.streamsOpen)
  })
  totalCounter(registry, 'mycorrizal_connection_packets_lost_total', 'QUIC packets lost on the connection to a peer', ['peer'], (set) => {
    for (const p of nodosum.stats().peers) set({ peer: p.id }, p.packetsLost)
  })
  totalCounter(registry, 'mycorrizal_handshakes_total', 'Peer handshakes that completed', [], (set) => set({}, nodosum.stats().handshakesSucceeded))
  totalCounter(registry, 'mycorrizal_handshake_failures_total', 'Peer handshakes refused or failed, by reason', ['reason'], (set) => {
    for (const [reason, n] of Object.entries(nodosum.stats().handshakeFailures)) set({ reason }, n)
  })
  gauge(registry, 'mycorrizal_handshakes_in_progress', 'Connections in their cluster handshake, not authenticated yet', [], (set) =>
    set({}, nodosum.stats().handshakesInProgress ?? 0)
  )
  gauge(registry, 'mycorrizal_quic_handshakes_in_progress', 'Accepted QUIC connections whose TLS handshake has not finished (half-open)', [], (set) => {
    const t = nodosum.stats().transport
    if (t !== undefined) set({}, t.handshakesInProgress)
  })
  totalCounter(registry, 'mycorrizal_quic_retries_total', 'QUIC Retry packets sent: address validation asked of a new source', [], (set) => {
    const t = nodosum.stats().transport
    if (t !== undefined) set({}, t.retriesSent)
  })
  totalCounter(registry, 'mycorrizal_quic_refused_total', 'QUIC Initial packets that created no connection, by reason', ['reason'], (set) => {
    const t = nodosum.stats().transport
    if (t !== undefined) for (const [reason, n] of Object.entries(t.refused)) set({ reason }, n)
  })

  // ---- cache ----------------------------------------------------------------------------
  if (mycel !== undefined) {
    const eachBucket = (f: (bucket: string, s: Mycel.BucketStats) => void) => {
      for (const name of mycel.buckets()) {
        const s = mycel.stats(name)
        if (s !== undefined) f(name, s)
      }
    }
    totalCounter(registry, 'mycorrizal_cache_hits_total', 'Gets that found a value, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.hits)))
    totalCounter(registry, 'mycorrizal_cache_misses_total', 'Gets that found nothing, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.misses)))
    totalCounter(registry, 'mycorrizal_cache_puts_total', 'Puts applied to this node, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.puts)))
    totalCounter(registry, 'mycorrizal_cache_deletes_total', 'Deletes applied to this node, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.deletes)))
    totalCounter(registry, 'mycorrizal_cache_evictions_total', 'Entries removed before being deleted, per bucket and reason', ['bucket', 'reason'], (set) =>
      eachBucket((bucket, s) => {
        for (const [reason, n] of Object.entries(s.evictions)) set({ bucket, reason }, n)
      })
    )
    totalCounter(registry, 'mycorrizal_cache_timeouts_total', 'Remote cache requests that timed out, per bucket', ['bucket'], (set) =>
      eachBucket((bucket, s) => set({ bucket }, s.timeouts))
    )
    const eachNear = (f: (bucket: string, s: Mycel.NearCacheStats) => void) => eachBucket((bucket, s) => s.near !== undefined && f(bucket, s.near))
    totalCounter(registry, 'mycorrizal_cache_near_hits_total', 'Gets answered from a near copy, per bucket', ['bucket'], (set) => eachNear((bucket, n) => set({ bucket }, n.hits)))
    totalCounter(registry, 'mycorrizal_cache_near_misses_total', 'Gets of keys owned elsewhere with no near copy, per bucket', ['bucket'], (set) => eachNear((bucket, n) => set({ bucket }, n.misses)))
    totalCounter(registry, 'mycorrizal_cache_near_invalidations_total', 'Near copies dropped because an owner said the key was written, per bucket', ['bucket'], (set) =>
      eachNear((bucket, n) => set({ bucket }, n.invalidations))
    )
    totalCounter(registry, 'mycorrizal_cache_near_updates_total', 'Near copies given the new value by an owner that wrote the key, per bucket', ['bucket'], (set) =>
      eachNear((bucket, n) => set({ bucket }, n.updates))
    )
    totalCounter(registry, 'mycorrizal_cache_near_evictions_total', 'Near copies dropped for room or by a membership change, per bucket', ['bucket'], (set) =>
      eachNear((bucket, n) => set({ bucket }, n.evictions))
    )
    gauge(registry, 'mycorrizal_cache_near_entries', 'Near copies held on this node, per bucket', ['bucket'], (set) => eachNear((bucket, n) => set({ bucket }, n.entries)))
    gauge(registry, 'mycorrizal_cache_keys', 'Entries held on this node, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.keys)))
    gauge(registry, 'mycorrizal_cache_bytes', 'Bytes of keys and values held on this node, per bucket', ['bucket'], (set) => eachBucket((bucket, s) => set({ bucket }, s.bytes)))
    totalCounter(registry, 'mycorrizal_cache_rebalance_entries_total', 'Entries moved by rebalancing, per bucket: sent to new owners or received', ['bucket', 'direction'], (set) =>
      eachBucket((bucket, s) => {
        set({ bucket, direction: 'sent' }, s.handedOff)
        set({ bucket, direction: 'received' }, s.received)
      })
    )
    gauge(registry, 'mycorrizal_cache_ready', '1 once this node has received the keys it owns after joining, else 0', [], (set) => set({}, mycel.ready() ? 1 : 0))
    cumulativeHistogram(registry, 'mycorrizal_cache_remote_op_duration_seconds', 'Latency of cache operations answered by another node, per bucket and operation', () => {
      const out: Array<{ labels: Record<string, string>; bounds: ReadonlyArray<number>; cumulative: ReadonlyArray<number>; sum: number; count: number }> = []
      eachBucket((bucket, s) => {
        for (const [op, h] of [
          ['get', s.remoteGetLatency],
          ['write', s.remoteWriteLatency]
        ] as const) {
          out.push({ labels: { bucket, op }, bounds: h.boundsUs.map((us) => us / 1e6), cumulative: h.cumulativeCounts, sum: h.sumUs / 1e6, count: h.count })
        }
      })
      return out
    })
  }

  const topics = sources.topics
  if (topics !== undefined) {
    totalCounter(registry, 'mycorrizal_topic_messages_total', 'Messages per topic: published by this node, delivered to its subscribers', ['topic', 'direction'], (set) => {
      for (const t of topics.stats()) {
        set({ topic: t.topic, direction: 'published' }, t.published)
        set({ topic: t.topic, direction: 'delivered' }, t.delivered)
      }
    })
    totalCounter(registry, 'mycorrizal_topic_failed_publishes_total', 'Publishes of this node that failed or timed out, per topic', ['topic'], (set) => {
      for (const t of topics.stats()) set({ topic: t.topic }, t.failedPublishes)
    })
    gauge(registry, 'mycorrizal_topic_subscribers', 'Subscribers per topic: handlers on this node (local), other nodes with one (nodes)', ['topic', 'where'], (set) => {
      for (const t of topics.stats()) {
        set({ topic: t.topic, where: 'local' }, t.localSubscribers)
        set({ topic: t.topic, where: 'nodes' }, t.subscriberNodes.length)
      }
    })
    gauge(registry, 'mycorrizal_topic_pending_publishes', 'Publishes of this node waiting for a subscriber node, per topic', ['topic'], (set) => {
      for (const t of topics.stats()) set({ topic: t.topic }, t.pending)
    })
  }

  const locks = sources.locks
  if (locks !== undefined) {
    totalCounter(registry, 'mycorrizal_locks_acquires_total', 'Locks granted to this node', [], (set) => set({}, locks.stats().acquires))
    totalCounter(registry, 'mycorrizal_locks_contended_total', 'Acquires of this node that found the lock held at least once', [], (set) => set({}, locks.stats().contended))
    totalCounter(registry, 'mycorrizal_locks_timeouts_total', 'Acquires of this node that gave up after waitMs (LockTimeout)', [], (set) => set({}, locks.stats().timeouts))
    totalCounter(registry, 'mycorrizal_locks_releases_total', 'Locks released by this node', [], (set) => set({}, locks.stats().releases))
    totalCounter(registry, 'mycorrizal_locks_lost_total', "Holds of this node that ended without a release (lease passed, or taken after it)", [], (set) => set({}, locks.stats().lost))
    totalCounter(registry, 'mycorrizal_locks_refused_total', 'Grants and extends refused because this node saw fewer than minMembers members', [], (set) => set({}, locks.stats().refused))
    gauge(registry, 'mycorrizal_locks_held', 'Locks this node holds now', [], (set) => set({}, locks.stats().held.length))
  }
  const elections = sources.elections
  if (elections !== undefined) {
    totalCounter(registry, 'mycorrizal_elections_led_total', 'Terms this node led, all elections', [], (set) => set({}, elections.stats().led))
    totalCounter(registry, 'mycorrizal_elections_revoked_total', 'Terms of this node that ended by a failed renewal or a passed lease', [], (set) => set({}, elections.stats().revoked))
    gauge(registry, 'mycorrizal_elections_leader', 'Per election this node stands in: 1 while it leads, else 0', ['election'], (set) => {
      for (const e of elections.stats().elections) set({ election: e.name }, e.isLeader ? 1 : 0)
    })
  }

  if (options.processMetrics ?? true) {
    collectDefaultMetrics({ register: registry })
    // gauges named like counters (promtool refuses them); the same counts are in the by-type series without the suffix
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name)
  }
}

/** The metrics of this node, in Prometheus text format. */
export class Metrics extends Context.Tag('@mycorrizal/metrics/Metrics')<
  Metrics,
  {
    readonly registry: Registry
    /** The exposition, rendered now. */
    readonly text: Effect.Effect<string>
    /** Content type of `text` for an HTTP response. */
    readonly contentType: string
  }
>() {}

/** Builds the service on `registry` from the given sources. */
export const make = (registry: Registry, sources: Sources, options: MetricsOptions = {}): Metrics['Type'] => {
  register(registry, sources, options)
  return {
    registry,
    text: Effect.promise(() => registry.metrics()),
    contentType: registry.contentType
  }
}

/** The metrics service over this node's cluster, streams, cache and (when present) topics, locks and elections, on a registry of its own. */
export const layer = (options: MetricsOptions = {}): Layer.Layer<Metrics, never, Nodosum.Nodosum | Streams.Streams | Mycel.Mycel> =>
  Layer.scoped(
    Metrics,
    Effect.gen(function* () {
      const sources = {
        nodosum: yield* Nodosum.Nodosum,
        streams: yield* Streams.Streams,
        mycel: yield* Mycel.Mycel,
        topics: Option.getOrUndefined(yield* Effect.serviceOption(Topics.Topics)),
        locks: Option.getOrUndefined(yield* Effect.serviceOption(Locks.Locks)),
        elections: Option.getOrUndefined(yield* Effect.serviceOption(Elections.Elections))
      }
      const registry = new Registry()
      yield* Effect.addFinalizer(() => Effect.sync(() => registry.clear()))
      return make(registry, sources, options)
    })
  )
