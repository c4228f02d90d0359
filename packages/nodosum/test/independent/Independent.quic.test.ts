/**
 * `docs/protocol.md` is enough to join a cluster: a peer written from the document alone
 * (`peer.ts`, `wire.ts`: no project module) dials a real node over QUIC on loopback, passes
 * the v2 handshake, stays a member through many heartbeat intervals, exchanges one
 * application message each way on a named stream, and leaves. With a wrong secret (or
 * another cluster id) it is refused and learns nothing the document says it must not.
 */
import { describe, expect, it } from '@effect/vitest'
import { Context, Deferred, Duration, Effect, Layer, Stream } from 'effect'
import { createHash } from 'node:crypto'
import { Certificates, Nodosum } from '../../src/index.js'
import type { NodosumSettingsInput } from '../../src/NodosumConfig.js'
import { eventually } from '../../src/testing.js'
import { CloseCode, clusterKey, IndependentPeer, type PeerOptions, proof } from './peer.js'

const secret = 'independent-peer-secret-of-at-least-32-characters'
const clusterId = 'outsider-test-cluster'
const heartbeatInterval = 100

const node = (input: NodosumSettingsInput) =>
  Layer.build(Nodosum.layer({ host: '127.0.0.1', port: 0, clusterId, clusterSecret: secret, heartbeatInterval, failureTimeout: 4 * heartbeatInterval, ...input })).pipe(
    Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum))
  )

const dial = (target: Nodosum.Nodosum['Type'], options: { readonly nodeId: string; readonly secret?: string; readonly clusterId?: string }) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      IndependentPeer.dial(target.boundAddress, { nodeId: options.nodeId, clusterId: options.clusterId ?? clusterId, secret: options.secret ?? secret, heartbeatIntervalMs: heartbeatInterval })
    ),
    ({ peer }) => Effect.promise(() => peer.stop())
  )

const hasBytes = (haystack: Buffer, needle: Buffer) => needle.length > 0 && haystack.indexOf(needle) !== -1

