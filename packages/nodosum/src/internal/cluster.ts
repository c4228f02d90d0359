/**
 * The cluster shell: connects the pure cores — `session.ts`/`handshake.ts` per connection,
 * `membership.ts` (the `MembershipTable`) and `dialer.ts` — to the `Transport`, the
 * `Discovery`, the Effect `Clock` (the cores' only `now`) and the scope. Every timer a core
 * asks for is a fiber of the scope's `FiberSet`; closing the scope leaves and stops them all.
 */
import { ControlMessage } from '@mycorrizal/wire'
import * as Duration from 'effect/Duration'
import * as Effect from 'effect/Effect'
import * as FiberSet from 'effect/FiberSet'
import * as LogLevel from 'effect/LogLevel'
import * as PubSub from 'effect/PubSub'
import * as Redacted from 'effect/Redacted'
import * as Runtime from 'effect/Runtime'
import * as Schedule from 'effect/Schedule'
import type * as Scope from 'effect/Scope'
import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import * as Certificates from '../Certificates.js'
import { Discovery } from '../Discovery.js'
import type { MembershipEvent, Nodosum, NodosumStats, PeerStats, StreamAcceptor } from '../Nodosum.js'
import type { NodosumSettings } from '../NodosumConfig.js'
import { ClusterError } from '../NodosumError.js'
import type { PeerStream } from '../PeerStream.js'
import { type Address, formatAddress, Transport, type TransportConnection } from '../Transport.js'
import * as Auth from './auth.js'
import * as Dialer from './dialer.js'
import * as EventStream from './eventStream.js'
import { FramedStream } from './framed.js'
import type { Refusal, Role } from './handshake.js'
import * as Membership from './membership.js'
import { acceptStream, attach, budgetOf, type Peer, type PeerEvents, send } from './peer.js'
import { LATE_DIAL_HEARTBEATS, LEAVE_GRACE_MS } from './protocol.js'
import * as Session from './session.js'

