/**
 * Datagrams per answered request over real QUIC on loopback. A request handler that answers a
 * few microtasks after the request was delivered (as Mycel's outbox and a Promise-based service
 * do) gets its answer sent in the same turn, in the datagram that acknowledges the request: the
 * driver sends a connection's packets once the microtasks its handlers started have run, so
 * quiche does not send an ACK-only packet first. The same holds for the caller: the next request
 * a caller writes when an answer arrives leaves with the answer's acknowledgement.
 */
import { describe, expect, it } from '@effect/vitest'
import { Effect } from 'effect'
import * as Certificates from '../src/Certificates.js'
import * as QuicTransport from '../src/QuicTransport.js'
import type { TransportConnection, TransportStream } from '../src/Transport.js'

const identity = await Effect.runPromise(Certificates.createSelfSigned('ack'))

const transport = () =>
  QuicTransport.make({ host: '127.0.0.1', port: 0, datagramSize: 16_384, handshakeTimeout: 5_000, tls: { cert: identity.cert, key: identity.key, ca: undefined } })

/** Resolves after `hops` microtasks: the answer of a handler a few Promise steps away. */
const microtasks = async (hops: number) => {
  for (let i = 0; i < hops; i++) await Promise.resolve()
}

const EXCHANGES = 20

describe('QUIC datagrams per answered request', () => {
  it.live(`${EXCHANGES} requests answered a few microtasks later: one datagram each way per exchange, no ACK-only packet beside it`, () =>
    Effect.gen(function* () {
      const server = yield* transport()
      const client = yield* transport()
      const connection = yield* client.connect(server.address)
      const accepted: TransportConnection = yield* server.accept
      accepted.setHandler({
        onStream: (s) =>
          s.setHandler({
            // the answer is written after the delivery returned, three microtasks later
            onData: (chunk) => void microtasks(3).then(() => s.write(new Uint8Array(chunk.byteLength).fill(2)))
          })
      })
      let answered: (() => void) | undefined
      const stream: TransportStream = connection.openStream({ onData: () => answered?.() })
      const exchange = () =>
        new Promise<void>((resolve) => {
          answered = resolve
          stream.write(new Uint8Array(100).fill(1))
        })
      // warm up: the stream exists on both sides, the handshake's last packets are gone
      yield* Effect.promise(exchange)
      yield* Effect.sleep('100 millis')
      const before = { server: accepted.stats().packetsSent, client: connection.stats().packetsSent }
      // each next request is written from the answer's continuation (microtasks after delivery)
      yield* Effect.promise(async () => {
        for (let i = 0; i < EXCHANGES; i++) await exchange()
      })
      const serverSent = accepted.stats().packetsSent - before.server
      const clientSent = connection.stats().packetsSent - before.client
      // two packets per exchange when the request's ACK leaves alone; a little slack for a
      // probe or an ACK of the last answer on a loaded machine
      expect(serverSent).toBeGreaterThanOrEqual(EXCHANGES)
      expect(serverSent).toBeLessThanOrEqual(EXCHANGES + 3)
      expect(clientSent).toBeLessThanOrEqual(EXCHANGES + 3)
    }).pipe(Effect.scoped)
  )
})