describe('an independent implementation of docs/protocol.md', () => {
  it.live(
    'joins a node, stays alive over many heartbeat intervals, exchanges a message each way on a named stream, and leaves',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const events: Array<string> = []
        yield* Stream.runForEach(a.events, (e) => Effect.sync(() => events.push(`${e._tag} ${e.member.id}`))).pipe(Effect.forkScoped)
        const { peer, outcome } = yield* dial(a, { nodeId: 'outsider' })
        expect(outcome).toEqual({ ok: true, acceptor: 'node-a' })
        yield* eventually(() => a.nodes().includes('outsider'), 5_000, 'the node lists the outsider')
        const member = a.members().find((m) => m.id === 'outsider')!
        expect(member).toMatchObject({ state: 'alive', instanceId: peer.instanceId, address: { host: peer.self().host, port: peer.self().port } })
        // the node's Members right after the handshake lists itself (§7)
        yield* eventually(() => peer.members.length > 0, 5_000, 'Members from the node')
        expect(peer.members[0]!.map((m) => m.nodeId)).toContain('node-a')

        // ten heartbeat intervals, 2.5 failure timeouts: still a member, heartbeats both ways
        yield* Effect.sleep(Duration.millis(10 * heartbeatInterval))
        expect(a.nodes()).toEqual(['node-a', 'outsider'])
        expect(peer.pongs.length).toBeGreaterThanOrEqual(5)
        expect(peer.pingsReceived).toBeGreaterThanOrEqual(5)
        expect(a.stats().peers.find((p) => p.id === 'outsider')?.heartbeatRttMicros).toBeGreaterThan(0)

        // peer -> node on a named stream the peer opened
        const got = yield* Deferred.make<string>()
        a.setStreamAcceptor((s) => {
          if (s.appId !== 'greetings' || s.streamName !== 'room:1' || s.peer !== 'outsider') return false
          s.setHandler({ onMessage: (p) => Deferred.unsafeDone(got, Effect.succeed(Buffer.from(p).toString('utf8'))) })
          return true
        })
        peer.openStream('greetings', 'room:1').send(Buffer.from('hello from outside'))
        expect(yield* Deferred.await(got).pipe(Effect.timeout(Duration.seconds(5)))).toBe('hello from outside')
        // node -> peer: on the node's own stream, with its STREAM_INIT
        a.openStream('outsider', 'greetings', 'room:1', { onMessage: () => {} }).send(Buffer.from('hello from inside'))
        yield* eventually(() => (peer.received.get('greetings/room:1')?.length ?? 0) > 0, 5_000, 'the peer got the message')
        expect(peer.received.get('greetings/room:1')!.map((b) => b.toString('utf8'))).toEqual(['hello from inside'])

        // §7 Leave: dropped at once as left
        yield* Effect.promise(() => peer.leave())
        yield* eventually(() => !a.nodes().includes('outsider'), 5_000, 'the node dropped the outsider')
        expect(events).toEqual(['Joined outsider', 'Left outsider'])
        expect(a.stats().handshakesSucceeded).toBe(1)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'a member that claims 16 MiB messages on eight streams and sends 64 KiB of each makes the node hold about what arrived (§3: memory follows bytes, not length headers)',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const { peer, outcome } = yield* dial(a, { nodeId: 'outsider' })
        expect(outcome.ok).toBe(true)
        yield* eventually(() => a.nodes().includes('outsider'), 5_000, 'joined')
        let accepted = 0
        a.setStreamAcceptor((s) => {
          if (s.appId !== 'claims') return false
          s.setHandler({ onMessage: () => {} })
          accepted++
          return true
        })
        const received = () => a.stats().peers.find((p) => p.id === 'outsider')?.bytesReceived ?? 0
        const start = received()
        const before = process.memoryUsage().arrayBuffers
        const header = Buffer.from([0x01, 0x00, 0x00, 0x00]) // 16 MiB, the largest message allowed
        for (let i = 0; i < 8; i++) {
          const stream = peer.openStream('claims', `s${i}`)
          stream.sendRaw(header)
          stream.sendRaw(Buffer.alloc(64 * 1024, i))
        }
        yield* eventually(() => accepted === 8 && received() - start >= 8 * 64 * 1024, 10_000, 'the node took every stream and its bytes')
        yield* Effect.sleep(Duration.millis(200))
        const grown = process.memoryUsage().arrayBuffers - before
        // 512 KiB arrived; the headers claim 128 MiB. Allocated (garbage included, nothing collected
        // in between) stays far below a single claimed message.
        expect(grown).toBeLessThan(8 * 1024 * 1024)
        expect(a.nodes()).toContain('outsider')
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'a peer that only answers Pings stays alive; one that sends no control message is failed and closed with 0x113',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const events: Array<string> = []
        yield* Stream.runForEach(a.events, (e) => Effect.sync(() => events.push(`${e._tag} ${e.member.id}`))).pipe(Effect.forkScoped)
        const { peer, outcome } = yield* dial(a, { nodeId: 'outsider' })
        expect(outcome.ok).toBe(true)
        yield* eventually(() => a.nodes().includes('outsider'), 5_000, 'joined')
        // §7: any control message is a sign of life, Pongs included
        peer.silence()
        yield* Effect.sleep(Duration.millis(8 * heartbeatInterval))
        expect(a.nodes()).toContain('outsider')
        expect(events).toEqual(['Joined outsider'])
        // nothing at all for failureTimeout (QUIC itself stays up): failed, closed with PeerFailed
        peer.mute()
        yield* eventually(() => events.includes('Failed outsider'), 5_000, 'failed')
        expect(a.nodes()).toEqual(['node-a'])
        yield* eventually(() => peer.isClosed(), 5_000, 'closed by the node')
        expect(peer.log.closed).toMatchObject({ by: 'peer', app: true, code: CloseCode.PeerFailed })
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'another instance claiming the id of a live member completes the handshake and is closed with 0x110; once the holder is gone it is taken',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const first = yield* dial(a, { nodeId: 'outsider' })
        expect(first.outcome.ok).toBe(true)
        yield* eventually(() => a.nodes().includes('outsider'), 5_000, 'joined')
        const second = yield* dial(a, { nodeId: 'outsider' })
        // §7: no Refuse: both sides finished the handshake, then the node closes the newcomer
        expect(second.outcome).toEqual({ ok: true, acceptor: 'node-a' })
        yield* eventually(() => second.peer.isClosed(), 5_000, 'the newcomer is closed')
        expect(second.peer.log.closed).toMatchObject({ by: 'peer', app: true, code: CloseCode.HandshakeRefused })
        expect(second.peer.log.control.filter((m) => m.type === 'Refuse')).toEqual([])
        expect(a.members().find((m) => m.id === 'outsider')?.instanceId).toBe(first.peer.instanceId)
        expect(first.peer.isClosed()).toBe(false)
        // the holder goes silent past failureTimeout: a new instance replaces it
        first.peer.mute()
        yield* eventually(() => !a.nodes().includes('outsider'), 5_000, 'the silent holder failed')
        const third = yield* dial(a, { nodeId: 'outsider' })
        expect(third.outcome.ok).toBe(true)
        yield* eventually(() => a.members().find((m) => m.id === 'outsider')?.instanceId === third.peer.instanceId && a.nodes().includes('outsider'), 5_000, 'replaced')
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'with a wrong secret the node refuses it: a Challenge, then BadSecret; nothing keyed, no cluster id, no node id',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const { peer, outcome } = yield* dial(a, { nodeId: 'outsider', secret: 'a-wrong-secret-that-is-also-32-characters-long' })
        expect(outcome).toMatchObject({ ok: false, reason: 'BadSecret' })
        yield* eventually(() => peer.isClosed(), 5_000, 'the node closed the connection')
        expect(peer.log.control.map((m) => m.type)).toEqual(['Challenge', 'Refuse'])
        expect(peer.log.closed).toMatchObject({ by: 'peer', app: true, code: CloseCode.HandshakeRefused })
        expect(a.nodes()).toEqual(['node-a'])
        expect(a.stats().handshakeFailures['BadSecret']).toBe(1)

        // what it received: the Challenge's 32 bytes and a Refuse naming nothing of the cluster
        const received = Buffer.concat([...peer.log.controlBytes, Buffer.from(peer.log.closed!.reason, 'utf8')])
        const challenge = peer.log.control[0] as { nonce: Buffer }
        expect(received.subarray(0, 4 + 2 + 4).toString('hex')).toBe('00000026' + '0401' + '00000020')
        expect(challenge.nonce.length).toBe(32)
        const key = clusterKey(secret, clusterId)
        const text = received.toString('latin1')
        for (const leak of [clusterId, 'node-a', 'outsider']) expect(text).not.toContain(leak)
        expect(hasBytes(received, key)).toBe(false)
        // not even the acceptor proof it would have sent to a dialer that proved
        const fingerprint = createHash('sha256').update(peer.peerCertificate()!).digest()
        expect(hasBytes(received, proof(key, { role: 'acceptor', clusterId, dialerId: 'outsider', acceptorId: 'node-a', nd: peer.nd, na: challenge.nonce, fingerprint }))).toBe(false)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a stranger claiming the node's own id learns nothing of it: BadSecret, not DuplicateNodeId, until it proved the secret",
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        // a guess of the node's id with the right cluster id and a wrong secret
        const { peer, outcome } = yield* dial(a, { nodeId: 'node-a', secret: 'a-wrong-secret-that-is-also-32-characters-long' })
        expect(outcome).toMatchObject({ ok: false, reason: 'BadSecret' })
        expect(peer.log.control.map((m) => m.type)).toEqual(['Challenge', 'Refuse'])
        // a wrong guess gets the same answer
        const other = yield* dial(a, { nodeId: 'node-b', secret: 'a-wrong-secret-that-is-also-32-characters-long' })
        expect(other.outcome).toMatchObject({ ok: false, reason: 'BadSecret' })
        // with the secret, the duplicate id is refused (after the proof verified)
        const holder = yield* dial(a, { nodeId: 'node-a' })
        expect(holder.outcome).toMatchObject({ ok: false, reason: 'DuplicateNodeId' })
        expect(holder.peer.log.control.map((m) => m.type)).toEqual(['Challenge', 'Refuse'])
        expect(a.nodes()).toEqual(['node-a'])
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'with another cluster id it is refused before any proof, and the refusal does not name the node cluster id',
    () =>
      Effect.gen(function* () {
        const a = yield* node({ nodeId: 'node-a' })
        const { peer, outcome } = yield* dial(a, { nodeId: 'outsider', clusterId: 'guessed-cluster' })
        expect(outcome).toMatchObject({ ok: false, reason: 'ClusterId' })
        yield* eventually(() => peer.isClosed(), 5_000, 'closed')
        expect(peer.log.control.map((m) => m.type)).toEqual(['Refuse'])
        const text = Buffer.concat([...peer.log.controlBytes, Buffer.from(peer.log.closed?.reason ?? '', 'utf8')]).toString('latin1')
        expect(text).not.toContain(clusterId)
        expect(text).not.toContain('node-a')
        expect(a.nodes()).toEqual(['node-a'])
      }).pipe(Effect.scoped),
    30_000
  )
})

