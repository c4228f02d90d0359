/**
 * Attacks on the QUIC port from outside the cluster (issue #16, findings 2 and 3), with real
 * UDP on loopback: a flood of never-answered Initial packets, and connections that finish TLS
 * but never authenticate while parking stream data.
 */
import { describe, expect, it } from '@effect/vitest'
import { native } from '@matrixai/quic'
import { Context, Duration, Effect, Layer, Schedule } from 'effect'
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import * as Certificates from '../src/Certificates.js'
import { Nodosum } from '../src/index.js'
import type { NodosumSettingsInput } from '../src/NodosumConfig.js'
import * as QuicTransport from '../src/QuicTransport.js'
import { eventually } from '../src/testing.js'

const quiche = native.quiche
const secret = 'flood-test-secret-of-at-least-32-characters'
const loopback = { host: '127.0.0.1', port: 0 }

const node = (input: NodosumSettingsInput) =>
  Layer.build(Nodosum.layer({ ...loopback, clusterSecret: secret, ...input })).pipe(Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum)))

const seedOf = (n: Nodosum.Nodosum['Type']) => `${n.address.host}:${n.address.port}`

/**
 * One UDP socket sending `perSecond` real QUIC Initial packets to `target`, each the first
 * packet of a fresh quiche client connection (new connection ids), never answered.
 */
const flood = (target: { host: string; port: number }, perSecond: number) =>
  Effect.gen(function* () {
    const config = new quiche.Config()
    config.verifyPeer(false)
    config.setApplicationProtos(['mycorrizal/1'])
    config.setMaxIdleTimeout(5_000)
    config.setMaxRecvUdpPayloadSize(1350)
    config.setMaxSendUdpPayloadSize(1350)
    config.setInitialMaxData(1_000_000)
    config.setInitialMaxStreamDataBidiLocal(100_000)
    config.setInitialMaxStreamsBidi(10)
    const socket = yield* Effect.acquireRelease(
      Effect.async<dgram.Socket>((resume) => {
        const s = dgram.createSocket('udp4')
        s.bind(0, '127.0.0.1', () => resume(Effect.succeed(s)))
      }),
      (s) =>
        Effect.async<void>((resume) => {
          s.close(() => resume(Effect.void))
        })
    )
    const local = { host: '127.0.0.1', port: socket.address().port }
    const buf = Buffer.alloc(1500)
    let sent = 0
    // 100 batches a second, each Initial from a fresh client connection
    const batch = Math.max(1, Math.round(perSecond / 100))
    const sendBatch = Effect.sync(() => {
      for (let i = 0; i < batch; i++) {
        const qc = quiche.Connection.connect(null, randomBytes(quiche.MAX_CONN_ID_LEN), local, target, config)
        const r = qc.send(buf)
        if (r === null) continue
        socket.send(buf.subarray(0, r[0]), target.port, target.host)
        sent++
      }
    })
    yield* sendBatch.pipe(Effect.repeat(Schedule.spaced(Duration.millis(10))), Effect.forkScoped)
    return { sent: () => sent }
  })

/** Milliseconds until `joiner` and `target` see each other. */
const joinTime = (target: Nodosum.Nodosum['Type'], id: string) =>
  Effect.gen(function* () {
    const started = performance.now()
    const joiner = yield* node({ nodeId: id, seeds: [seedOf(target)] })
    yield* eventually(() => target.nodes().includes(id) && joiner.nodes().includes(target.nodeId), 15_000, `${id} joined`)
    return performance.now() - started
  })

describe('a flood of Initial packets (finding 2)', () => {
  it.live(
    '500 never-answered Initials per second from one socket: new sources must answer a Retry, a legitimate node still joins at once',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a' })
        const baseline = yield* joinTime(a, 'b')
        const attack = yield* flood(a.boundAddress, 500)
        // the flood fills what an unvalidated source may hold, then meets Retry packets (without
        // address validation it would fill all 256 half-open handshakes within these 3 s)
        yield* Effect.sleep(Duration.seconds(3))
        const flooded = yield* joinTime(a, 'c')
        const transport = a.stats().transport!
        yield* Effect.logInfo(`join time: ${baseline.toFixed(0)} ms without flood, ${flooded.toFixed(0)} ms under ${attack.sent()} Initials; ${transport.retriesSent} Retry packets, ${transport.handshakesInProgress} QUIC handshakes in progress`)
        console.log(JSON.stringify({ joinMsNoFlood: Math.round(baseline), joinMsFlood: Math.round(flooded), initialsSent: attack.sent(), retriesSent: transport.retriesSent, handshakesInProgress: transport.handshakesInProgress }))
        expect(flooded).toBeLessThan(Math.max(2_000, 10 * baseline))
        expect(transport.retriesSent).toBeGreaterThan(100)
        // no more half-open handshakes than an unvalidated source may hold
        expect(transport.handshakesInProgress).toBeLessThanOrEqual(16)
        expect(a.nodes()).toEqual(['a', 'b', 'c'])
      }).pipe(Effect.scoped),
    40_000
  )
})

describe('connections that pass TLS and never authenticate (finding 3)', () => {
  it.live(
    'beyond maxUnauthenticatedConnections a connection is closed at once; beyond maxUnauthenticatedBytes too; both counted by reason',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'a', transport: { maxUnauthenticatedConnections: 8, maxUnauthenticatedBytes: 64 * 1024, maxNewConnectionsPerSource: 1_000 } })
        const raw = yield* QuicTransport.make({ host: '127.0.0.1', port: 0, tls: { ...(yield* Certificates.createSelfSigned('raw')), ca: undefined } })
        const connections = yield* Effect.forEach(Array.from({ length: 20 }), () => raw.connect(a.address), { concurrency: 4 })
        for (const c of connections) c.setHandler({ onStream: () => {}, onClose: () => {} })
        yield* eventually(() => (a.stats().handshakesInProgress ?? 0) === 8, 5_000, 'eight connections authenticating')
        yield* eventually(() => a.stats().handshakeFailures['UnauthenticatedLimit'] === 12, 5_000, 'twelve refused over the cap')
        // one of the eight parks stream data: closed once past the byte cap, with that reason
        const parked = connections.find((c) => !c.isClosed())!
        const chunk = new Uint8Array(16 * 1024)
        // the first stream is taken as the control stream: the first byte of a STREAM_INIT, then nothing
        parked.openStream({ onData: () => {} }).write(new Uint8Array([0x01]))
        yield* Effect.sleep(Duration.millis(50))
        for (let i = 0; i < 8; i++) {
          const s = parked.openStream({ onData: () => {} })
          s.write(chunk)
          s.write(chunk)
        }
        yield* eventually(() => a.stats().handshakeFailures['UnauthenticatedBytes'] === 1, 5_000, 'closed past the byte cap')
        yield* eventually(() => parked.isClosed(), 5_000, 'the attacker sees the close')
        expect(a.nodes()).toEqual(['a'])
        // a legitimate node is not held up by them
        const b = yield* node({ nodeId: 'b', seeds: [seedOf(a)] })
        yield* eventually(() => a.nodes().length === 2 && b.nodes().length === 2, 10_000, 'b joined')
      }).pipe(Effect.scoped),
    30_000
  )
})
