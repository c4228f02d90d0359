import { describe, expect, it } from '@effect/vitest'
import { testApi } from '@mycorrizal/testing'
import { ConfigProvider, Deferred, Duration, Effect, Layer } from 'effect'
import * as Certificates from '../src/Certificates.js'
import * as QuicTransport from '../src/QuicTransport.js'
import { Transport, type StreamPriority } from '../src/Transport.js'
import { transportSuite } from '../src/testing.js'

// one throw-away identity shared by every transport of the suite (cluster-secret mode: any certificate is accepted)
const identity = await Effect.runPromise(Certificates.createSelfSigned('suite'))

transportSuite(
  'QuicTransport',
  (options) =>
    QuicTransport.make({
      host: '127.0.0.1',
      port: 0,
      datagramSize: 16_384,
      handshakeTimeout: options.handshakeTimeoutMs,
      idleTimeout: options.idleTimeoutMs,
      maxStreams: options.maxStreams,
      tls: { cert: identity.cert, key: identity.key, ca: undefined }
    }),
  Layer.empty,
  testApi
)

describe('QuicTransport TLS', () => {
  const pki = Effect.gen(function* () {
    const ca = yield* Certificates.createCa({ commonName: 'cluster' })
    const otherCa = yield* Certificates.createCa({ commonName: 'other' })
    const a = yield* Certificates.createNodeCertificate(ca, { nodeId: 'a' })
    const b = yield* Certificates.createNodeCertificate(ca, { nodeId: 'b' })
    const foreign = yield* Certificates.createNodeCertificate(otherCa, { nodeId: 'f' })
    const expired = yield* Certificates.createNodeCertificate(ca, { nodeId: 'old', expired: true })
    const selfSigned = yield* Certificates.createSelfSigned('rogue')
    return { ca, a, b, foreign, expired, selfSigned }
  })

  const node = (tls: { cert: string; key: string; ca: string | undefined }) =>
    QuicTransport.make({ host: '127.0.0.1', port: 0, handshakeTimeout: 2_000, tls })

  it.live('mTLS: nodes with certificates of the cluster CA connect and see each other’s certificate', () =>
    Effect.gen(function* () {
      const p = yield* pki
      const a = yield* node({ ...p.a, ca: p.ca.cert })
      const b = yield* node({ ...p.b, ca: p.ca.cert })
      const connection = yield* a.connect(b.address)
      const accepted = yield* b.accept
      expect(Certificates.commonName(connection.peerCertificates()[0]!)).toBe('b')
      expect(Certificates.commonName(accepted.peerCertificates()[0]!)).toBe('a')
    }).pipe(Effect.scoped)
  )

  it.live.each([
    ['a certificate of another CA', 'foreign'],
    ['an expired certificate', 'expired'],
    ['a self-signed certificate', 'selfSigned']
  ] as const)('mTLS: %s is refused by the server', ([, which]) =>
    Effect.gen(function* () {
      const p = yield* pki
      const server = yield* node({ ...p.b, ca: p.ca.cert })
      const client = yield* node({ ...p[which], ca: p.ca.cert })
      // the client may see "established" before the server refuses: the refusal then closes it
      const outcome = yield* client.connect(server.address).pipe(
        Effect.flatMap((connection) =>
          Effect.async<string>((resume) => {
            connection.setHandler({ onStream: () => {}, onClose: (e) => resume(Effect.succeed(e?.reason ?? 'closed')) })
          })
        ),
        Effect.catchAll((e) => Effect.succeed(e.reason))
      )
      expect(['TlsFailed', 'PeerClosed', 'HandshakeTimeout']).toContain(outcome)
      expect(server.connections()).toHaveLength(0)
    }).pipe(Effect.scoped)
  )

  it.live('mTLS: a client refuses a server whose certificate is not of the cluster CA', () =>
    Effect.gen(function* () {
      const p = yield* pki
      const server = yield* node({ ...p.foreign, ca: p.ca.cert })
      const client = yield* node({ ...p.a, ca: p.ca.cert })
      const error = yield* Effect.flip(client.connect(server.address))
      expect(error.reason).toBe('TlsFailed')
    }).pipe(Effect.scoped)
  )

  it.live('garbage datagrams do not disturb the endpoint', () =>
    Effect.gen(function* () {
      const p = yield* pki
      const a = yield* node({ ...p.a, ca: p.ca.cert })
      const b = yield* node({ ...p.b, ca: p.ca.cert })
      const dgram = yield* Effect.promise(() => import('node:dgram'))
      const socket = dgram.createSocket('udp4')
      yield* Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            let sent = 0
            const junk = [Buffer.alloc(0), Buffer.from([0xff]), Buffer.alloc(1200, 0xc3), Buffer.alloc(40, 0x41), Buffer.alloc(1500, 0x80)]
            for (let i = 0; i < 500; i++) {
              const payload = i % 5 === 4 ? Buffer.from(Array.from({ length: 1300 }, () => Math.floor(Math.random() * 256))) : junk[i % 5]!
              socket.send(payload, b.address.port, '127.0.0.1', () => {
                if (++sent === 500) resolve()
              })
            }
          })
      )
      socket.close()
      const connection = yield* a.connect(b.address)
      yield* b.accept
      expect(connection.isClosed()).toBe(false)
    }).pipe(Effect.scoped)
  )

  it.live('on IPv6 loopback: nodes connect and a stream carries data both ways', () =>
    Effect.gen(function* () {
      const v6 = () => QuicTransport.make({ host: '::1', port: 0, handshakeTimeout: 2_000, tls: { cert: identity.cert, key: identity.key, ca: undefined } })
      const a = yield* v6()
      const b = yield* v6()
      expect(a.address.host).toBe('::1')
      const connection = yield* a.connect(b.address)
      const accepted = yield* b.accept
      const echoed = yield* Deferred.make<number>()
      accepted.setHandler({ onStream: (s) => s.setHandler({ onData: (chunk) => s.write(chunk), onEnd: () => s.end() }) })
      let got = 0
      const stream = connection.openStream({
        onData: (chunk) => {
          got += chunk.byteLength
          if (got === 100_000) Deferred.unsafeDone(echoed, Effect.succeed(got))
        }
      })
      stream.write(new Uint8Array(100_000).fill(7))
      expect(yield* Deferred.await(echoed).pipe(Effect.timeout(Duration.seconds(10)))).toBe(100_000)
    }).pipe(Effect.scoped)
  )
})

