/**
 * The cluster shell: connects the pure cores — `session.ts`/`handshake.ts` per connection,
 * `membership.ts` (the `MembershipTable`) and `dialer.ts` — to the `Transport`, the
 * `Discovery`, the Effect `Clock` (the cores' only `now`) and the scope. Every timer a core
 * asks for is a fiber of the scope's `FiberSet`; closing the scope leaves and stops them all.
 */
import { ControlMessage, type WireError } from '@mycorrizal/wire'
import { Clock, Duration, Effect, FiberSet, LogLevel, PubSub, Redacted, Runtime, Schedule, type Scope, Stream } from 'effect'
import { randomBytes } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import * as Certificates from '../Certificates.js'
import { Discovery } from '../Discovery.js'
import type { MembershipEvent, Nodosum, NodosumStats, StreamAcceptor } from '../Nodosum.js'
import type { NodosumSettings } from '../NodosumConfig.js'
import { ClusterError } from '../NodosumError.js'
import { ErrorCode, type PeerStream } from '../PeerStream.js'
import { type Address, formatAddress, Transport, type TransportConnection, type TransportStream } from '../Transport.js'
import * as Auth from './auth.js'
import * as Dialer from './dialer.js'
import { FramedStream } from './framed.js'
import type { Refusal, Role } from './handshake.js'
import * as Membership from './membership.js'
import { CONTROL_APP_ID, LATE_DIAL_HEARTBEATS, LEAVE_GRACE_MS, REFUSAL_GRACE_MS } from './protocol.js'
import * as Session from './session.js'

interface Peer {
  readonly id: string
  readonly address: Address
  readonly connection: TransportConnection
  readonly control: FramedStream
  readonly dialedByUs: boolean
  rttMicros: number | undefined
  pingSeq: number
}

