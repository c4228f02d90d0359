/**
 * The cluster handshake as a state machine, one per connection. Pure and synchronous: the
 * inputs are the control messages received and the shell's own observations (the control
 * stream closed, the deadline passed); the outputs are the messages to send and, once, the
 * outcome — accepted with the peer's `Hello`, or refused with a typed reason.
 *
 * Protocol v1, both roles:
 *
 * | step | dialer                          | acceptor                               |
 * | ---- | ------------------------------- | -------------------------------------- |
 * | 1    | send Hello(nonce)               | wait Hello; check it                   |
 * | 2    | wait Hello; check it            | send Hello(nonce), send Auth(proof)    |
 * | 3    | send Auth(proof)                | wait Auth; verify it                   |
 * | 4    | wait Auth; verify it            | accepted                               |
 *
 * A check that fails sends `Refuse` and ends; a `Refuse` received ends with the peer's reason.
 * The proof (see `auth.ts`) binds both nonces, both ids, the cluster id, the role and the
 * certificate the verifier saw, so it cannot be replayed, reflected or relayed.
 *
 * Also here: the tie-break of a simultaneous dial (two connections between the same two
 * instances), decided by node id so both sides keep the same connection.
 */
import type { ControlMessage } from '@mycorrizal/wire'
import * as Certificates from '../Certificates.js'
import type { Address } from '../Transport.js'
import * as Auth from './auth.js'
import { PROTOCOL_VERSION } from './protocol.js'

type Control = ControlMessage.ControlMessage

/** Why a handshake did not succeed. A reason received in a peer's `Refuse` is kept as the peer sent it. */
export type RefusalReason =
  | 'ProtocolVersion'
  | 'ClusterId'
  | 'AuthMode'
  | 'SelfConnection'
  | 'DuplicateNodeId'
  | 'CertificateMismatch'
  | 'BadSecret'
  | 'Protocol'
  | 'ConnectionClosed'
  | 'HandshakeTimeout'
  | 'Leaving'
  | (string & {})

/** The end of a handshake that did not succeed. */
export interface Refusal {
  readonly reason: RefusalReason
  readonly message: string
  /** The peer refused (we did not decide it ourselves). */
  readonly byPeer: boolean
}

export type Outcome = { readonly _tag: 'Accepted'; readonly hello: ControlMessage.Hello } | { readonly _tag: 'Refused'; readonly refusal: Refusal }

/** What one input produced: messages to send now and, when the handshake ended, its outcome. */
export interface Step {
  readonly send: ReadonlyArray<Control>
  readonly outcome: Outcome | undefined
}

export type Role = 'dialer' | 'acceptor'

/** Everything the handshake needs to know, fixed for the connection. */
export interface HandshakeOptions {
  readonly role: Role
  readonly clusterId: string
  readonly nodeId: string
  readonly instanceId: string
  /** The address this node advertises. */
  readonly advertised: Address
  readonly authMode: 'secret' | 'tls'
  /** The cluster secret (secret mode). */
  readonly secret: Uint8Array | undefined
  /** SHA-256 of this node's own certificate. */
  readonly ownFingerprint: Uint8Array
  /** DER of the certificate the peer presented in TLS, if any. */
  readonly peerCertificate: Uint8Array | undefined
  /** This side's fresh nonce (an input, so a test can fix it). */
  readonly nonce: Uint8Array
  /** When the handshake started and how long it may take (ms, on the caller's clock). */
  readonly now: number
  readonly timeoutMs: number
}

type State =
  | { readonly _tag: 'AwaitHello' }
  | { readonly _tag: 'AwaitAuth'; readonly hello: ControlMessage.Hello; readonly dialerNonce: Uint8Array; readonly acceptorNonce: Uint8Array }
  | { readonly _tag: 'Done'; readonly outcome: Outcome }

const refusal = (reason: RefusalReason, message: string, byPeer = false): Refusal => ({ reason, message, byPeer })

/** One connection's handshake. Start it with `start()`, feed it with `receive`, `abort` and `expire`. */
export class Handshake {
  private state: State = { _tag: 'AwaitHello' }
  /** When the handshake fails with `HandshakeTimeout` (ms, on the caller's clock). */
  readonly deadline: number

  constructor(readonly options: HandshakeOptions) {
    this.deadline = options.now + options.timeoutMs
  }

  get done(): boolean {
    return this.state._tag === 'Done'
  }

  get outcome(): Outcome | undefined {
    return this.state._tag === 'Done' ? this.state.outcome : undefined
  }

  /** The first step: the dialer speaks first. */
  start(): Step {
    return this.options.role === 'dialer' ? step([this.hello()]) : step([])
  }

  /** A control message from the peer. */
  receive(message: Control): Step {
    const state = this.state
    if (state._tag === 'Done') return step([])
    if (message._tag === 'Refuse') return this.end([], { _tag: 'Refused', refusal: refusal(message.reason, message.message, true) })
    if (state._tag === 'AwaitHello') {
      if (message._tag !== 'Hello') return this.protocolError('Hello', message)
      return this.onHello(message)
    }
    if (message._tag !== 'Auth') return this.protocolError('Auth', message)
    const o = this.options
    const theirRole: Auth.ProofRole = o.role === 'dialer' ? 'acceptor' : 'dialer'
    const peerFingerprint = o.peerCertificate === undefined ? new Uint8Array(0) : Certificates.fingerprint(o.peerCertificate)
    if (o.secret !== undefined && !Auth.verify(o.secret, this.proofInput(state, theirRole, peerFingerprint), message.proof)) {
      return this.refuse(refusal('BadSecret', 'the cluster secret proof does not match'))
    }
    return this.end([], { _tag: 'Accepted', hello: state.hello })
  }

