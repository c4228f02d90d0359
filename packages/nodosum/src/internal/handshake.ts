/**
 * The cluster handshake as a state machine, one per connection. Pure and synchronous: the
 * inputs are the control messages received and the shell's own observations (the control
 * stream closed, the deadline passed); the outputs are the messages to send and, once, the
 * outcome — accepted with the peer's `Hello`, or refused with a typed reason.
 *
 * Protocol v2 (byte layout and proof in `docs/protocol.md`), both roles:
 *
 * | step | dialer                              | acceptor                                      |
 * | ---- | ----------------------------------- | --------------------------------------------- |
 * | 1    | send Hello(dialer nonce)            | wait Hello; check it                          |
 * | 2    | wait Challenge                      | send Challenge(acceptor nonce)                |
 * | 3    | send Auth(dialer proof)             | wait Auth; verify it                          |
 * | 4    | wait Hello; check it                | send Hello(acceptor nonce), Auth(its proof); accepted |
 * | 5    | wait Auth; verify it; accepted      |                                               |
 *
 * The acceptor says nothing that depends on the secret, nor the cluster id, before the dialer
 * has proven the secret: a stranger gets a random nonce and, at most, a refusal naming neither.
 * A check that fails sends `Refuse` and ends; a `Refuse` received ends with the peer's reason.
 * The proof (see `auth.ts`) binds both nonces, both ids, the cluster id, the role and the
 * certificate the verifier saw, so it cannot be replayed, reflected or relayed.
 *
 * Also here: the tie-break of a simultaneous dial (two connections between the same two
 * instances), decided by node id so both sides keep the same connection.
 */
import { isIP } from 'node:net'
import type { ControlMessage, WireErrorReason } from '@mycorrizal/wire'
import * as Certificates from '../Certificates.js'
import type { Address } from '../Transport.js'
import * as Auth from './auth.js'
import { NODE_ID_PATTERN, PROTOCOL_VERSION } from './protocol.js'

export { NODE_ID_PATTERN }

type Control = ControlMessage.ControlMessage

/**
 * Why a handshake did not succeed. A reason received in a peer's `Refuse` is kept as the peer
 * sent it; bytes that break the wire protocol end it with the `WireError` reason.
 */
export type RefusalReason =
  | 'ProtocolVersion'
  | 'ClusterId'
  | 'AuthMode'
  | 'SelfConnection'
  | 'DuplicateNodeId'
  | 'CertificateMismatch'
  | 'BadSecret'
  | 'InvalidHello'
  | 'Protocol'
  | 'ConnectionClosed'
  | 'HandshakeTimeout'
  | 'Leaving'
  | 'UnauthenticatedLimit'
  | 'UnauthenticatedBytes'
  | WireErrorReason
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
  /** The cluster secret (secret mode); the MAC key is derived from it (`Auth.deriveKey`). */
  readonly secret: Uint8Array | undefined
  /** SHA-256 of this node's own certificate. */
  readonly ownFingerprint: Uint8Array
  /** DER of the certificate the peer presented in TLS, if any. */
  readonly peerCertificate: Uint8Array | undefined
  /** This side's fresh nonce of `Auth.NONCE_BYTES` (an input, so a test can fix it). */
  readonly nonce: Uint8Array
  /** When the handshake started and how long it may take (ms, on the caller's clock). */
  readonly now: number
  readonly timeoutMs: number
}

const HOSTNAME_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/

/** A host as a Hello may advertise it: an IPv4 or IPv6 address, or a DNS hostname (RFC 1123). */
export const isValidHost = (host: string): boolean => {
  if (isIP(host) !== 0) return true
  if (host.length === 0 || host.length > 253) return false
  const name = host.endsWith('.') ? host.slice(0, -1) : host
  return name.length > 0 && name.split('.').every((label) => HOSTNAME_LABEL.test(label))
}

/** Why a Hello's own fields are unusable, whoever sent it; undefined when they are fine. */
export const invalidHello = (h: ControlMessage.Hello): string | undefined => {
  if (!NODE_ID_PATTERN.test(h.nodeId)) return 'node id is not 1 to 128 of A-Z a-z 0-9 . _ : - starting alphanumeric'
  if (h.instanceId.length < 1 || h.instanceId.length > 64) return 'instance id must be 1 to 64 characters'
  if (!isValidHost(h.host)) return 'host is neither an IP address nor a hostname'
  if (!Number.isInteger(h.port) || h.port < 1 || h.port > 65535) return `port ${h.port} is not 1 to 65535`
  if (h.nonce.byteLength !== Auth.NONCE_BYTES) return `nonce is ${h.nonce.byteLength} bytes, not ${Auth.NONCE_BYTES}`
  return undefined
}

