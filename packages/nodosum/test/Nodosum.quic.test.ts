import { afterEach, describe, expect, it } from '@effect/vitest'
import { Context, Deferred, Duration, Effect, Layer, Stream } from 'effect'
import { type ChildProcess, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import * as Certificates from '../src/Certificates.js'
import { Nodosum } from '../src/index.js'
import * as QuicTransport from '../src/QuicTransport.js'
import type { NodosumSettingsInput } from '../src/NodosumConfig.js'
import { eventually } from '../src/testing.js'

const secret = 'quic-test-secret-of-at-least-32-characters'
const loopback = { host: '127.0.0.1', port: 0 }

const node = (input: NodosumSettingsInput) =>
  Layer.build(Nodosum.layer({ ...loopback, clusterSecret: secret, ...input })).pipe(Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum)))

const seedOf = (n: Nodosum.Nodosum['Type']) => `${n.address.host}:${n.address.port}`

describe('Nodosum over QUIC on loopback', () => {
  it.live('cluster secret: three nodes join through a seed and exchange application messages', () =>
    Effect.gen(function* () {
      const a = yield* node({ nodeId: 'a' })
      const b = yield* node({ nodeId: 'b', seeds: [seedOf(a)] })
      const c = yield* node({ nodeId: 'c', seeds: [seedOf(a)] })
      yield* eventually(() => [a, b, c].every((n) => n.nodes().length === 3), 10_000, 'mesh of three')
      const got = yield* Deferred.make<string>()
      c.setStreamAcceptor((s) => {
        s.setHandler({ onMessage: (p) => Deferred.unsafeDone(got, Effect.succeed(`${s.peer}/${s.appId}/${s.streamName}:${Buffer.from(p).toString()}`)) })
        return true
      })
      b.openStream('c', 'app', 'topic:x', { onMessage: () => {} }).send(new TextEncoder().encode('over quic'))
      expect(yield* Deferred.await(got)).toBe('b/app/topic:x:over quic')
      // heartbeats measure a round trip on the control stream
      yield* eventually(() => a.stats().peers.every((p) => p.heartbeatRttMicros !== undefined), 5_000, 'heartbeat rtt')
    }).pipe(Effect.scoped)
  )

  it.live('refusals: wrong secret, foreign cluster id — nothing joins, both sides count the reason', () =>
    Effect.gen(function* () {
      const a = yield* node({ nodeId: 'a' })
      const wrong = yield* node({ nodeId: 'w', clusterSecret: 'another-secret-of-at-least-32-characters' })
      const foreign = yield* node({ nodeId: 'f', clusterId: 'elsewhere' })
      expect((yield* Effect.flip(wrong.dial(a.address))).reason).toBe('HandshakeRefused')
      expect((yield* Effect.flip(foreign.dial(a.address))).message).toContain('cluster id')
      yield* Effect.sleep(Duration.millis(300))
      expect(a.nodes()).toEqual(['a'])
      expect(a.stats().handshakeFailures['BadSecret']).toBe(1)
      expect(wrong.stats().handshakeFailures['BadSecret']).toBe(1)
      expect(a.stats().handshakeFailures['ClusterId']).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.live('mTLS: certificates of the cluster CA join; a certificate naming another node is refused', () =>
    Effect.gen(function* () {
      const ca = yield* Certificates.createCa()
      const tls = (certNode: string) =>
        Certificates.createNodeCertificate(ca, { nodeId: certNode }).pipe(Effect.map((c) => ({ ca: ca.cert, cert: c.cert, key: c.key })))
      const a = yield* node({ nodeId: 'a', clusterSecret: undefined, tls: yield* tls('a') })
      const b = yield* node({ nodeId: 'b', clusterSecret: undefined, tls: yield* tls('b'), seeds: [seedOf(a)] })
      yield* eventually(() => a.nodes().length === 2 && b.nodes().length === 2, 10_000, 'mTLS pair')
      // a node holding a valid certificate for 'x' that claims to be 'b'
      const impostor = yield* node({ nodeId: 'b2', clusterSecret: undefined, tls: yield* tls('x') })
      const error = yield* Effect.flip(impostor.dial(a.address))
      expect(error.message).toMatch(/certificate names 'x'/)
      expect(a.stats().handshakeFailures['CertificateMismatch']).toBe(1)
      expect(a.nodes()).toEqual(['a', 'b'])
    }).pipe(Effect.scoped)
  )

  it.live('a QUIC peer that skips the handshake and sends nonsense is cut off; the node keeps serving', () =>
    Effect.gen(function* () {
      const a = yield* node({ nodeId: 'a' })
      const raw = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, tls: { ...(yield* Certificates.createSelfSigned('raw')), ca: undefined } })
      const connection = yield* raw.connect(a.address)
      const closed = yield* Deferred.make<unknown>()
      connection.setHandler({ onStream: () => {}, onClose: (e) => Deferred.unsafeDone(closed, Effect.succeed(e)) })
      const streams = Array.from({ length: 5 }, () => connection.openStream({ onData: () => {} }))
      for (const s of streams) s.write(new Uint8Array(4096).fill(0xff))
      // the first stream is taken as a control stream and fails its STREAM_INIT; the rest are refused;
      // without a handshake the connection is closed after the handshake timeout at the latest
      yield* Deferred.await(closed).pipe(Effect.timeout(Duration.seconds(8)))
      expect(a.nodes()).toEqual(['a'])
      const b = yield* node({ nodeId: 'b', seeds: [seedOf(a)] })
      yield* eventually(() => a.nodes().length === 2 && b.nodes().length === 2, 10_000, 'a legitimate node still joins')
    }).pipe(Effect.scoped)
  )

  it.live('a QUIC peer that opens thousands of streams and never writes is cut off; memory stays bounded and a legitimate node still joins', () =>
    Effect.gen(function* () {
      const a = yield* node({ nodeId: 'a', transport: { handshakeTimeout: '2 seconds' } })
      const raw = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, tls: { ...(yield* Certificates.createSelfSigned('raw')), ca: undefined } })
      const heapBefore = process.memoryUsage().heapUsed
      const connections = yield* Effect.forEach(Array.from({ length: 5 }), () => raw.connect(a.address))
      for (const connection of connections) {
        connection.setHandler({ onStream: () => {}, onClose: () => {} })
        for (let i = 0; i < 1_000; i++) {
          try {
            connection.openStream({ onData: () => {} })
          } catch {
            // QUIC flow control lets a peer open at most maxStreams at once
          }
        }
      }
      // without a handshake every connection is closed by the handshake timeout
      yield* eventually(() => connections.every((c) => c.isClosed()), 10_000, 'silent connections closed')
      expect(a.nodes()).toEqual(['a'])
      expect(a.stats().peers).toEqual([])
      const b = yield* node({ nodeId: 'b', seeds: [seedOf(a)] })
      yield* eventually(() => a.nodes().length === 2 && b.nodes().length === 2, 10_000, 'a legitimate node still joins')
      // nothing of the silent connections is kept (a loose bound: the heap also holds the second node)
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024)
    }).pipe(Effect.scoped)
  , 30_000)

  it.live('simultaneous dials end with one connection; a graceful leave is seen at once', () =>
    Effect.gen(function* () {
      const a = yield* node({ nodeId: 'a' })
      const b = yield* node({ nodeId: 'b' })
      yield* Effect.all([a.dial(b.address), b.dial(a.address)], { concurrency: 'unbounded' })
      yield* eventually(
        () => a.stats().peers.length === 1 && b.stats().peers.length === 1 && a.stats().peers[0]!.dialedByUs && !b.stats().peers[0]!.dialedByUs,
        5_000,
        'one connection, dialed by a'
      )
      const left = yield* Deferred.make<number>()
      yield* Stream.runForEach(a.events, (e) => (e._tag === 'Left' ? Deferred.succeed(left, Date.now()) : Effect.void)).pipe(Effect.forkScoped)
      yield* Effect.yieldNow()
      const started = Date.now()
      yield* b.leave
      const at = yield* Deferred.await(left)
      // well before any failure detector could have fired
      expect(at - started).toBeLessThan(1_000)
      expect(a.nodes()).toEqual(['a'])
    }).pipe(Effect.scoped)
  )
})