/** Builds the cluster service over the `Transport` and `Discovery` of the context. */
export const make = (settings: NodosumSettings, certificate: Uint8Array): Effect.Effect<Nodosum['Type'], never, Transport | Discovery | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const discovery = yield* Discovery
    const clock = yield* Effect.clock
    const now = () => clock.unsafeCurrentTimeMillis()
    const runSync = Runtime.runSync(yield* Effect.runtime<never>())
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const fork = yield* FiberSet.runtime(fibers)<never>()
    const events = yield* PubSub.unbounded<MembershipEvent>()
    const log = (level: keyof typeof levels, message: string, annotations: Record<string, unknown> = {}) =>
      runSync(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs({ node: settings.nodeId, ...annotations })))
    const at = (time: number, f: () => void) => fork(Effect.sleep(Math.max(0, time - now())).pipe(Effect.andThen(Effect.sync(f))))

    const instanceId = randomBytes(8).toString('hex')
    const advertised = advertisedAddress(settings, transport.address)
    const secret = settings.auth?._tag === 'Secret' ? new Uint8Array(Buffer.from(Redacted.value(settings.auth.secret), 'utf8')) : undefined
    const ms = Duration.toMillis
    const table = new Membership.MembershipTable({
      self: { id: settings.nodeId, instanceId, address: advertised },
      failureTimeoutMs: ms(settings.failureTimeout),
      suspectTimeoutMs: ms(settings.transport.handshakeTimeout),
      now: now()
    })
    const dialer = new Dialer.Dialer({
      selfId: settings.nodeId,
      selfAddresses: [advertised, transport.address],
      single: settings.single,
      reconnect: { initialMs: ms(settings.reconnectInitial), maxMs: ms(settings.reconnectMax), giveUpMs: ms(settings.reconnectGiveUp) },
      lateDialMs: ms(settings.heartbeatInterval) * LATE_DIAL_HEARTBEATS,
      discoveryIntervalMs: ms(settings.discoveryInterval)
    })
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
    let acceptor: StreamAcceptor | undefined

    const send = (peer: Peer, message: ControlMessage.ControlMessage) => {
      if (!peer.control.isClosed()) peer.control.send(ControlMessage.encode(message))
    }

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
          if (peer !== undefined && !peer.connection.isClosed()) peer.connection.close(o.code, o.reason)
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

    const onControl = (peer: Peer, message: ControlMessage.ControlMessage) => {
      table.heard(now(), peer.id, peer.connection.id)
      if (message._tag === 'Ping') send(peer, { _tag: 'Pong', seq: message.seq, sentAt: message.sentAt })
      else if (message._tag === 'Pong') peer.rttMicros = Math.max(0, Math.round((now() - message.sentAt) * 1000))
      else if (message._tag === 'Members') dial(dialer.learned(now(), message.members, view))
      else if (message._tag === 'Leave') apply(table.left(now(), peer.id, peer.connection.id))
      else log('Warning', 'unexpected control message after the handshake', { peer: peer.id, type: message._tag })
    }

    const acceptAppStream = (peer: Peer, stream: TransportStream) => {
      new FramedStream(stream, peer.id, true, settings.maxMessageSize, undefined, (init, framed) => {
        if (init.appId === CONTROL_APP_ID || acceptor === undefined || !acceptor(framed)) framed.reset(ErrorCode.UnknownStream)
      })
    }

    /** A handshake succeeded: the connection joins the table (or loses a tie-break), its handlers take over. */
    const attach = (connection: TransportConnection, session: Session.Session, dialedByUs: boolean): string => {
      const { hello, control } = session
      const peer: Peer = { id: hello.nodeId, address: { host: hello.host, port: hello.port }, connection, control, dialedByUs, rttMicros: undefined, pingSeq: 0 }
      const lost = (reason: string, duplicate: boolean) => {
        linked.delete(connection.id)
        apply(table.lost(now(), peer.id, connection.id, reason, duplicate))
      }
      connection.setHandler({
        onStream: (stream) => acceptAppStream(peer, stream),
        onClose: (error) => lost(error?.message ?? 'connection closed', error?.code === ErrorCode.DuplicateConnection)
      })
      control.setHandler({
        onMessage: (bytes) => {
          let message: ControlMessage.ControlMessage
          try {
            message = ControlMessage.decode(bytes)
          } catch (e) {
            log('Warning', 'malformed control message', { peer: peer.id, error: (e as WireError).message })
            return connection.close(ErrorCode.ProtocolError, 'malformed control message')
          }
          onControl(peer, message)
        },
        onClose: () => lost('control stream closed', false)
      })
      handshakesSucceeded++
      linked.set(connection.id, peer)
      const { kept, outputs } = table.connected(now(), { id: peer.id, instanceId: hello.instanceId, address: peer.address, connectionId: connection.id, dialedByUs })
      apply(outputs)
      if (kept) {
        dialer.linked(peer.id)
        send(peer, { _tag: 'Members', members: table.memberInfos() })
      }
      for (const message of session.behind) onControl(peer, message)
      for (const stream of session.early) acceptAppStream(peer, stream)
      return peer.id
    }

    const refused = (connection: TransportConnection, refusal: Refusal, role: Role) =>
      Effect.gen(function* () {
        handshakeFailures[refusal.reason] = (handshakeFailures[refusal.reason] ?? 0) + 1
        if (refusal.reason !== 'SelfConnection') {
          const detail = { peerAddress: formatAddress(connection.remoteAddress), role, reason: refusal.reason, detail: refusal.message }
          yield* Effect.logWarning(refusal.byPeer ? 'handshake refused by peer' : 'handshake refused').pipe(Effect.annotateLogs({ node: settings.nodeId, ...detail }))
        }
        // a refusal of ours was just sent: give it a moment to reach the peer, which then closes itself
        if (!refusal.byPeer && !connection.isClosed()) yield* Effect.sleep(REFUSAL_GRACE_MS).pipe(Effect.withClock(ioClock))
        if (!connection.isClosed()) connection.close(ErrorCode.HandshakeRefused, refusal.reason)
      })

    const establish = (connection: TransportConnection, role: Role): Effect.Effect<string, Refusal> =>
      Session.run(
        connection,
        {
          role,
          clusterId: settings.clusterId,
          nodeId: settings.nodeId,
          instanceId,
          advertised,
          authMode: settings.auth?._tag === 'Tls' ? 'tls' : 'secret',
          secret,
          ownFingerprint: Certificates.fingerprint(certificate),
          peerCertificate: connection.peerCertificates()[0],
          nonce: Auth.nonce(),
          timeoutMs: ms(settings.transport.handshakeTimeout)
        },
        settings.transport.maxStreams
      ).pipe(
        Effect.filterOrFail(
          () => !table.isLeaving(),
          (): Refusal => ({ reason: 'Leaving', message: 'this node is leaving', byPeer: false })
        ),
        Effect.map((session) => attach(connection, session, role === 'dialer')),
        Effect.tapError((refusal) => refused(connection, refusal, role))
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
      return Effect.sleep(LEAVE_GRACE_MS).pipe(Effect.withClock(ioClock), Effect.andThen(Effect.sync(() => apply(drops))))
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
      events: Stream.fromPubSub(events),
      openStream: (peerId, appId, streamName, handler) => {
        const peer = peerOf(peerId)
        if (peer === undefined) throw new ClusterError({ reason: 'UnknownNode', message: `node '${peerId}' is not an alive member` })
        const framed = new FramedStream(peer.connection.openStream({ onData: () => {} }), peerId, false, settings.maxMessageSize, { appId, streamName }, undefined)
        framed.setHandler(handler)
        return framed as PeerStream
      },
      setStreamAcceptor: (fn) => {
        acceptor = fn
      },
      maxMessageSize: settings.maxMessageSize,
      stats: (): NodosumStats => ({
        peers: [...linked.values()]
          .filter((p) => table.linkOf(p.id) === p.connection.id)
          .map((p) => ({ ...p.connection.stats(), id: p.id, address: p.address, heartbeatRttMicros: p.rttMicros, dialedByUs: p.dialedByUs })),
        handshakeFailures: { ...handshakeFailures },
        handshakesSucceeded,
        membersByState: table.counts()
      }),
      leave,
      discover: Effect.suspend(() => discover),
      dial: (address) => dialAddress(address, undefined)
    } satisfies Nodosum['Type']
  })

/**
 * Grace periods for bytes to leave the socket (a refusal, `Leave` frames): they pass in real
 * time even under `TestClock`, as the bytes do. The cores never read this clock.
 */
const ioClock = Clock.make()

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