type State =
  | { readonly _tag: 'AwaitHello' }
  /** Dialer: its Hello sent, the acceptor's nonce awaited. */
  | { readonly _tag: 'AwaitChallenge' }
  /** Acceptor: the dialer's Hello checked, its proof awaited. Dialer: the acceptor's proof awaited. */
  | { readonly _tag: 'AwaitAuth'; readonly hello: ControlMessage.Hello; readonly dialerNonce: Uint8Array; readonly acceptorNonce: Uint8Array }
  /** Dialer: its proof sent, the acceptor's Hello awaited. */
  | { readonly _tag: 'AwaitPeerHello'; readonly acceptorNonce: Uint8Array }
  | { readonly _tag: 'Done'; readonly outcome: Outcome }

type Keyed = Extract<State, { _tag: 'AwaitAuth' }>

const refusal = (reason: RefusalReason, message: string, byPeer = false): Refusal => ({ reason, message, byPeer })

const BAD_SECRET = 'the cluster secret proof does not match'

/** One connection's handshake. Start it with `start()`, feed it with `receive`, `abort` and `expire`. */
export class Handshake {
  private state: State
  /** When the handshake fails with `HandshakeTimeout` (ms, on the caller's clock). */
  readonly deadline: number
  /** The MAC key (secret mode). */
  private readonly key: Uint8Array | undefined

