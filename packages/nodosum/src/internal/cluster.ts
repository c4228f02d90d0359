import { ControlMessage, type WireError } from '@mycorrizal/wire'
import {
  Clock,
  Deferred,
  Duration,
  Effect,
  Fiber,
  FiberSet,
  LogLevel,
  PubSub,
  Queue,
  Redacted,
  Runtime,
  Schedule,
  type Scope,
  Stream
} from 'effect'
import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import * as Certificates from '../Certificates.js'
import type { Discovery } from '../Discovery.js'
import type { Nodosum} from '../Nodosum.js';
import { CONTROL_APP_ID, type Member, type MembershipEvent, type NodosumStats, PROTOCOL_VERSION, type StreamAcceptor } from '../Nodosum.js'
import type { NodosumSettings } from '../NodosumConfig.js'
import { ClusterError, type TransportError } from '../NodosumError.js'
import { ErrorCode, type PeerStream, type PeerStreamHandler } from '../PeerStream.js'
import { type Address, formatAddress, type Transport, type TransportConnection, type TransportStream } from '../Transport.js'
import * as Auth from './auth.js'
import { FramedStream } from './framed.js'

type Control = ControlMessage.ControlMessage

/** Credentials the handshake needs besides the settings. */
export interface Identity {
  /** DER of this node's own TLS certificate (leaf). */
  readonly certificate: Uint8Array
}

interface Peer {
  readonly id: string
  readonly instanceId: string
  readonly address: Address
  readonly connection: TransportConnection
  readonly control: FramedStream
  readonly dialedByUs: boolean
  lastSeen: number
  rttMicros: number | undefined
  pingSeq: number
}

interface MemberRecord {
  id: string
  instanceId: string
  address: Address
  state: Member['state']
  since: number
}

class HandshakeFailure {
  constructor(
    readonly reason: string,
    readonly message: string,
    /** The peer told us (we did not decide it ourselves). */
    readonly byPeer: boolean
  ) {}
}

const wildcard = (host: string) => host === '0.0.0.0' || host === '::' || host === ''

const firstExternalAddress = (): string | undefined => {
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) if (info.family === 'IPv4' && !info.internal) return info.address
  }
  return undefined
}

