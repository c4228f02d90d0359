/**
 * Runs the handshake core (`handshake.ts`) over a fresh transport connection: opens or
 * takes the control stream, feeds the control messages to the core and sends what it
 * answers, holds the streams the peer opens behind the control stream until the outcome,
 * and fails the handshake at its deadline on the Effect clock.
 */
import { ControlMessage, isWireError } from '@mycorrizal/wire'
import * as Clock from 'effect/Clock'
import * as Deferred from 'effect/Deferred'
import * as Effect from 'effect/Effect'
import { formatAddress } from '../Transport.js'
import { ErrorCode, type PeerStreamError } from '../PeerStream.js'
import type { TransportConnection, TransportStream } from '../Transport.js'
import { FramedStream } from './framed.js'
import { Handshake, type HandshakeOptions, type Refusal, type Role } from './handshake.js'
import { CONTROL_APP_ID, CONTROL_MAX_MESSAGE_SIZE, CONTROL_PRIORITY, CONTROL_STREAM_NAME, HANDSHAKE_INBOX, REFUSAL_GRACE_MS } from './protocol.js'

type Control = ControlMessage.ControlMessage

/** A connection whose handshake succeeded. */
export interface Session {
  readonly hello: ControlMessage.Hello
  readonly control: FramedStream
  /** Control messages that came right behind the handshake. */
  readonly behind: ReadonlyArray<Control>
  /** Streams the peer opened behind its control stream, not read yet. */
  readonly early: ReadonlyArray<TransportStream>
}

/**
 * The handshake on `connection`. Fails with the refusal; the caller closes the connection.
 * `options.now` is ignored: the handshake starts at the Effect clock's now.
 */