  constructor(readonly options: HandshakeOptions) {
    this.deadline = options.now + options.timeoutMs
    this.key = options.secret === undefined ? undefined : Auth.deriveKey(options.secret, options.clusterId)
    this.state = options.role === 'dialer' ? { _tag: 'AwaitChallenge' } : { _tag: 'AwaitHello' }
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
    // a Hello of another version, where ever it comes, is a version mismatch, not a protocol error
    if (message._tag === 'Hello' && message.protocolVersion !== PROTOCOL_VERSION) return this.refuse(versionMismatch(message.protocolVersion))
    switch (state._tag) {
      case 'AwaitHello':
        return message._tag === 'Hello' ? this.onDialerHello(message) : this.protocolError('Hello', message)
      case 'AwaitChallenge':
        return message._tag === 'Challenge' ? this.onChallenge(message) : this.protocolError('Challenge', message)
      case 'AwaitPeerHello':
        return message._tag === 'Hello' ? this.onAcceptorHello(state, message) : this.protocolError('Hello', message)
      case 'AwaitAuth':
        return message._tag === 'Auth' ? this.onAuth(state, message) : this.protocolError('Auth', message)
    }
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

  /** Acceptor: the dialer's Hello. Checked, answered with nothing but a fresh nonce. */
  private onDialerHello(theirs: ControlMessage.Hello): Step {
    const o = this.options
    const problem = this.check(theirs)
    if (problem !== undefined) return this.refuse(problem)
    this.state = { _tag: 'AwaitAuth', hello: theirs, dialerNonce: theirs.nonce, acceptorNonce: o.nonce }
    return step([{ _tag: 'Challenge', nonce: o.nonce }])
  }

  /** Dialer: the acceptor's nonce. Answered with this side's proof. */
  private onChallenge(challenge: ControlMessage.Challenge): Step {
    if (challenge.nonce.byteLength !== Auth.NONCE_BYTES) {
      return this.refuse(refusal('Protocol', `challenge nonce is ${challenge.nonce.byteLength} bytes, not ${Auth.NONCE_BYTES}`))
    }
    this.state = { _tag: 'AwaitPeerHello', acceptorNonce: challenge.nonce }
    return step([{ _tag: 'Auth', proof: this.ownProof(challenge.nonce) }])
  }

  /** Dialer: the acceptor's Hello, sent only after it verified this side's proof. */
  private onAcceptorHello(state: Extract<State, { _tag: 'AwaitPeerHello' }>, theirs: ControlMessage.Hello): Step {
    const problem = this.check(theirs)
    if (problem !== undefined) return this.refuse(problem)
    if (!bytesEqual(theirs.nonce, state.acceptorNonce)) return this.refuse(refusal('Protocol', "the acceptor's Hello carries another nonce than its Challenge"))
    this.state = { _tag: 'AwaitAuth', hello: theirs, dialerNonce: this.options.nonce, acceptorNonce: state.acceptorNonce }
    return step([])
  }

  /** The peer's proof: the acceptor verifies it and answers with its Hello and proof; the dialer verifies and is done. */
  private onAuth(state: Keyed, message: ControlMessage.Auth): Step {
    const o = this.options
    const theirRole: Auth.ProofRole = o.role === 'dialer' ? 'acceptor' : 'dialer'
    const peerFingerprint = o.peerCertificate === undefined ? new Uint8Array(0) : Certificates.fingerprint(o.peerCertificate)
    if (this.key !== undefined && !Auth.verify(this.key, this.proofInput(state, theirRole, peerFingerprint), message.proof)) {
      return this.refuse(refusal('BadSecret', BAD_SECRET))
    }
    const accepted: Outcome = { _tag: 'Accepted', hello: state.hello }
    if (o.role === 'dialer') return this.end([], accepted)
    const same = this.sameId(state.hello)
    if (same !== undefined) return this.refuse(same)
    return this.end([this.hello(), { _tag: 'Auth', proof: this.ownProof(state.acceptorNonce) }], accepted)
  }

  /** This side's proof: the dialer proves before it knows the acceptor's id (an empty field in its transcript). */
  private ownProof(acceptorNonce: Uint8Array): Uint8Array {
    const o = this.options
    if (this.key === undefined) return new Uint8Array(0)
    const state = this.state
    if (o.role === 'dialer') return Auth.proof(this.key, transcript('dialer', o.clusterId, o.nodeId, '', o.nonce, acceptorNonce, o.ownFingerprint))
    const keyed = state as Keyed
    return Auth.proof(this.key, transcript('acceptor', o.clusterId, keyed.hello.nodeId, o.nodeId, keyed.dialerNonce, acceptorNonce, o.ownFingerprint))
  }

  /** Checks the peer's Hello against ours; returns why it is refused, if it is. Names nothing of this node's secret or cluster id. */
  private check(h: ControlMessage.Hello): Refusal | undefined {
    const o = this.options
    if (h.protocolVersion !== PROTOCOL_VERSION) return versionMismatch(h.protocolVersion)
    const invalid = invalidHello(h)
    if (invalid !== undefined) return refusal('InvalidHello', `invalid Hello: ${invalid}`)
    if (h.clusterId !== o.clusterId) return refusal('ClusterId', "the peer's cluster id is not this node's")
    if (h.authMode !== o.authMode) return refusal('AuthMode', `peer authenticates with ${h.authMode}, this node with ${o.authMode}`)
    // the acceptor compares the dialer's id with its own only once the dialer proved: before,
    // a refusal naming it would confirm a stranger's guess of this node's id
    if (o.role === 'dialer') {
      const same = this.sameId(h)
      if (same !== undefined) return same
    }
    if (o.authMode === 'tls') {
      const name = o.peerCertificate === undefined ? undefined : Certificates.commonName(o.peerCertificate)
      if (name !== h.nodeId) return refusal('CertificateMismatch', `certificate names '${name ?? 'nothing'}' but the peer claims node id '${h.nodeId}'`)
    }
    return undefined
  }

  /** The peer claims this node's id: this node itself (same instance) or another node with the same id. */
  private sameId(h: ControlMessage.Hello): Refusal | undefined {
    const o = this.options
    if (h.nodeId !== o.nodeId) return undefined
    return h.instanceId === o.instanceId ? refusal('SelfConnection', 'connected to itself') : refusal('DuplicateNodeId', `another node uses this node's id '${h.nodeId}'`)
  }

  /** What the peer's proof covers, as this side saw the connection. */
  private proofInput(state: Keyed, role: Auth.ProofRole, fingerprint: Uint8Array): Auth.ProofInput {
    const o = this.options
    const dialerId = o.role === 'dialer' ? o.nodeId : state.hello.nodeId
    const acceptorId = role === 'dialer' ? '' : o.role === 'dialer' ? state.hello.nodeId : o.nodeId
    return transcript(role, o.clusterId, dialerId, acceptorId, state.dialerNonce, state.acceptorNonce, fingerprint)
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

const transcript = (
  role: Auth.ProofRole,
  clusterId: string,
  dialerId: string,
  acceptorId: string,
  dialerNonce: Uint8Array,
  acceptorNonce: Uint8Array,
  proverCertFingerprint: Uint8Array
): Auth.ProofInput => ({ role, clusterId, dialerId, acceptorId, dialerNonce, acceptorNonce, proverCertFingerprint })

const versionMismatch = (theirs: number): Refusal =>
  refusal('ProtocolVersion', `peer speaks protocol version ${theirs}, this node version ${PROTOCOL_VERSION}: versions ${theirs} and ${PROTOCOL_VERSION} do not interoperate`)

const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean => a.byteLength === b.byteLength && a.every((v, i) => v === b[i])

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