describe('Nodosum in single mode', () => {
  it.live('runs without a cluster: no socket, no authentication needed, only itself as member', () =>
    Effect.gen(function* () {
      const ctx = yield* Layer.build(Nodosum.layer({ nodeId: 'solo', single: true }))
      const solo = Context.get(ctx, Nodosum.Nodosum)
      expect(solo.nodes()).toEqual(['solo'])
      expect(solo.boundAddress.host).toBe('single')
      expect(() => solo.openStream('other', 'app', '', { onMessage: () => {} })).toThrow(/not an alive member/)
    }).pipe(Effect.scoped)
  )
})

describe('Nodosum with real processes', () => {
  const children: Array<ChildProcess> = []
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL')
  })

  const tsx = createRequire(import.meta.url).resolve('tsx')
  const spawnNode = (settings: NodosumSettingsInput) =>
    Effect.gen(function* () {
      const child = spawn(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('./fixtures/node.ts', import.meta.url).pathname], {
        env: { ...process.env, MYCORRIZAL_TEST_SETTINGS: JSON.stringify({ ...loopback, clusterSecret: secret, ...settings }) },
        stdio: ['pipe', 'pipe', 'inherit']
      })
      children.push(child)
      const events: Array<Record<string, unknown>> = []
      const ready = yield* Deferred.make<Record<string, unknown>>()
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const event = JSON.parse(line) as Record<string, unknown>
        events.push(event)
        if (event['event'] === 'ready') Deferred.unsafeDone(ready, Effect.succeed(event))
      })
      const info = yield* Deferred.await(ready).pipe(Effect.timeout(Duration.seconds(20)))
      return { child, events, address: info['address'] as { host: string; port: number } }
    })

  it.live(
    'a SIGKILLed node is dropped by every survivor within 3 s; restarted with the same id it rejoins',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a' })
        const b = yield* spawnNode({ nodeId: 'b', seeds: [seedOf(a)] })
        const c = yield* spawnNode({ nodeId: 'c', seeds: [seedOf(a)] })
        yield* eventually(() => a.nodes().length === 3, 15_000, 'three members')
        yield* eventually(() => b.events.some((e) => e['event'] === 'Joined' && e['member'] === 'c'), 10_000, 'b knows c')
        const failedAt = yield* Deferred.make<number>()
        yield* Stream.runForEach(a.events, (e) => (e._tag === 'Failed' && e.member.id === 'c' ? Deferred.succeed(failedAt, Date.now()) : Effect.void)).pipe(
          Effect.forkScoped
        )
        yield* Effect.yieldNow()
        const killedAt = Date.now()
        c.child.kill('SIGKILL')
        const detected = (yield* Deferred.await(failedAt)) - killedAt
        yield* eventually(() => b.events.some((e) => e['event'] === 'Failed' && e['member'] === 'c'), 5_000, 'b dropped c')
        const bDetected = (b.events.find((e) => e['event'] === 'Failed' && e['member'] === 'c')!['at'] as number) - killedAt
        yield* Effect.logInfo(`detection after SIGKILL: a ${detected} ms, b ${bDetected} ms`)
        expect(detected).toBeLessThan(3_000)
        expect(bDetected).toBeLessThan(3_000)
        expect(a.nodes()).toEqual(['a', 'b'])
        // the same id again, on the same port
        const before = a.members().find((m) => m.id === 'c')!.instanceId
        yield* spawnNode({ nodeId: 'c', port: c.address.port, seeds: [seedOf(a)] })
        yield* eventually(() => a.nodes().length === 3 && a.members().find((m) => m.id === 'c')!.instanceId !== before, 15_000, 'c rejoined')
        yield* eventually(() => b.events.filter((e) => e['event'] === 'Joined' && e['member'] === 'c').length === 2, 10_000, 'b saw c rejoin')
        // a graceful stop is a leave, not a failure
        b.child.kill('SIGTERM')
        const left = yield* Deferred.make<void>()
        yield* Stream.runForEach(a.events, (e) => (e._tag === 'Left' && e.member.id === 'b' ? Deferred.succeed(left, undefined) : Effect.void)).pipe(
          Effect.forkScoped
        )
        yield* Deferred.await(left).pipe(Effect.timeout(Duration.seconds(5)))
      }).pipe(Effect.scoped),
    60_000
  )
})