export const run = (connection: TransportConnection, options: Omit<HandshakeOptions, 'now'>, maxEarlyStreams: number): Effect.Effect<Session, Refusal> =>
  Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const core = new Handshake({ ...options, now })
    const dialer = options.role === 'dialer'
    const done = yield* Deferred.make<Session, Refusal>()
    const early: Array<TransportStream> = []
    const behind: Array<Control> = []
    let control: FramedStream | undefined
    let controlSeen = dialer

    const apply = (step: ReturnType<Handshake['receive']>) => {
      for (const message of step.send) if (control !== undefined && !control.isClosed()) control.send(ControlMessage.encode(message))
      const outcome = step.outcome
      if (outcome === undefined) return
      if (outcome._tag === 'Refused') Deferred.unsafeDone(done, Effect.fail(outcome.refusal))
      else Deferred.unsafeDone(done, Effect.succeed({ hello: outcome.hello, control: control!, behind, early }))
    }
    const feed = {
      onMessage: (bytes: Uint8Array) => {
        let message: Control
        try {
          message = ControlMessage.decode(bytes)
        } catch (e) {
          return apply(malformed(e))
        }
        if (!core.done) return apply(core.receive(message))
        if (behind.length >= HANDSHAKE_INBOX) return apply(core.abort('Protocol', 'malformed handshake message: too many handshake messages'))
        behind.push(message)
      },
      // bytes that break the wire protocol (garbage, a broken STREAM_INIT, an oversized length
      // header) close the stream with the WireError: the handshake fails with its reason
      onClose: (error: PeerStreamError | undefined) =>
        apply(
          error?._tag === 'WireError'
            ? core.abort(error.reason, `malformed handshake input: ${error.message}`)
            : error?.reason === 'UnauthenticatedBytes'
              ? core.abort('UnauthenticatedBytes', error.message)
              : core.abort('ConnectionClosed', 'control stream closed during the handshake')
        )
    }
    const malformed = (e: unknown) =>
      isWireError(e) ? core.abort(e.reason, `malformed handshake message: ${e.message}`) : core.abort('Protocol', `malformed handshake message: ${(e as Error).message}`)
    connection.setHandler({
      authenticates: true,
      onStream: (stream) => {
        // Streams behind the control stream are held, not read: the peer may have finished its
        // side of the handshake (and opened application streams) before this side verified
        // its proof. They are handed over on success and refused on failure; bounded by the
        // stream limit. Nothing of theirs is read before the peer is authenticated.
        if (controlSeen) {
          if (early.length >= maxEarlyStreams) stream.reset(ErrorCode.NotAuthenticated)
          else early.push(stream)
          return
        }
        controlSeen = true
        const framed: FramedStream = new FramedStream(stream, '', true, CONTROL_MAX_MESSAGE_SIZE, undefined, (init, self) => {
          if (init.appId !== CONTROL_APP_ID || init.streamName !== CONTROL_STREAM_NAME) {
            self.reset(ErrorCode.NotAuthenticated)
            return apply(core.abort('Protocol', `first stream is ${init.appId}/${init.streamName}, not the control stream`))
          }
          control = self
          self.setPriority(CONTROL_PRIORITY)
          apply(core.start())
        })
        // a malformed STREAM_INIT closes the stream: the handshake fails at once
        framed.setHandler(feed)
      },
      // a transport limit on unauthenticated connections keeps its own reason
      onClose: (error) =>
        apply(
          error?.reason === 'UnauthenticatedBytes'
            ? core.abort('UnauthenticatedBytes', error.message)
            : core.abort('ConnectionClosed', error?.message ?? 'connection closed during the handshake')
        )
    })
    if (dialer) {
      try {
        const stream = connection.openStream({ onData: () => {} })
        control = new FramedStream(stream, '', false, CONTROL_MAX_MESSAGE_SIZE, { appId: CONTROL_APP_ID, streamName: CONTROL_STREAM_NAME }, undefined)
        control.setPriority(CONTROL_PRIORITY)
        control.setHandler(feed)
        apply(core.start())
      } catch (e) {
        apply(core.abort('ConnectionClosed', `cannot open the control stream: ${(e as Error).message}`))
      }
    }
    const expire = Effect.sleep(core.deadline - now).pipe(
      Effect.andThen(Clock.currentTimeMillis),
      Effect.tap((t) => apply(core.expire(Math.max(t, core.deadline)))),
      Effect.andThen(Effect.never)
    )
    return yield* Deferred.await(done).pipe(
      Effect.raceFirst(expire),
      Effect.tapError(() =>
        Effect.sync(() => {
          for (const stream of early.splice(0)) stream.reset(ErrorCode.NotAuthenticated)
        })
      )
    )
  })

/**
 * Grace periods for bytes to leave the socket (a refusal, `Leave` frames): they pass in real
 * time even under `TestClock`, as the bytes do. The cores never read this clock.
 */
export const ioClock = Clock.make()

/** A handshake failed: log it (not a connection to ourselves), let our refusal reach the peer, close. */
export const refused = (connection: TransportConnection, refusal: Refusal, role: Role, nodeId: string): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (refusal.reason !== 'SelfConnection') {
      const detail = { peerAddress: formatAddress(connection.remoteAddress), role, reason: refusal.reason, detail: refusal.message }
      yield* Effect.logWarning(refusal.byPeer ? 'handshake refused by peer' : 'handshake refused').pipe(Effect.annotateLogs({ node: nodeId, ...detail }))
    }
    // over the cap of unauthenticated connections: nothing was sent, close at once
    if (refusal.reason === 'UnauthenticatedLimit') return connection.close(ErrorCode.NotAuthenticated, refusal.reason)
    // a refusal of ours was just sent: give it a moment to reach the peer, which then closes itself
    if (!refusal.byPeer && !connection.isClosed()) yield* Effect.sleep(REFUSAL_GRACE_MS).pipe(Effect.withClock(ioClock))
    if (!connection.isClosed()) connection.close(ErrorCode.HandshakeRefused, refusal.reason)
  })