describe('QuicTransport.layerConfig', () => {
  it.live('binds where the environment says (MYCORRIZAL_TRANSPORT_*)', () =>
    Effect.gen(function* () {
      const transport = yield* Transport
      expect(transport.address).toEqual({ host: '127.0.0.1', port: transport.address.port })
      expect(transport.address.port).toBeGreaterThan(0)
    }).pipe(
      Effect.provide(QuicTransport.layerConfig({ cert: identity.cert, key: identity.key, ca: undefined })),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([['MYCORRIZAL_TRANSPORT_HOST', '127.0.0.1'], ['MYCORRIZAL_TRANSPORT_PORT', '0']]), { pathDelim: '_' }))
    )
  )

  it.live('a bad value fails with a ConfigError naming the field', () =>
    Effect.gen(function* () {
      const error = yield* Layer.build(QuicTransport.layerConfig({ cert: identity.cert, key: identity.key, ca: undefined })).pipe(
        Effect.scoped,
        Effect.flip,
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([['MYCORRIZAL_TRANSPORT_MAX_STREAMS', '0']]), { pathDelim: '_' }))
      )
      expect(error._tag).toBe('NodosumConfigError')
      expect(error._tag === 'NodosumConfigError' && error.field).toBe('maxStreams')
    })
  )
})

describe('QuicTransport priorities', () => {
  const make = () => QuicTransport.make({ host: '127.0.0.1', port: 0, handshakeTimeout: 2_000, tls: { cert: identity.cert, key: identity.key, ca: undefined } })

  /**
   * Writes 2 MiB on a stream L and then 256 KiB on a stream U in the same turn (the sender
   * holds both), and returns what L had delivered when U's last byte arrived.
   */
  const race = (low: StreamPriority | undefined, urgent: StreamPriority | undefined) =>
    Effect.gen(function* () {
      const a = yield* make()
      const b = yield* make()
      const client = yield* a.connect(b.address)
      const accepted = yield* b.accept
      const bytes = new Map<number, number>()
      const urgentDone = yield* Deferred.make<number>()
      let urgentId = -1
      let lowId = -1
      accepted.setHandler({
        onStream: (s) =>
          s.setHandler({
            onData: (chunk) => bytes.set(s.id, (bytes.get(s.id) ?? 0) + chunk.byteLength),
            onEnd: () => {
              if (s.id === urgentId) Deferred.unsafeDone(urgentDone, Effect.succeed(bytes.get(lowId) ?? 0))
            }
          })
      })
      const l = client.openStream({ onData: () => {} })
      const u = client.openStream({ onData: () => {} })
      lowId = l.id
      urgentId = u.id
      if (low !== undefined) l.setPriority(low)
      if (urgent !== undefined) u.setPriority(urgent)
      // the lower one is written first: only the priority can put the other ahead
      l.write(new Uint8Array(2 * 1024 * 1024))
      u.write(new Uint8Array(256 * 1024))
      u.end()
      return yield* Deferred.await(urgentDone).pipe(Effect.timeout(Duration.seconds(30)))
    }).pipe(Effect.scoped)

  it.live('the sender sends an urgent stream before a less urgent one it holds at the same time; with the same urgency they share', () =>
    Effect.gen(function* () {
      const prioritized = yield* race({ urgency: 7, incremental: true }, { urgency: 0, incremental: true })
      const shared = yield* race(undefined, undefined)
      // urgent first: the lower stream had little when the urgent one ended; at one urgency
      // (round-robin) it had a share of its own meanwhile
      expect(prioritized).toBeLessThan(Math.min(16 * 1024, shared / 2))
    })
  )
})