/** Builds the cluster service over the `Transport` and `Discovery` of the context. */
export const make = (settings: NodosumSettings, certificate: Uint8Array): Effect.Effect<Nodosum['Type'], never, Transport | Discovery | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const discovery = yield* Discovery
    const clock = yield* Effect.clock
    // monotonic milliseconds (Effect's clock: process.hrtime): heartbeat ages and timers must not
    // jump with the wall clock, or an NTP step past the failure timeout fails every peer
    const now = () => Number(clock.unsafeCurrentTimeNanos() / 1_000_000n)
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const fork = yield* FiberSet.runtime(fibers)<never>()
    const events = yield* PubSub.unbounded<MembershipEvent>()
    let eventStream: Nodosum['Type']['events'] | undefined
    const log = (level: keyof typeof levels, message: string, annotations: Record<string, unknown> = {}) =>
      runSync(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs({ node: settings.nodeId, ...annotations })))
    const at = (time: number, f: () => void) => fork(Effect.sleep(Math.max(0, time - now())).pipe(Effect.andThen(Effect.sync(f))))

    const instanceId = randomBytes(8).toString('hex')
    const advertised = advertisedAddress(settings, transport.address)
    const handshake = handshakeOptions(settings, instanceId, advertised, certificate)
    const { table, dialer } = makeCores(settings, { id: settings.nodeId, instanceId, address: advertised }, transport.address, now())
    const view: Dialer.MembershipView = {
      isLinked: (id, instance) => (instance === undefined ? table.linkOf(id) !== undefined : table.isLinked(id, instance)),
      isLeft: (id) => table.stateOf(id) === 'left',
      addressOf: (id) => table.addressOf(id)
    }
    /** Connections that finished their handshake, by connection id. */
    const linked = new Map<string, Peer>()
    const peerOf = (id: string) => linked.get(table.linkOf(id) ?? '')
    const handshakeFailures: Record<string, number> = {}
    let handshakesSucceeded = 0
    /** Connections in their cluster handshake (not authenticated yet), and the accepted ones among them. */
    let handshakesInProgress = 0
    let acceptedInProgress = 0
    const maxUnauthenticated = settings.transport.maxUnauthenticatedConnections
    let acceptor: StreamAcceptor | undefined

    const apply = (outputs: ReadonlyArray<Membership.Output>): void => {
      for (const o of outputs) {
        if (o._tag === 'Event') {
          runSync(PubSub.publish(events, o.event))
          const e = o.event
          if (e._tag === 'Joined') log('Info', 'member joined', { peer: e.member.id, address: formatAddress(e.member.address) })
          else log(e._tag === 'Left' ? 'Info' : 'Warning', e._tag === 'Left' ? 'member left' : 'member failed', { peer: e.member.id, ...(e._tag === 'Failed' ? { reason: e.reason } : {}) })
        } else if (o._tag === 'Drop') {
          const peer = linked.get(o.connectionId)
          linked.delete(o.connectionId)
          // the loser may be a connection whose handshake this node (the acceptor) just finished:
          // its last Hello and Auth get a moment to leave, so the dialer completes and drops it too
          if (peer !== undefined && !peer.connection.isClosed()) {
            const connection = peer.connection
            fork(
              Effect.sleep(LEAVE_GRACE_MS).pipe(
                Effect.withClock(Session.ioClock),
                Effect.andThen(Effect.sync(() => connection.isClosed() || connection.close(o.code, o.reason)))
              )
            )
          }
        } else if (o._tag === 'Reconnect') dial(dialer.reconnect(now(), o.id, o.address))
        else if (o._tag === 'Announce') {
          const bytes = ControlMessage.encode({ _tag: 'Members', members: [o.member] })
          for (const peer of linked.values()) if (peer.id !== o.member.nodeId && !peer.control.isClosed()) peer.control.send(bytes)
        } else if (o._tag === 'Ping') {
          const peer = peerOf(o.id)
          if (peer !== undefined) send(peer, { _tag: 'Ping', seq: ++peer.pingSeq, sentAt: now() })
        } else at(o.at, () => apply(table.tick(now(), false)))
      }
    }

    const dial = (outputs: ReadonlyArray<Dialer.Output>): void => {
      for (const o of outputs) {
        if (o._tag === 'Dial') fork(Effect.ignore(dialAddress(o.address, o.reconnect)))
        else if (o._tag === 'Timer') at(o.at, () => dial(dialer.fire(now(), o.key, view)))
        else log('Info', 'gave up reconnecting', { peer: o.id })
      }
    }

    const peerEvents: PeerEvents = {
      onControl: (peer, message) => {
        table.heard(now(), peer.id, peer.connection.id)
        if (message._tag === 'Ping') send(peer, { _tag: 'Pong', seq: message.seq, sentAt: message.sentAt })
        else if (message._tag === 'Pong') peer.rttMicros = Math.max(0, Math.round((now() - message.sentAt) * 1000))
        else if (message._tag === 'Members') dial(dialer.learned(now(), message.members, view))
        else if (message._tag === 'Leave') apply(table.left(now(), peer.id, peer.connection.id))
        else log('Warning', 'unexpected control message after the handshake', { peer: peer.id, type: message._tag })
      },
      onStream: (peer, stream) => acceptStream(peer, stream, settings.maxMessageSize, () => acceptor),
      onLost: (peer, reason, duplicate) => {
        linked.delete(peer.connection.id)
        apply(table.lost(now(), peer.id, peer.connection.id, reason, duplicate))
      },
      onMalformed: (peer, error) => log('Warning', 'malformed control message', { peer: peer.id, error: error.message })
    }

    /** A handshake succeeded: the connection joins the table (or loses a tie-break), its handlers take over. */
    const join = (connection: TransportConnection, session: Session.Session, dialedByUs: boolean): string => {
      connection.authenticated?.()
      const peer = attach(connection, session, dialedByUs, peerEvents)
      handshakesSucceeded++
      linked.set(connection.id, peer)
      const link = { id: peer.id, instanceId: session.hello.instanceId, address: peer.address, connectionId: connection.id, dialedByUs }
      const { kept, outputs } = table.connected(now(), link)
      apply(outputs)
      if (kept) {
        dialer.linked(peer.id)
        send(peer, { _tag: 'Members', members: table.memberInfos() })
      }
      for (const message of session.behind) peerEvents.onControl(peer, message)
      for (const stream of session.early) peerEvents.onStream(peer, stream)
      return peer.id
    }

    const establish = (connection: TransportConnection, role: Role): Effect.Effect<string, Refusal> =>
      Effect.suspend(() => {
        const accepted = role === 'acceptor'
        if (accepted && acceptedInProgress >= maxUnauthenticated) {
          return Effect.fail<Refusal>({ reason: 'UnauthenticatedLimit', message: `${maxUnauthenticated} connections are already authenticating`, byPeer: false })
        }
        handshakesInProgress++
        if (accepted) acceptedInProgress++
        return Session.run(connection, { ...handshake, role, peerCertificate: connection.peerCertificates()[0], nonce: Auth.nonce() }, settings.transport.maxStreams).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              handshakesInProgress--
              if (accepted) acceptedInProgress--
            })
          )
        )
      }).pipe(
        Effect.filterOrFail(
          () => !table.isLeaving(),
          (): Refusal => ({ reason: 'Leaving', message: 'this node is leaving', byPeer: false })
        ),
        Effect.map((session) => join(connection, session, role === 'dialer')),
        Effect.tapError((refusal) => {
          handshakeFailures[refusal.reason] = (handshakeFailures[refusal.reason] ?? 0) + 1
          return Session.refused(connection, refusal, role, settings.nodeId)
        })
      )

    const dialAddress = (address: Address, reconnect: string | undefined): Effect.Effect<string, ClusterError> =>
      Effect.suspend(() => {
        const key = formatAddress(address)
        const fail = (reason: ClusterError['reason'], message: string) => {
          if (reconnect !== undefined) dial(dialer.retry(now(), reconnect))
          return Effect.fail(new ClusterError({ reason, message }))
        }
        if (dialer.isSelf(address)) return fail('SelfConnection', `${key} is this node`)
        if (table.isLeaving()) return fail('NotRunning', 'this node is leaving')
        for (const peer of linked.values()) if (formatAddress(peer.address) === key && table.linkOf(peer.id) === peer.connection.id) return Effect.succeed(peer.id)
        if (dialer.dialStarting(address) !== undefined) return fail('HandshakeTimeout', `already dialing ${key}`)
        return transport.connect(address).pipe(
          Effect.mapError((e) => new ClusterError({ reason: 'HandshakeTimeout', message: `connecting to ${key}: ${e.message}` })),
          Effect.flatMap((connection) =>
            establish(connection, 'dialer').pipe(
              Effect.mapError(
                (r) => new ClusterError({ reason: r.reason === 'SelfConnection' ? 'SelfConnection' : 'HandshakeRefused', message: `${key}: ${r.message}` })
              )
            )
          ),
          Effect.onExit((exit) =>
            Effect.sync(() => {
              const selfConnection = exit._tag === 'Failure' && exit.cause._tag === 'Fail' && exit.cause.error.reason === 'SelfConnection'
              dial(dialer.dialEnded(now(), address, { ok: exit._tag === 'Success', selfConnection, reconnect }))
            })
          )
        )
      })

    const discover = discovery.resolve.pipe(
      Effect.map((seeds) => {
        const addresses = new Set<string>()
        for (const peer of linked.values()) addresses.add(formatAddress(peer.address))
        dial(dialer.discovered(now(), seeds, addresses).dial)
      }),
      Effect.catchAll((e) => Effect.logWarning('discovery failed').pipe(Effect.annotateLogs({ node: settings.nodeId, source: discovery.describe, error: e.message })))
    )

    const leave = Effect.suspend(() => {
      if (table.isLeaving()) return Effect.void
      dialer.leave()
      const drops = table.leave(now())
      for (const d of drops) {
        const peer = linked.get(d.connectionId)
        if (peer !== undefined) send(peer, { _tag: 'Leave' })
      }
      // let the Leave frames go out before the connections close
      return Effect.sleep(LEAVE_GRACE_MS).pipe(Effect.withClock(Session.ioClock), Effect.andThen(Effect.sync(() => apply(drops))))
    })

    if (!settings.single) {
      yield* FiberSet.run(fibers, transport.accept.pipe(Effect.flatMap((c) => FiberSet.run(fibers, Effect.ignore(establish(c, 'acceptor')))), Effect.forever))
      yield* FiberSet.run(fibers, Effect.sync(() => apply(table.tick(now(), true))).pipe(Effect.repeat(Schedule.spaced(settings.heartbeatInterval))))
      yield* FiberSet.run(fibers, discover.pipe(Effect.repeat(Schedule.spaced(settings.discoveryInterval))))
    }
    yield* Effect.addFinalizer(() => leave)

    return {
      nodeId: settings.nodeId,
      clusterId: settings.clusterId,
      address: advertised,
      boundAddress: transport.address,
      members: () => table.members(),
      nodes: () => table.alive(),
      // effect/Stream is loaded when this is first read (eventStream.ts); `subscribe` needs only the PubSub
      get events() {
        return (eventStream ??= EventStream.fromPubSub(events))
      },
      subscribe: PubSub.subscribe(events),
      openStream: (peerId, appId, streamName, handler) => {
        const peer = peerOf(peerId)
        if (peer === undefined) throw new ClusterError({ reason: 'UnknownNode', message: `node '${peerId}' is not an alive member` })
        const framed = new FramedStream(peer.connection.openStream({ onData: () => {} }), peerId, false, settings.maxMessageSize, { appId, streamName }, undefined, budgetOf(peer, settings.maxMessageSize))
        framed.setHandler(handler)
        return framed as PeerStream
      },
      setStreamAcceptor: (fn) => {
        acceptor = fn
      },
      maxMessageSize: settings.maxMessageSize,
      stats: (): NodosumStats => ({
        peers: [...linked.values()].filter((p) => table.linkOf(p.id) === p.connection.id).map(peerStats),
        handshakeFailures: { ...handshakeFailures },
        handshakesSucceeded,
        handshakesInProgress,
        ...(transport.stats === undefined ? {} : { transport: transport.stats() }),
        membersByState: table.counts()
      }),
      leave,
      discover: Effect.suspend(() => discover),
      dial: (address) => dialAddress(address, undefined)
    } satisfies Nodosum['Type']
  })

