import { describe, expect, it } from '@effect/vitest'
import { Elections, Locks, Topics } from '@mycorrizal/coordination'
import { Mycel } from '@mycorrizal/mycel'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Context, Duration, Effect, Layer, Logger, LogLevel, type Scope } from 'effect'
import { Registry } from 'prom-client'
import * as Metrics from '../src/Metrics.js'

const secret = 'metrics-test-secret-of-at-least-32-characters'

type Node = {
  readonly id: string
  readonly nodosum: Nodosum.Nodosum['Type']
  readonly streams: Streams.Streams['Type']
  readonly mycel: Mycel.Mycel['Type']
  readonly topics: Topics.Topics['Type']
  readonly metrics: Metrics.Metrics['Type']
}

const nodeLayer = <R>(nodosum: Layer.Layer<Nodosum.Nodosum, unknown, R>) =>
  Metrics.layer({ processMetrics: false }).pipe(
    Layer.provideMerge(Layer.merge(Mycel.layer({ requestTimeout: '1 second', readyTimeout: '2 seconds' }), Topics.layer())),
    Layer.provideMerge(Streams.layer()),
    Layer.provideMerge(nodosum)
  )

const build = <R>(id: string, layer: Layer.Layer<Metrics.Metrics | Mycel.Mycel | Topics.Topics | Streams.Streams | Nodosum.Nodosum, unknown, R>) =>
  Layer.build(layer).pipe(
    Effect.map(
      (ctx): Node => ({
        id,
        nodosum: Context.get(ctx, Nodosum.Nodosum),
        streams: Context.get(ctx, Streams.Streams),
        mycel: Context.get(ctx, Mycel.Mycel),
        topics: Context.get(ctx, Topics.Topics),
        metrics: Context.get(ctx, Metrics.Metrics)
      })
    )
  )