  /** Something outside the messages ended it: the stream closed, a malformed message. */
  abort(reason: RefusalReason, message: string): Step {
    if (this.state._tag === 'Done') return step([])
    return this.end([], { _tag: 'Refused', refusal: refusal(reason, message) })
  }

  /** The clock moved: past the deadline the handshake fails. */
  expire(now: number): Step {
    if (this.state._tag === 'Done' || now < this.deadline) return step([])
    return this.abort('HandshakeTimeout', `no handshake within ${this.options.timeoutMs} ms`)
  }

  private onHello(theirs: ControlMessage.Hello): Step {
    const o = this.options
    const problem = this.check(theirs)
    if (problem !== undefined) return this.refuse(problem)
    const dialer = o.role === 'dialer'
    const next = { _tag: 'AwaitAuth' as const, hello: theirs, dialerNonce: dialer ? o.nonce : theirs.nonce, acceptorNonce: dialer ? theirs.nonce : o.nonce }
    this.state = next
    const auth: Control = {
      _tag: 'Auth',
      proof: o.secret === undefined ? new Uint8Array(0) : Auth.proof(o.secret, this.proofInput(next, o.role, o.ownFingerprint))
    }
    return step(dialer ? [auth] : [this.hello(), auth])
  }

  /** Checks the peer's Hello against ours; returns why it is refused, if it is. */
  private check(h: ControlMessage.Hello): Refusal | undefined {
    const o = this.options
    if (h.protocolVersion !== PROTOCOL_VERSION) return refusal('ProtocolVersion', `protocol version ${h.protocolVersion} is not ${PROTOCOL_VERSION}`)
    if (h.clusterId !== o.clusterId) return refusal('ClusterId', `cluster id '${h.clusterId}' is not this cluster's ('${o.clusterId}')`)
    if (h.authMode !== o.authMode) return refusal('AuthMode', `peer authenticates with ${h.authMode}, this node with ${o.authMode}`)
    if (h.nodeId === o.nodeId) {
      return h.instanceId === o.instanceId
        ? refusal('SelfConnection', 'connected to itself')
        : refusal('DuplicateNodeId', `another node uses this node's id '${h.nodeId}'`)
    }
    if (o.authMode === 'tls') {
      const name = o.peerCertificate === undefined ? undefined : Certificates.commonName(o.peerCertificate)
      if (name !== h.nodeId) return refusal('CertificateMismatch', `certificate names '${name ?? 'nothing'}' but the peer claims node id '${h.nodeId}'`)
    }
    return undefined
  }

  private proofInput(state: Extract<State, { _tag: 'AwaitAuth' }>, role: Auth.ProofRole, fingerprint: Uint8Array): Auth.ProofInput {
    const dialer = this.options.role === 'dialer'
    return {
      role,
      clusterId: this.options.clusterId,
      dialerId: dialer ? this.options.nodeId : state.hello.nodeId,
      acceptorId: dialer ? state.hello.nodeId : this.options.nodeId,
      dialerNonce: state.dialerNonce,
      acceptorNonce: state.acceptorNonce,
      proverCertFingerprint: fingerprint
    }
  }

  private hello(): ControlMessage.Hello {
    const o = this.options
    return {
      _tag: 'Hello',
      protocolVersion: PROTOCOL_VERSION,
      clusterId: o.clusterId,
      nodeId: o.nodeId,
      instanceId: o.instanceId,
      host: o.advertised.host,
      port: o.advertised.port,
      authMode: o.authMode,
      nonce: o.nonce
    }
  }

  private protocolError(expected: string, got: Control): Step {
    return this.end([], { _tag: 'Refused', refusal: refusal('Protocol', `expected ${expected}, got ${got._tag}`) })
  }

  /** Refuses with a reason of ours: the peer is told why. */
  private refuse(r: Refusal): Step {
    return this.end([{ _tag: 'Refuse', reason: r.reason, message: r.message }], { _tag: 'Refused', refusal: r })
  }

  private end(send: ReadonlyArray<Control>, outcome: Outcome): Step {
    this.state = { _tag: 'Done', outcome }
    return { send, outcome }
  }
}

const step = (send: ReadonlyArray<Control>): Step => ({ send, outcome: undefined })

/** One of two connections between the same two instances, as each side describes it. */
export interface Link {
  readonly dialedByUs: boolean
  /** Transport connection id (tells two connections dialed by the same node apart). */
  readonly connectionId: string
}

/**
 * Both nodes dialed at once and both handshakes succeeded: keep the connection the smaller
 * node id dialed, so both sides keep the same one. True when `incoming` (the newer) wins.
 */
export const keepNewer = (selfId: string, peerId: string, existing: Link, incoming: Link): boolean => {
  const dialerOf = (link: Link) => (link.dialedByUs ? selfId : peerId)
  const a = dialerOf(incoming)
  const b = dialerOf(existing)
  return a < b || (a === b && incoming.connectionId < existing.connectionId)
}