describe('an independent implementation of docs/protocol.md, auth mode tls (mTLS)', () => {
  // the CA and certificates are inputs the peer gets as PEM; how they are made is not the protocol
  const pki = Effect.gen(function* () {
    const ca = yield* Certificates.createCa({ commonName: 'outsider test CA' })
    const leaf = (nodeId: string, by = ca) =>
      Certificates.createNodeCertificate(by, { nodeId }).pipe(Effect.map((c) => ({ cert: c.cert, key: c.key, der: Buffer.from(Certificates.toDer(c.cert)) })))
    return { ca, nodeA: yield* leaf('node-a'), outsider: yield* leaf('outsider'), impostor: yield* leaf('someone-else'), stranger: yield* leaf('outsider', yield* Certificates.createCa()) }
  })

  const tlsNode = (ca: string, own: { cert: string; key: string }) =>
    Layer.build(Nodosum.layer({ host: '127.0.0.1', port: 0, clusterId, nodeId: 'node-a', tls: { ca, cert: own.cert, key: own.key }, heartbeatInterval, failureTimeout: 4 * heartbeatInterval })).pipe(
      Effect.map((ctx) => Context.get(ctx, Nodosum.Nodosum))
    )

  const dialTls = (target: Nodosum.Nodosum['Type'], ca: string, tls: { cert: string; key: string; der: Buffer }, faults: Pick<PeerOptions, 'dropIncoming' | 'handshakeTimeoutMs'> = {}) =>
    Effect.acquireRelease(
      Effect.promise(() => IndependentPeer.dial(target.boundAddress, { nodeId: 'outsider', clusterId, ca, tls, heartbeatIntervalMs: heartbeatInterval, ...faults })),
      ({ peer }) => Effect.promise(() => peer.stop())
    )

  it.live(
    'joins a node with a certificate of the cluster CA and empty proofs, stays alive, exchanges a message each way, and leaves',
    () =>
      Effect.gen(function* () {
        const { ca, nodeA, outsider } = yield* pki
        const a = yield* tlsNode(ca.cert, nodeA)
        const { peer, outcome } = yield* dialTls(a, ca.cert, outsider)
        expect(outcome).toEqual({ ok: true, acceptor: 'node-a' })
        // §5 in tls mode: the node's Auth carried an empty proof, its Hello auth mode 1
        const hello = peer.log.control.find((m) => m.type === 'Hello') as { authMode: number }
        expect(hello.authMode).toBe(1)
        expect(peer.log.control.filter((m) => m.type === 'Auth').map((m) => (m as { proof: Buffer }).proof.length)).toEqual([0])
        yield* eventually(() => a.nodes().includes('outsider'), 5_000, 'the node lists the outsider')
        yield* Effect.sleep(Duration.millis(10 * heartbeatInterval))
        expect(a.nodes()).toEqual(['node-a', 'outsider'])
        expect(peer.pongs.length).toBeGreaterThanOrEqual(5)

        const got = yield* Deferred.make<string>()
        a.setStreamAcceptor((s) => {
          if (s.appId !== 'greetings' || s.peer !== 'outsider') return false
          s.setHandler({ onMessage: (p) => Deferred.unsafeDone(got, Effect.succeed(Buffer.from(p).toString('utf8'))) })
          return true
        })
        peer.openStream('greetings', 'room:1').send(Buffer.from('hello over mTLS'))
        expect(yield* Deferred.await(got).pipe(Effect.timeout(Duration.seconds(5)))).toBe('hello over mTLS')
        a.openStream('outsider', 'greetings', 'room:1', { onMessage: () => {} }).send(Buffer.from('hello back'))
        yield* eventually(() => (peer.received.get('greetings/room:1')?.length ?? 0) > 0, 5_000, 'the peer got the message')

        yield* Effect.promise(() => peer.leave())
        yield* eventually(() => !a.nodes().includes('outsider'), 5_000, 'the node dropped the outsider')
        expect(a.stats().handshakesSucceeded).toBe(1)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'a certificate of the cluster CA naming another node is refused with CertificateMismatch; one of another CA fails TLS',
    () =>
      Effect.gen(function* () {
        const { ca, nodeA, impostor, stranger } = yield* pki
        const a = yield* tlsNode(ca.cert, nodeA)
        // claims "outsider" with a valid certificate for "someone-else"
        const wrongName = yield* dialTls(a, ca.cert, impostor)
        expect(wrongName.outcome).toMatchObject({ ok: false, reason: 'CertificateMismatch' })
        expect(wrongName.peer.log.control.map((m) => m.type)).toEqual(['Refuse'])
        // a chain the node does not trust: the TLS handshake fails, no control message at all
        const foreign = yield* dialTls(a, ca.cert, stranger)
        expect(foreign.outcome.ok).toBe(false)
        expect(foreign.peer.log.control).toEqual([])
        expect(a.nodes()).toEqual(['node-a'])
        expect(a.stats().handshakeFailures['CertificateMismatch']).toBe(1)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    'a refusal of another CA whose datagram is lost settles the dial at the dialer\'s handshake deadline, not its 60 s idle timeout',
    () =>
      Effect.gen(function* () {
        // the node's TLS alert travels in one CONNECTION_CLOSE; the node forgets the connection
        // after closing it, so a lost alert is never sent again (under load, loopback UDP drops)
        const { ca, nodeA, stranger } = yield* pki
        const a = yield* tlsNode(ca.cert, nodeA)
        const foreign = yield* dialTls(a, ca.cert, stranger, { dropIncoming: (peer) => peer.isEstablished(), handshakeTimeoutMs: 1_000 })
        expect(foreign.outcome).toMatchObject({ ok: false, reason: 'HandshakeTimeout' })
        expect(foreign.peer.log.control).toEqual([])
        expect(a.nodes()).toEqual(['node-a'])
      }).pipe(Effect.scoped),
    30_000
  )
})
