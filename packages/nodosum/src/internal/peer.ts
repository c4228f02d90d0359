/**
 * One authenticated connection of the cluster shell: the peer's identity, its control stream
 * and the handlers that feed the shell once the handshake is done.
 */
import { ControlMessage, Decoder, type WireError } from '@mycorrizal/wire'
import type { StreamAcceptor } from '../Nodosum.js'
import { ErrorCode } from '../PeerStream.js'
import type { Address, TransportConnection, TransportStream } from '../Transport.js'
import { FramedStream } from './framed.js'
import { CONTROL_APP_ID } from './protocol.js'
import type { Session } from './session.js'

export interface Peer {
  readonly id: string
  readonly address: Address
  readonly connection: TransportConnection
  readonly control: FramedStream
  readonly dialedByUs: boolean
  rttMicros: number | undefined
  pingSeq: number
  /**
   * What the peer's application streams may reserve for messages at their declared length
   * before their bytes arrive: twice the largest message (past it they are gathered as they
   * arrive), so a peer that claims large messages and sends nothing holds little memory.
   */
  budget?: Decoder.ReserveBudget
}

/** The reservation budget of a peer's application streams (made on first use). */
export const budgetOf = (peer: Peer, maxMessageSize: number): Decoder.ReserveBudget => (peer.budget ??= Decoder.makeBudget(2 * maxMessageSize))

/** What the shell does with a peer's traffic. */
export interface PeerEvents {
  readonly onControl: (peer: Peer, message: ControlMessage.ControlMessage) => void
  readonly onStream: (peer: Peer, stream: TransportStream) => void
  /** The connection or its control stream closed; `duplicate`: the peer closed it as a simultaneous-dial loser. */
  readonly onLost: (peer: Peer, reason: string, duplicate: boolean) => void
  readonly onMalformed: (peer: Peer, error: WireError) => void
}

/** Takes over a connection whose handshake succeeded. */
export const attach = (connection: TransportConnection, session: Session, dialedByUs: boolean, events: PeerEvents): Peer => {
  const { hello, control } = session
  const peer: Peer = { id: hello.nodeId, address: { host: hello.host, port: hello.port }, connection, control, dialedByUs, rttMicros: undefined, pingSeq: 0 }
  connection.setHandler({
    onStream: (stream) => events.onStream(peer, stream),
    onClose: (error) => events.onLost(peer, error?.message ?? 'connection closed', error?.code === ErrorCode.DuplicateConnection)
  })
  control.setHandler({
    onMessage: (bytes) => {
      let message: ControlMessage.ControlMessage
      try {
        message = ControlMessage.decode(bytes)
      } catch (e) {
        events.onMalformed(peer, e as WireError)
        return connection.close(ErrorCode.ProtocolError, 'malformed control message')
      }
      events.onControl(peer, message)
    },
    onClose: () => events.onLost(peer, 'control stream closed', false)
  })
  return peer
}

export const send = (peer: Peer, message: ControlMessage.ControlMessage): void => {
  if (!peer.control.isClosed()) peer.control.send(ControlMessage.encode(message))
}

/** An application stream the peer opened: routed by its STREAM_INIT to the acceptor, else reset. */
export const acceptStream = (peer: Peer, stream: TransportStream, maxMessageSize: number, acceptor: () => StreamAcceptor | undefined): void => {
  new FramedStream(
    stream,
    peer.id,
    true,
    maxMessageSize,
    undefined,
    (init, framed) => {
      const take = acceptor()
      if (init.appId === CONTROL_APP_ID || take === undefined || !take(framed)) framed.reset(ErrorCode.UnknownStream)
    },
    budgetOf(peer, maxMessageSize)
  )
}