/** What every handshake of this node shares. */
const handshakeOptions = (settings: NodosumSettings, instanceId: string, advertised: Address, certificate: Uint8Array) => ({
  clusterId: settings.clusterId,
  nodeId: settings.nodeId,
  instanceId,
  advertised,
  authMode: settings.auth?._tag === 'Tls' ? ('tls' as const) : ('secret' as const),
  secret: settings.auth?._tag === 'Secret' ? new Uint8Array(Buffer.from(Redacted.value(settings.auth.secret), 'utf8')) : undefined,
  ownFingerprint: Certificates.fingerprint(certificate),
  timeoutMs: Duration.toMillis(settings.transport.handshakeTimeout)
})

/** The cores of one node, from its settings. */
const makeCores = (settings: NodosumSettings, self: Membership.MembershipOptions['self'], bound: Address, now: number) => {
  const ms = Duration.toMillis
  const table = new Membership.MembershipTable({
    self,
    failureTimeoutMs: ms(settings.failureTimeout),
    suspectTimeoutMs: ms(settings.transport.handshakeTimeout),
    tickIntervalMs: ms(settings.heartbeatInterval),
    now
  })
  const dialer = new Dialer.Dialer({
    selfId: settings.nodeId,
    selfAddresses: [self.address, bound],
    single: settings.single,
    reconnect: { initialMs: ms(settings.reconnectInitial), maxMs: ms(settings.reconnectMax), giveUpMs: ms(settings.reconnectGiveUp) },
    lateDialMs: ms(settings.heartbeatInterval) * LATE_DIAL_HEARTBEATS,
    discoveryIntervalMs: ms(settings.discoveryInterval)
  })
  return { table, dialer }
}

const peerStats = (p: Peer): PeerStats => ({ ...p.connection.stats(), id: p.id, address: p.address, heartbeatRttMicros: p.rttMicros, dialedByUs: p.dialedByUs })

const levels = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error } as const

const firstExternalAddress = (): string | undefined => {
  for (const list of Object.values(networkInterfaces())) for (const info of list ?? []) if (info.family === 'IPv4' && !info.internal) return info.address
  return undefined
}

/** The address peers dial: the configured one, else the bound one (a wildcard replaced by an interface's). */
const advertisedAddress = (settings: NodosumSettings, bound: Address): Address => {
  const wildcard = bound.host === '0.0.0.0' || bound.host === '::' || bound.host === ''
  return { host: settings.advertise.host ?? (wildcard ? (firstExternalAddress() ?? '127.0.0.1') : bound.host), port: settings.advertise.port ?? bound.port }
}