const until = (condition: () => boolean, what: string, ms = 10_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 10; i++) {
      if (condition()) return
      yield* Effect.sleep(Duration.millis(10))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

/** The samples of an exposition: `name{label="value",…}` (labels sorted) to value. */
const samples = (text: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (m === null) throw new Error(`not a sample line: ${line}`)
    const labels = m[2] === undefined ? [] : [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`)
    out.set(`${m[1]}{${labels.sort().join(',')}}`, Number(m[3]))
  }
  return out
}

const key = (name: string, labels: Record<string, string> = {}) =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')}}`

const bytes = (s: string) => new TextEncoder().encode(s)

const memoryCluster = Effect.gen(function* () {
  const a = yield* build('a', nodeLayer(Nodosum.layerMemory({ nodeId: 'a', host: 'a', port: 7001, clusterSecret: secret, seeds: [] })))
  const b = yield* build('b', nodeLayer(Nodosum.layerMemory({ nodeId: 'b', host: 'b', port: 7001, clusterSecret: secret, seeds: ['a:7001'] })))
  yield* until(() => a.nodosum.nodes().length === 2 && b.nodosum.nodes().length === 2, 'mesh')
  return [a, b] as const
})

const inMemory = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Warning))

/** Traffic on a named stream, the default stream and the cache, then settled. */
const traffic = (a: Node, b: Node) =>
  Effect.gen(function* () {
    const appA = yield* a.streams.registerApplication('orders')
    const appB = yield* b.streams.registerApplication('orders')
    let received = 0
    const eu = yield* appB.createStream('topic:eu')
    eu.setReceiveFunc(() => void received++)
    appB.setReceiveFunc(() => void received++)
    const euA = yield* appA.createStream('topic:eu')
    for (let i = 0; i < 10; i++) yield* euA.send(new Uint8Array(100), ['b'])
    for (let i = 0; i < 5; i++) yield* appA.send(new Uint8Array(10), ['b'])
    yield* until(() => received === 15, '15 messages received')
    yield* b.topics.subscribe('invalidations', () => {})
    yield* a.topics.publish('invalidations', new Uint8Array(8))
    for (const n of [a, b]) yield* n.mycel.createBucket('sessions', '1 minute', 1000)
    for (let i = 0; i < 20; i++) yield* a.mycel.put('sessions', `k${i}`, bytes(`value-${i}`))
    for (let i = 0; i < 20; i++) yield* b.mycel.get('sessions', `k${i}`)
    yield* b.mycel.get('sessions', 'missing')
  })

const promtool = ['/usr/bin/promtool', 'promtool'].find((p) => spawnSync(p, ['--version']).status === 0)

describe('Metrics', () => {
  it.live('exports the spec stream metrics from cumulative totals: a second scrape adds nothing', () =>
    inMemory(
      Effect.gen(function* () {
        const [a, b] = yield* memoryCluster
        yield* traffic(a, b)
        const first = samples(yield* a.metrics.text)
        const second = samples(yield* a.metrics.text)
        const stream = { app: 'orders', stream: 'topic:eu' }
        const stats = a.streams.applications().find((x) => x.id === 'orders')!.stats()
        for (const s of [first, second]) {
          expect(s.get(key('mycorrizal_stream_bytes_total', { ...stream, direction: 'sent' }))).toBe(1000)
          expect(s.get(key('mycorrizal_stream_bytes_total', { ...stream, direction: 'received' }))).toBe(0)
          expect(s.get(key('mycorrizal_stream_messages_total', { ...stream, direction: 'out' }))).toBe(10)
          expect(s.get(key('mycorrizal_stream_messages_total', { ...stream, direction: 'in' }))).toBe(0)
          expect(s.get(key('mycorrizal_stream_messages_total', { app: 'orders', stream: 'default', direction: 'out' }))).toBe(5)
          expect(s.get(key('mycorrizal_stream_bytes_total', { app: 'orders', stream: 'default', direction: 'sent' }))).toBe(50)
          expect(s.get(key('mycorrizal_stream_error_rate', stream))).toBe(0)
          expect(s.get(key('mycorrizal_stream_active', { app: 'orders' }))).toBe(2)
          expect(s.get(key('mycorrizal_stream_last_active_timestamp', stream))).toBe(stats.streams['topic:eu']!.lastActive / 1000)
        }
        // the receiving side counts what arrived
        const atB = samples(yield* b.metrics.text)
        expect(atB.get(key('mycorrizal_stream_bytes_total', { ...stream, direction: 'received' }))).toBe(1000)
        expect(atB.get(key('mycorrizal_stream_messages_total', { ...stream, direction: 'in' }))).toBe(10)
        // a closed stream leaves no series behind
        const app = a.streams.applications().find((x) => x.id === 'orders')!
        yield* app.closeStream('topic:eu')
        const after = samples(yield* a.metrics.text)
        expect([...after.keys()].some((k) => k.includes('stream="topic:eu"'))).toBe(false)
        expect(after.get(key('mycorrizal_stream_active', { app: 'orders' }))).toBe(1)
      })
    )
  )

  it.live('exports membership, connections and per-bucket cache series, with a cumulative latency histogram', () =>
    inMemory(
      Effect.gen(function* () {
        const [a, b] = yield* memoryCluster
        yield* traffic(a, b)
        const s = samples(yield* b.metrics.text)
        expect(s.get(key('mycorrizal_members', { state: 'alive' }))).toBe(2)
        expect(s.get(key('mycorrizal_connections'))).toBe(1)
        expect(s.get(key('mycorrizal_connection_streams', { peer: 'a' }))).toBeGreaterThan(0)
        expect(s.get(key('mycorrizal_handshakes_total'))).toBeGreaterThan(0)
        const stats = b.mycel.stats('sessions')!
        expect(s.get(key('mycorrizal_cache_hits_total', { bucket: 'sessions' }))).toBe(stats.hits)
        expect(s.get(key('mycorrizal_cache_misses_total', { bucket: 'sessions' }))).toBe(stats.misses)
        expect(s.get(key('mycorrizal_cache_keys', { bucket: 'sessions' }))).toBe(stats.keys)
        expect(s.get(key('mycorrizal_cache_bytes', { bucket: 'sessions' }))).toBe(stats.bytes)
        expect(s.get(key('mycorrizal_cache_ready'))).toBe(b.mycel.ready() ? 1 : 0)
        yield* until(() => b.mycel.ready(), 'b ready')
        expect(samples(yield* b.metrics.text).get(key('mycorrizal_cache_ready'))).toBe(1)
        // with two nodes and R = 2 every key is on both: b read its own copies; a's gets go remote only when it is not an owner
        const total = a.mycel.stats('sessions')!.keys + stats.keys
        expect(total).toBe(40)
        // histogram: +Inf equals _count, buckets never decrease
        const h = samples(yield* a.metrics.text)
        const labels = { bucket: 'sessions', op: 'write' }
        const count = h.get(key('mycorrizal_cache_remote_op_duration_seconds_count', labels))!
        expect(count).toBe(a.mycel.stats('sessions')!.remoteWriteLatency.count)
        expect(h.get(key('mycorrizal_cache_remote_op_duration_seconds_bucket', { ...labels, le: '+Inf' }))).toBe(count)
        const buckets = [...h.entries()]
          .filter(([k]) => k.startsWith('mycorrizal_cache_remote_op_duration_seconds_bucket{bucket="sessions"') && k.includes('op="write"') && !k.includes('+Inf'))
          .map(([k, v]) => [Number(/le="([^"]+)"/.exec(k)![1]), v] as const)
          .sort((x, y) => x[0] - y[0])
        expect(buckets.length).toBe(15)
        for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1])
        expect(h.get(key('mycorrizal_cache_remote_op_duration_seconds_sum', labels))).toBeGreaterThan(0)
        // evictions by reason once the LRU bound bites
        for (const n of [a, b]) yield* n.mycel.createBucket('tiny', '1 minute', 2)
        for (let i = 0; i < 5; i++) yield* a.mycel.put('tiny', `t${i}`, bytes('x'))
        const e = samples(yield* a.metrics.text)
        expect(e.get(key('mycorrizal_cache_evictions_total', { bucket: 'tiny', reason: 'lru' }))).toBe(a.mycel.stats('tiny')!.evictions['lru'])
        expect(a.mycel.stats('tiny')!.evictions['lru']).toBeGreaterThan(0)
      })
    )
  )

  it.live('exports the near cache series of a bucket that has one', () =>
    inMemory(
      Effect.gen(function* () {
        const [a, b] = yield* memoryCluster
        // one copy of each key: b reads a's keys from a, and keeps them near
        for (const n of [a, b]) yield* n.mycel.createBucket('hot', '1 minute', 1000, { replicas: 1, nearCache: { maxSize: 100, ttlMs: 60_000 } })
        for (let i = 0; i < 20; i++) yield* a.mycel.put('hot', `k${i}`, bytes(`value-${i}`))
        for (let round = 0; round < 2; round++) for (let i = 0; i < 20; i++) yield* b.mycel.get('hot', `k${i}`)
        const near = b.mycel.stats('hot')!.near!
        expect(near.hits).toBeGreaterThan(0)
        expect(near.hits + near.misses).toBe(b.mycel.stats('hot')!.remoteGets + near.hits)
        const s = samples(yield* b.metrics.text)
        expect(s.get(key('mycorrizal_cache_near_hits_total', { bucket: 'hot' }))).toBe(near.hits)
        expect(s.get(key('mycorrizal_cache_near_misses_total', { bucket: 'hot' }))).toBe(near.misses)
        expect(s.get(key('mycorrizal_cache_near_entries', { bucket: 'hot' }))).toBe(near.entries)
        expect(near.entries).toBe(near.misses)
        // writes on a update b's copies (of the keys a owns: b's are read from its own store), deletes invalidate them
        for (let i = 0; i < 20; i++) yield* a.mycel.put('hot', `k${i}`, bytes('new'))
        yield* until(() => b.mycel.stats('hot')!.near!.updates === near.entries, 'the updates at b')
        expect(samples(yield* b.metrics.text).get(key('mycorrizal_cache_near_updates_total', { bucket: 'hot' }))).toBe(near.entries)
        for (let i = 0; i < 20; i++) yield* a.mycel.delete('hot', `k${i}`)
        yield* until(() => b.mycel.stats('hot')!.near!.invalidations === near.entries, 'the invalidations at b')
        expect(samples(yield* b.metrics.text).get(key('mycorrizal_cache_near_invalidations_total', { bucket: 'hot' }))).toBe(near.entries)
        expect(samples(yield* b.metrics.text).get(key('mycorrizal_cache_near_evictions_total', { bucket: 'hot' }))).toBe(0)
        // a bucket without one has no near series
        expect([...s.keys()].some((k) => k.startsWith('mycorrizal_cache_near_') && k.includes('bucket="sessions"'))).toBe(false)
      })
    )
  )

  it.live('exports per-topic series: published and delivered messages, subscribers, failed and pending publishes', () =>
    inMemory(
      Effect.gen(function* () {
        const [a, b] = yield* memoryCluster
        yield* b.topics.subscribe('orders', () => {})
        yield* a.topics.subscribe('orders', () => {})
        for (let i = 0; i < 3; i++) yield* a.topics.publish('orders', bytes(`o${i}`))
        const atA = samples(yield* a.metrics.text)
        expect(atA.get(key('mycorrizal_topic_messages_total', { topic: 'orders', direction: 'published' }))).toBe(3)
        expect(atA.get(key('mycorrizal_topic_messages_total', { topic: 'orders', direction: 'delivered' }))).toBe(3)
        expect(atA.get(key('mycorrizal_topic_subscribers', { topic: 'orders', where: 'local' }))).toBe(1)
        expect(atA.get(key('mycorrizal_topic_subscribers', { topic: 'orders', where: 'nodes' }))).toBe(1)
        expect(atA.get(key('mycorrizal_topic_failed_publishes_total', { topic: 'orders' }))).toBe(0)
        expect(atA.get(key('mycorrizal_topic_pending_publishes', { topic: 'orders' }))).toBe(0)
        const atB = samples(yield* b.metrics.text)
        expect(atB.get(key('mycorrizal_topic_messages_total', { topic: 'orders', direction: 'delivered' }))).toBe(3)
        expect(atB.get(key('mycorrizal_topic_messages_total', { topic: 'orders', direction: 'published' }))).toBe(0)
      })
    )
  )

  it.live('exports lock and election series: acquires, contention, timeouts, holds, terms led, the leader flag', () =>
    inMemory(
      Effect.gen(function* () {
        const ctx = yield* Layer.build(
          Metrics.layer({ processMetrics: false }).pipe(
            Layer.provideMerge(Layer.merge(Locks.layer(), Elections.layer())),
            Layer.provideMerge(Mycel.layer({ requestTimeout: '1 second', readyTimeout: '2 seconds' })),
            Layer.provideMerge(Streams.layer()),
            Layer.provideMerge(Nodosum.layerMemory({ nodeId: 'l', host: 'l', port: 7001, clusterSecret: secret, seeds: [] }))
          )
        )
        const locks = Context.get(ctx, Locks.Locks)
        const lock = yield* locks.acquire('invoice-42', { ttlMs: 10_000 })
        yield* Effect.either(locks.acquire('invoice-42', { ttlMs: 10_000, waitMs: 20 }))
        yield* Context.get(ctx, Elections.Elections).elect('nightly', { ttlMs: 10_000 })
        const e = samples(yield* Context.get(ctx, Metrics.Metrics).text)
        expect(e.get(key('mycorrizal_locks_acquires_total'))).toBe(1)
        expect(e.get(key('mycorrizal_locks_contended_total'))).toBe(1)
        expect(e.get(key('mycorrizal_locks_timeouts_total'))).toBe(1)
        expect(e.get(key('mycorrizal_locks_held'))).toBe(1)
        expect(e.get(key('mycorrizal_locks_lost_total'))).toBe(0)
        expect(e.get(key('mycorrizal_elections_led_total'))).toBe(1)
        expect(e.get(key('mycorrizal_elections_leader', { election: 'nightly' }))).toBe(1)
        yield* lock.release
        const after = samples(yield* Context.get(ctx, Metrics.Metrics).text)
        expect(after.get(key('mycorrizal_locks_held'))).toBe(0)
        expect(after.get(key('mycorrizal_locks_releases_total'))).toBe(1)
      })
    )
  )

  it.live('label values are escaped: quotes, backslashes and newlines in names survive the text format', () =>
    inMemory(
      Effect.gen(function* () {
        const [a] = yield* memoryCluster
        const app = yield* a.streams.registerApplication('we"ird\\app')
        yield* app.createStream('line\nbreak')
        const text = yield* a.metrics.text
        expect(text).toContain('mycorrizal_stream_active{app="we\\"ird\\\\app"} 2')
        expect(text).toContain('stream="line\\nbreak"')
        expect(samples(text).get('mycorrizal_stream_active{app="we\\"ird\\\\app"}')).toBe(2)
      })
    )
  )

  it.live('over real QUIC: per-peer RTT and connection bytes come from the transport', () =>
    Effect.gen(function* () {
      const a = yield* build('a', nodeLayer(Nodosum.layer({ nodeId: 'a', host: '127.0.0.1', port: 0, clusterSecret: secret, seeds: [], heartbeatInterval: 100 })))
      const seed = `127.0.0.1:${a.nodosum.boundAddress.port}`
      const b = yield* build('b', nodeLayer(Nodosum.layer({ nodeId: 'b', host: '127.0.0.1', port: 0, clusterSecret: secret, seeds: [seed], heartbeatInterval: 100 })))
      yield* until(() => a.nodosum.nodes().length === 2 && b.nodosum.nodes().length === 2, 'QUIC mesh')
      yield* until(() => a.nodosum.stats().peers.some((p) => p.heartbeatRttMicros !== undefined), 'a heartbeat RTT')
      yield* traffic(a, b)
      const s = samples(yield* a.metrics.text)
      const rtt = s.get(key('mycorrizal_peer_rtt_seconds', { peer: 'b' }))!
      expect(rtt).toBeGreaterThan(0)
      expect(rtt).toBeLessThan(1)
      expect(s.get(key('mycorrizal_connection_bytes_total', { peer: 'b', direction: 'sent' }))).toBeGreaterThan(1000)
      expect(s.get(key('mycorrizal_connection_bytes_total', { peer: 'b', direction: 'received' }))).toBeGreaterThan(0)
      expect(s.get(key('mycorrizal_stream_bytes_total', { app: 'orders', stream: 'topic:eu', direction: 'sent' }))).toBe(1000)
    }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning))
  , 30_000)

  it('process metrics come on the same injected registry, never the global one', async () => {
    const registry = new Registry()
    const fake = {
      nodosum: {
        stats: () => ({
          peers: [],
          handshakeFailures: { BadProof: 3, UnauthenticatedBytes: 2 },
          handshakesSucceeded: 1,
          handshakesInProgress: 4,
          transport: { handshakesInProgress: 7, retriesSent: 120, refused: { PendingLimit: 0, InvalidToken: 5, SourceRate: 0, SourceTable: 0 } },
          membersByState: { alive: 1, failed: 0, left: 0 }
        })
      },
      streams: { applications: () => [] }
    } as unknown as Metrics.Sources
    Metrics.register(registry, fake)
    const text = await registry.metrics()
    expect(text).toContain('process_cpu_user_seconds_total')
    expect(text).toContain('nodejs_eventloop_lag_seconds')
    expect(text).toContain('nodejs_active_handles{')
    expect(text).not.toContain('nodejs_active_handles_total')
    expect(text).toContain('mycorrizal_handshake_failures_total{reason="BadProof"} 3')
    expect(text).toContain('mycorrizal_handshake_failures_total{reason="UnauthenticatedBytes"} 2')
    expect(text).toContain('mycorrizal_handshakes_in_progress 4')
    expect(text).toContain('mycorrizal_quic_handshakes_in_progress 7')
    expect(text).toContain('mycorrizal_quic_retries_total 120')
    expect(text).toContain('mycorrizal_quic_refused_total{reason="InvalidToken"} 5')
    expect(text).not.toContain('mycorrizal_cache_')
    const { register: global } = await import('prom-client')
    expect(await global.getSingleMetric('mycorrizal_members')).toBeUndefined()
  })

  // promtool comes from Debian's prometheus package, which .ci/run installs; a workstation without it skips this one check
  it.live.skipIf(promtool === undefined && process.env['CI'] === undefined)('the exposition passes promtool check metrics', () =>
    inMemory(
      Effect.gen(function* () {
        expect(promtool, 'promtool is missing: apt-get install prometheus').toBeDefined()
        const [a, b] = yield* memoryCluster
        yield* traffic(a, b)
        const registry = new Registry()
        Metrics.register(registry, { nodosum: a.nodosum, streams: a.streams, mycel: a.mycel })
        const text = yield* Effect.promise(() => registry.metrics())
        const dir = mkdtempSync(join(tmpdir(), 'mycorrizal-metrics-'))
        try {
          const file = join(dir, 'metrics.txt')
          writeFileSync(file, text)
          const result = spawnSync('sh', ['-c', `"$0" check metrics < "$1"`, promtool!, file], { encoding: 'utf8' })
          expect(`${result.stdout}${result.stderr}`).toBe('')
          expect(result.status).toBe(0)
          expect(text).toContain('mycorrizal_cache_remote_op_duration_seconds_bucket{bucket="sessions",op="get",le="+Inf"}')
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      })
    )
  )

  it.skipIf(promtool === undefined && process.env['CI'] === undefined)('promtool itself rejects a broken exposition (the check can fail)', () => {
    expect(promtool, 'promtool is missing: apt-get install prometheus').toBeDefined()
    const bad = '# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n'
    const result = spawnSync(promtool!, ['check', 'metrics'], { input: bad, encoding: 'utf8' })
    expect(result.status).not.toBe(0)
  })
})