/** Builds the cluster service over a transport. */
export const makeCluster = (
  settings: NodosumSettings,
  transport: Transport['Type'],
  discovery: Discovery['Type'],
  identity: Identity
): Effect.Effect<Nodosum['Type'], never, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const runFork = Runtime.runFork(runtime)
    const runSync = Runtime.runSync(runtime)
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const events = yield* PubSub.unbounded<MembershipEvent>()
    const log = (level: 'Debug' | 'Info' | 'Warning' | 'Error', message: string, annotations: Record<string, unknown> = {}): void => {
      runSync(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs({ node: settings.nodeId, ...annotations })))
    }

    const instanceId = randomBytes(8).toString('hex')
    const maxMessageSize = settings.maxMessageSize
    const controlMaxMessageSize = 1024 * 1024
    const advertised: Address = {
      host: settings.advertise.host ?? (wildcard(transport.address.host) ? (firstExternalAddress() ?? '127.0.0.1') : transport.address.host),
      port: settings.advertise.port ?? transport.address.port
    }
    const selfKey = formatAddress(advertised)
    const selfAddresses = new Set([selfKey, formatAddress(transport.address)])
    const secret = settings.auth?._tag === 'Secret' ? new Uint8Array(Buffer.from(Redacted.value(settings.auth.secret), 'utf8')) : undefined
    const ownFingerprint = Certificates.fingerprint(identity.certificate)

    const peers = new Map<string, Peer>()
    const records = new Map<string, MemberRecord>()
    const dialing = new Set<string>()
    const reconnecting = new Map<string, Fiber.RuntimeFiber<void, never>>()
    const handshakeFailures: Record<string, number> = {}
    let handshakesSucceeded = 0
    let acceptor: StreamAcceptor | undefined
    let leaving = false

    records.set(settings.nodeId, { id: settings.nodeId, instanceId, address: advertised, state: 'alive', since: now() })

    const toMember = (r: MemberRecord): Member => ({ id: r.id, address: r.address, state: r.state, instanceId: r.instanceId, since: r.since })
    const publish = (event: MembershipEvent) => {
      runSync(PubSub.publish(events, event))
    }

    const memberInfos = (): Array<ControlMessage.MemberInfo> =>
      [...records.values()]
        .filter((r) => r.state === 'alive')
        .map((r) => ({ nodeId: r.id, instanceId: r.instanceId, host: r.address.host, port: r.address.port }))

    const sendControl = (peer: Peer, message: Control) => {
      if (!peer.control.isClosed()) peer.control.send(ControlMessage.encode(message))
    }

    const countFailure = (reason: string) => {
      handshakeFailures[reason] = (handshakeFailures[reason] ?? 0) + 1
    }

    // ---- membership -------------------------------------------------------------------

    const markGone = (peer: Peer, state: 'failed' | 'left', reason: string) => {
      if (peers.get(peer.id) !== peer) return
      // while leaving, peers closing their side is the expected end, not a failure
      if (leaving && state === 'failed') {
        peers.delete(peer.id)
        return
      }
      peers.delete(peer.id)
      const record = records.get(peer.id)
      if (record !== undefined && record.instanceId === peer.instanceId) {
        record.state = state
        record.since = now()
        publish(state === 'left' ? { _tag: 'Left', member: toMember(record) } : { _tag: 'Failed', member: toMember(record), reason })
      }
      if (!peer.connection.isClosed()) peer.connection.close(state === 'left' ? ErrorCode.Leaving : ErrorCode.PeerFailed, reason)
      log(state === 'left' ? 'Info' : 'Warning', state === 'left' ? 'member left' : 'member failed', { peer: peer.id, reason })
      if (state === 'failed' && !leaving) scheduleReconnect(peer.id, peer.address)
    }

    const scheduleReconnect = (id: string, address: Address) => {
      if (reconnecting.has(id) || settings.single) return
      const policy = Schedule.exponential(settings.reconnectInitial, 2).pipe(
        Schedule.either(Schedule.spaced(settings.reconnectMax)),
        Schedule.upTo(settings.reconnectGiveUp)
      )
      const attempt = Effect.suspend(() => {
        const record = records.get(id)
        if (peers.has(id) || leaving || record?.state === 'left') return Effect.void
        return dialAddress(record?.address ?? address).pipe(Effect.asVoid)
      })
      const fiber = runFork(
        Effect.sleep(settings.reconnectInitial).pipe(
          Effect.andThen(attempt.pipe(Effect.retry(policy))),
          Effect.catchAll(() => Effect.sync(() => log('Info', 'gave up reconnecting', { peer: id }))),
          Effect.ensuring(Effect.sync(() => reconnecting.delete(id)))
        )
      )
      reconnecting.set(id, fiber)
      runFork(FiberSet.add(fibers, fiber))
    }

    /** A handshake finished: the connection becomes this peer's, or loses a tie-break. */
    const register = (peer: Peer, helloFrom: ControlMessage.MemberInfo): boolean => {
      handshakesSucceeded++
      const existing = peers.get(peer.id)
      if (existing !== undefined) {
        if (existing.instanceId === peer.instanceId) {
          // both dialed at once: keep the connection the smaller node id dialed
          const dialerOf = (p: Peer) => (p.dialedByUs ? settings.nodeId : p.id)
          const keepNew = dialerOf(peer) < dialerOf(existing) || (dialerOf(peer) === dialerOf(existing) && peer.connection.id < existing.connection.id)
          const loser = keepNew ? existing : peer
          peers.set(peer.id, keepNew ? peer : existing)
          loser.connection.close(ErrorCode.DuplicateConnection, 'duplicate connection')
          return keepNew
        }
        // a new instance of the same id: the old one is gone
        markGone(existing, 'failed', 'replaced by a restarted instance')
      }
      peers.set(peer.id, peer)
      const fiber = reconnecting.get(peer.id)
      if (fiber !== undefined) runFork(Fiber.interrupt(fiber))
      const record = records.get(peer.id)
      const wasAlive = record?.state === 'alive' && record.instanceId === peer.instanceId
      records.set(peer.id, { id: peer.id, instanceId: peer.instanceId, address: peer.address, state: 'alive', since: now() })
      if (!wasAlive) {
        publish({ _tag: 'Joined', member: toMember(records.get(peer.id)!) })
        log('Info', 'member joined', { peer: peer.id, address: formatAddress(peer.address) })
        // tell the others, so the mesh closes without waiting for discovery
        const announcement = ControlMessage.encode({ _tag: 'Members', members: [helloFrom] })
        for (const other of peers.values()) if (other !== peer && !other.control.isClosed()) other.control.send(announcement)
      }
      return true
    }

    const connectedOrDialing = (info: ControlMessage.MemberInfo) => {
      const peer = peers.get(info.nodeId)
      return (peer !== undefined && peer.instanceId === info.instanceId) || dialing.has(formatAddress({ host: info.host, port: info.port }))
    }

    /**
     * Members heard of through gossip. Of two nodes that learn of each other, the one with the
     * smaller id dials; the other dials only if no connection came within a heartbeat or two.
     * This halves the handshakes while a cluster forms.
     */
    const learn = (members: ReadonlyArray<ControlMessage.MemberInfo>) => {
      for (const info of members) {
        if (info.nodeId === settings.nodeId || connectedOrDialing(info)) continue
        const address = { host: info.host, port: info.port }
        const dial = dialAddress(address).pipe(Effect.ignore)
        const wait = Duration.times(settings.heartbeatInterval, 2)
        runFork(
          FiberSet.run(
            fibers,
            settings.nodeId < info.nodeId ? dial : Effect.sleep(wait).pipe(Effect.andThen(Effect.suspend(() => (connectedOrDialing(info) ? Effect.void : dial))))
          )
        )
      }
    }

    const onControl = (peer: Peer, message: Control) => {
      peer.lastSeen = now()
      switch (message._tag) {
        case 'Ping':
          sendControl(peer, { _tag: 'Pong', seq: message.seq, sentAt: message.sentAt })
          break
        case 'Pong':
          peer.rttMicros = Math.max(0, Math.round((now() - message.sentAt) * 1000))
          break
        case 'Members':
          learn(message.members)
          break
        case 'Leave':
          markGone(peer, 'left', 'announced leave')
          break
        default:
          log('Warning', 'unexpected control message after the handshake', { peer: peer.id, type: message._tag })
      }
    }

    // ---- streams after the handshake --------------------------------------------------

    const attachConnection = (peer: Peer) => {
      peer.connection.setHandler({
        onStream: (stream) => acceptAppStream(peer, stream),
        onClose: (error) => {
          if (peers.get(peer.id) !== peer) return
          if (error?.code === ErrorCode.DuplicateConnection) {
            // the peer kept the other connection of a simultaneous dial: it is finishing here too
            peers.delete(peer.id)
            runFork(
              Effect.sleep(settings.transport.handshakeTimeout).pipe(
                Effect.andThen(
                  Effect.sync(() => {
                    const record = records.get(peer.id)
                    if (!peers.has(peer.id) && record?.state === 'alive' && record.instanceId === peer.instanceId) {
                      record.state = 'failed'
                      record.since = now()
                      publish({ _tag: 'Failed', member: toMember(record), reason: 'duplicate connection closed and no other came' })
                      scheduleReconnect(peer.id, peer.address)
                    }
                  })
                )
              )
            )
            return
          }
          markGone(peer, 'failed', error?.message ?? 'connection closed')
        }
      })
      peer.control.setHandler({
        onMessage: (bytes) => {
          let message: Control
          try {
            message = ControlMessage.decode(bytes)
          } catch (e) {
            log('Warning', 'malformed control message', { peer: peer.id, error: (e as WireError).message })
            peer.connection.close(ErrorCode.ProtocolError, 'malformed control message')
            return
          }
          onControl(peer, message)
        },
        onClose: () => {
          if (peers.get(peer.id) === peer) markGone(peer, 'failed', 'control stream closed')
        }
      })
    }

    const acceptAppStream = (peer: Peer, stream: TransportStream) => {
      new FramedStream(stream, peer.id, true, maxMessageSize, undefined, (init, framed) => {
        if (init.appId === CONTROL_APP_ID || acceptor === undefined || !acceptor(framed)) {
          framed.reset(ErrorCode.UnknownStream)
        }
      })
    }

    // ---- handshake --------------------------------------------------------------------

    const authMode = settings.auth?._tag === 'Tls' ? 'tls' : 'secret'

    const hello = (nonce: Uint8Array): ControlMessage.Hello => ({
      _tag: 'Hello',
      protocolVersion: PROTOCOL_VERSION,
      clusterId: settings.clusterId,
      nodeId: settings.nodeId,
      instanceId,
      host: advertised.host,
      port: advertised.port,
      authMode,
      nonce
    })

    /** Checks the peer's Hello against ours; returns why it is refused, if it is. */
    const checkHello = (connection: TransportConnection, h: ControlMessage.Hello): HandshakeFailure | undefined => {
      if (h.protocolVersion !== PROTOCOL_VERSION) {
        return new HandshakeFailure('ProtocolVersion', `protocol version ${h.protocolVersion} is not ${PROTOCOL_VERSION}`, false)
      }
      if (h.clusterId !== settings.clusterId) {
        return new HandshakeFailure('ClusterId', `cluster id '${h.clusterId}' is not this cluster's ('${settings.clusterId}')`, false)
      }
      if (h.authMode !== authMode) return new HandshakeFailure('AuthMode', `peer authenticates with ${h.authMode}, this node with ${authMode}`, false)
      if (h.nodeId === settings.nodeId) {
        return h.instanceId === instanceId
          ? new HandshakeFailure('SelfConnection', 'connected to itself', false)
          : new HandshakeFailure('DuplicateNodeId', `another node uses this node's id '${h.nodeId}'`, false)
      }
      if (authMode === 'tls') {
        const leaf = connection.peerCertificates()[0]
        const name = leaf === undefined ? undefined : Certificates.commonName(leaf)
        if (name !== h.nodeId) {
          return new HandshakeFailure('CertificateMismatch', `certificate names '${name ?? 'nothing'}' but the peer claims node id '${h.nodeId}'`, false)
        }
      }
      return undefined
    }

    const peerFingerprint = (connection: TransportConnection): Uint8Array => {
      const leaf = connection.peerCertificates()[0]
      return leaf === undefined ? new Uint8Array(0) : Certificates.fingerprint(leaf)
    }

    /** Runs the handshake on a fresh connection; both roles share it. */
    const handshake = (connection: TransportConnection, control: FramedStream, inbox: Queue.Queue<Control>, dialer: boolean) =>
      Effect.gen(function* () {
        const next = (expect: ReadonlyArray<Control['_tag']>) =>
          Effect.gen(function* () {
            const message = yield* Queue.take(inbox)
            if (message._tag === 'Refuse') return yield* Effect.fail(new HandshakeFailure(message.reason, message.message, true))
            if (!expect.includes(message._tag)) {
              return yield* Effect.fail(new HandshakeFailure('Protocol', `expected ${expect.join(' or ')}, got ${message._tag}`, false))
            }
            return message
          })
        const refuse = (failure: HandshakeFailure) =>
          Effect.sync(() => control.send(ControlMessage.encode({ _tag: 'Refuse', reason: failure.reason, message: failure.message }))).pipe(
            Effect.andThen(Effect.fail(failure))
          )
        const myNonce = Auth.nonce()
        let theirs: ControlMessage.Hello
        let dialerNonce: Uint8Array
        let acceptorNonce: Uint8Array
        if (dialer) {
          control.send(ControlMessage.encode(hello(myNonce)))
          const ack = (yield* next(['Hello'])) as ControlMessage.Hello
          theirs = ack
          dialerNonce = myNonce
          acceptorNonce = ack.nonce
        } else {
          theirs = (yield* next(['Hello'])) as ControlMessage.Hello
          dialerNonce = theirs.nonce
          acceptorNonce = myNonce
        }
        const problem = checkHello(connection, theirs)
        if (problem !== undefined) return yield* refuse(problem)
        const dialerId = dialer ? settings.nodeId : theirs.nodeId
        const acceptorId = dialer ? theirs.nodeId : settings.nodeId
        const proofInput = (role: Auth.ProofRole, fingerprint: Uint8Array): Auth.ProofInput => ({
          role,
          clusterId: settings.clusterId,
          dialerId,
          acceptorId,
          dialerNonce,
          acceptorNonce,
          proverCertFingerprint: fingerprint
        })
        const myRole: Auth.ProofRole = dialer ? 'dialer' : 'acceptor'
        const theirRole: Auth.ProofRole = dialer ? 'acceptor' : 'dialer'
        const myProof = secret === undefined ? new Uint8Array(0) : Auth.proof(secret, proofInput(myRole, ownFingerprint))
        if (!dialer) {
          control.send(ControlMessage.encode(hello(myNonce)))
        }
        control.send(ControlMessage.encode({ _tag: 'Auth', proof: myProof }))
        const theirAuth = (yield* next(['Auth'])) as ControlMessage.Auth
        if (secret !== undefined && !Auth.verify(secret, proofInput(theirRole, peerFingerprint(connection)), theirAuth.proof)) {
          return yield* refuse(new HandshakeFailure('BadSecret', 'the cluster secret proof does not match', false))
        }
        return theirs
      })

    const failHandshake = (connection: TransportConnection, failure: HandshakeFailure | TransportError | ClusterError, dialer: boolean) =>
      Effect.gen(function* () {
        const reason = failure instanceof HandshakeFailure ? failure.reason : failure.reason
        countFailure(reason)
        if (!(failure instanceof HandshakeFailure && failure.reason === 'SelfConnection')) {
          log('Warning', failure instanceof HandshakeFailure && failure.byPeer ? 'handshake refused by peer' : 'handshake refused', {
            peerAddress: formatAddress(connection.remoteAddress),
            role: dialer ? 'dialer' : 'acceptor',
            reason,
            detail: failure.message
          })
        }
        // a refusal of ours was just sent: give it a moment to reach the peer, which then closes itself
        if (failure instanceof HandshakeFailure && !failure.byPeer && !connection.isClosed()) {
          yield* Effect.sleep(Duration.millis(200)).pipe(Effect.withClock(liveClock))
        }
        if (!connection.isClosed()) connection.close(ErrorCode.HandshakeRefused, reason)
      })

    /** Sets a connection up for the handshake: the control stream and the inbox it feeds. */
    const establish = (connection: TransportConnection, dialer: boolean) => {
      /** Streams the peer opened behind its control stream, held until the handshake ends. */
      const early: Array<TransportStream> = []
      return Effect.gen(function* () {
        const inbox = yield* Queue.bounded<Control>(16)
        const controlReady = yield* Deferred.make<FramedStream>()
        let controlSeen = dialer
        let controlStream: FramedStream | undefined
        const closed = yield* Deferred.make<void, HandshakeFailure>()
        const feed: PeerStreamHandler = {
          onMessage: (bytes) => {
            try {
              if (!Queue.unsafeOffer(inbox, ControlMessage.decode(bytes))) throw new Error('too many handshake messages')
            } catch (e) {
              Deferred.unsafeDone(closed, Effect.fail(new HandshakeFailure('Protocol', `malformed handshake message: ${(e as Error).message}`, false)))
            }
          },
          onClose: () => Deferred.unsafeDone(closed, Effect.fail(new HandshakeFailure('ConnectionClosed', 'control stream closed during the handshake', false)))
        }
        connection.setHandler({
          onStream: (stream) => {
            // Streams behind the control stream are held, not read: the peer may have finished its
            // side of the handshake (and opened application streams) before this side verified
            // its proof. They are handed over on success and refused on failure; bounded by the
            // stream limit. Nothing of theirs is read before the peer is authenticated.
            if (controlSeen) {
              if (early.length >= settings.transport.maxStreams) stream.reset(ErrorCode.NotAuthenticated)
              else early.push(stream)
              return
            }
            controlSeen = true
            const framed: FramedStream = new FramedStream(stream, '', true, controlMaxMessageSize, undefined, (init, self) => {
              if (init.appId !== CONTROL_APP_ID || init.streamName !== '') {
                self.reset(ErrorCode.NotAuthenticated)
                Deferred.unsafeDone(closed, Effect.fail(new HandshakeFailure('Protocol', `first stream is ${init.appId}/${init.streamName}, not the control stream`, false)))
                return
              }
              Deferred.unsafeDone(controlReady, Effect.succeed(self))
            })
            // a malformed STREAM_INIT closes the stream: the handshake fails at once
            framed.setHandler(feed)
          },
          onClose: (error) =>
            Deferred.unsafeDone(closed, Effect.fail(new HandshakeFailure('ConnectionClosed', error?.message ?? 'connection closed during the handshake', false)))
        })
        if (dialer) {
          const framed = new FramedStream(connection.openStream({ onData: () => {} }), '', false, controlMaxMessageSize, { appId: CONTROL_APP_ID, streamName: '' }, undefined)
          framed.setHandler(feed)
          Deferred.unsafeDone(controlReady, Effect.succeed(framed))
        }
        const theirs = yield* Deferred.await(controlReady).pipe(
          Effect.flatMap((control) => handshake(connection, control, inbox, dialer).pipe(Effect.map((hello) => ({ hello, control })))),
          Effect.raceFirst(Deferred.await(closed).pipe(Effect.andThen(Effect.never))),
          Effect.timeoutFail({
            duration: settings.transport.handshakeTimeout,
            onTimeout: () => new HandshakeFailure('HandshakeTimeout', `no handshake within ${Duration.format(settings.transport.handshakeTimeout)}`, false)
          }),
          Effect.map(({ hello, control }) => {
            controlStream = control
            return hello
          })
        )
        const control = controlStream!
        const info: ControlMessage.MemberInfo = { nodeId: theirs.nodeId, instanceId: theirs.instanceId, host: theirs.host, port: theirs.port }
        const peer: Peer = {
          id: theirs.nodeId,
          instanceId: theirs.instanceId,
          address: { host: theirs.host, port: theirs.port },
          connection,
          control,
          dialedByUs: dialer,
          lastSeen: now(),
          rttMicros: undefined,
          pingSeq: 0
        }
        if (leaving) return yield* Effect.fail(new HandshakeFailure('Leaving', 'this node is leaving', false))
        attachConnection(peer)
        if (register(peer, info)) {
          sendControl(peer, { _tag: 'Members', members: memberInfos() })
        }
        // whatever came right behind the handshake
        for (const message of yield* Queue.takeAll(inbox)) onControl(peer, message)
        for (const stream of early.splice(0)) acceptAppStream(peer, stream)
        return peer.id
      }).pipe(
        Effect.tapError((failure) =>
          Effect.sync(() => {
            for (const stream of early.splice(0)) stream.reset(ErrorCode.NotAuthenticated)
          }).pipe(Effect.andThen(failHandshake(connection, failure, dialer)))
        )
      )
    }

    const dialAddress = (address: Address): Effect.Effect<string, ClusterError> => {
      const key = formatAddress(address)
      return Effect.suspend(() => {
        if (selfAddresses.has(key)) return Effect.fail(new ClusterError({ reason: 'SelfConnection', message: `${key} is this node` }))
        if (leaving) return Effect.fail(new ClusterError({ reason: 'NotRunning', message: 'this node is leaving' }))
        for (const peer of peers.values()) {
          if (formatAddress(peer.address) === key) return Effect.succeed(peer.id)
        }
        if (dialing.has(key)) return Effect.fail(new ClusterError({ reason: 'HandshakeTimeout', message: `already dialing ${key}` }))
        dialing.add(key)
        return transport.connect(address).pipe(
          Effect.mapError((e) => new ClusterError({ reason: 'HandshakeTimeout', message: `connecting to ${key}: ${e.message}` })),
          Effect.flatMap((connection) =>
            establish(connection, true).pipe(
              Effect.mapError((failure) => {
                if (failure.reason === 'SelfConnection') selfAddresses.add(key)
                return new ClusterError({ reason: failure.reason === 'SelfConnection' ? 'SelfConnection' : 'HandshakeRefused', message: `${key}: ${failure.message}` })
              })
            )
          ),
          Effect.ensuring(Effect.sync(() => dialing.delete(key)))
        )
      })
    }

    // ---- loops ------------------------------------------------------------------------

    const acceptLoop = transport.accept.pipe(
      Effect.flatMap((connection) => FiberSet.run(fibers, establish(connection, false).pipe(Effect.ignore))),
      Effect.forever
    )

    const heartbeat = Effect.sync(() => {
      const t = now()
      const deadline = Duration.toMillis(settings.failureTimeout)
      for (const peer of [...peers.values()]) {
        if (t - peer.lastSeen > deadline) {
          markGone(peer, 'failed', `no heartbeat for ${t - peer.lastSeen} ms`)
          continue
        }
        sendControl(peer, { _tag: 'Ping', seq: ++peer.pingSeq, sentAt: t })
      }
    })

    const discover = discovery.resolve.pipe(
      Effect.flatMap((addresses) =>
        Effect.forEach(
          addresses.filter((a) => !selfAddresses.has(formatAddress(a))),
          (address) => FiberSet.run(fibers, dialAddress(address).pipe(Effect.ignore)),
          { discard: true }
        )
      ),
      Effect.catchAll((e) => Effect.logWarning('discovery failed').pipe(Effect.annotateLogs({ node: settings.nodeId, source: discovery.describe, error: e.message })))
    )

    const leave = Effect.gen(function* () {
      if (leaving) return
      leaving = true
      for (const peer of peers.values()) sendControl(peer, { _tag: 'Leave' })
      // let the Leave frames go out before the connections close
      yield* Effect.sleep(Duration.millis(20)).pipe(Effect.withClock(liveClock))
      for (const peer of [...peers.values()]) {
        peers.delete(peer.id)
        peer.connection.close(ErrorCode.Leaving, 'leaving')
      }
      const self = records.get(settings.nodeId)!
      self.state = 'left'
      self.since = now()
    })

    if (!settings.single) {
      yield* FiberSet.run(fibers, acceptLoop)
      yield* FiberSet.run(fibers, heartbeat.pipe(Effect.repeat(Schedule.spaced(settings.heartbeatInterval))))
      yield* FiberSet.run(fibers, discover.pipe(Effect.repeat(Schedule.spaced(settings.discoveryInterval))))
    }
    yield* Effect.addFinalizer(() => leave)

    const alive = () =>
      [...records.values()]
        .filter((r) => r.state === 'alive')
        .map((r) => r.id)
        .sort()

    const service: Nodosum['Type'] = {
      nodeId: settings.nodeId,
      clusterId: settings.clusterId,
      address: advertised,
      boundAddress: transport.address,
      members: () => [...records.values()].map(toMember),
      nodes: alive,
      events: Stream.fromPubSub(events),
      openStream: (peerId, appId, streamName, handler) => {
        const peer = peers.get(peerId)
        if (peer === undefined) throw new ClusterError({ reason: 'UnknownNode', message: `node '${peerId}' is not an alive member` })
        const framed = new FramedStream(peer.connection.openStream({ onData: () => {} }), peerId, false, maxMessageSize, { appId, streamName }, undefined)
        framed.setHandler(handler)
        return framed as PeerStream
      },
      setStreamAcceptor: (fn) => {
        acceptor = fn
      },
      maxMessageSize,
      stats: (): NodosumStats => {
        const membersByState = { alive: 0, failed: 0, left: 0 }
        for (const r of records.values()) membersByState[r.state]++
        return {
          peers: [...peers.values()].map((p) => ({
            ...p.connection.stats(),
            id: p.id,
            address: p.address,
            heartbeatRttMicros: p.rttMicros,
            dialedByUs: p.dialedByUs
          })),
          handshakeFailures: { ...handshakeFailures },
          handshakesSucceeded,
          membersByState
        }
      },
      leave,
      discover: Effect.suspend(() => discover),
      dial: dialAddress
    }
    return service
  })

/** Short grace periods that must pass in real time even under a test clock (frames leaving the socket). */
const liveClock = Clock.make()

const levels = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error } as const
