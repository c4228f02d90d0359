import { describe, expect, it } from 'vitest'
import { ControlMessage } from '@mycorrizal/wire'
import { Handshake, type HandshakeOptions, isValidHost, keepNewer, type Step } from '../src/internal/handshake.js'
import { PROTOCOL_VERSION } from '../src/internal/protocol.js'

const secret = new Uint8Array(Buffer.from('handshake-secret'))

const options = (role: HandshakeOptions['role'], nodeId: string, overrides: Partial<HandshakeOptions> = {}): HandshakeOptions => ({
  role,
  clusterId: 'blue',
  nodeId,
  instanceId: `${nodeId}-1`,
  advertised: { host: nodeId, port: 7001 },
  authMode: 'secret',
  secret,
  // no certificates: each side proves over an empty fingerprint and expects the same of the other
  ownFingerprint: new Uint8Array(0),
  peerCertificate: undefined,
  nonce: new Uint8Array(32).fill(nodeId.charCodeAt(0)),
  now: 1_000,
  timeoutMs: 5_000,
  ...overrides
})

/** Delivers every message one side sends to the other until both are done (bounded). */
const converse = (dialer: Handshake, acceptor: Handshake) => {
  const transcript: Array<string> = []
  let toAcceptor: ReadonlyArray<ControlMessage.ControlMessage> = dialer.start().send
  let toDialer: ReadonlyArray<ControlMessage.ControlMessage> = acceptor.start().send
  for (let i = 0; i < 10 && (toAcceptor.length > 0 || toDialer.length > 0); i++) {
    const nextToDialer: Array<ControlMessage.ControlMessage> = []
    const nextToAcceptor: Array<ControlMessage.ControlMessage> = []
    for (const m of toAcceptor) {
      transcript.push(`d>a ${m._tag}`)
      nextToDialer.push(...acceptor.receive(m).send)
    }
    for (const m of toDialer) {
      transcript.push(`a>d ${m._tag}`)
      nextToAcceptor.push(...dialer.receive(m).send)
    }
    toAcceptor = nextToAcceptor
    toDialer = nextToDialer
  }
  return transcript
}

const refusalOf = (h: Handshake) => (h.outcome?._tag === 'Refused' ? h.outcome.refusal : undefined)

describe('Handshake core', () => {
  it('dialer and acceptor with the same secret accept each other in protocol order', () => {
    const d = new Handshake(options('dialer', 'a'))
    const a = new Handshake(options('acceptor', 'b'))
    const transcript = converse(d, a)
    expect(transcript).toEqual(['d>a Hello', 'a>d Challenge', 'd>a Auth', 'a>d Hello', 'a>d Auth'])
    expect(d.outcome?._tag === 'Accepted' && d.outcome.hello.nodeId).toBe('b')
    expect(a.outcome?._tag === 'Accepted' && a.outcome.hello.nodeId).toBe('a')
  })

  it('a wrong secret is refused with BadSecret and the peer is told why', () => {
    const d = new Handshake(options('dialer', 'x', { secret: new Uint8Array(Buffer.from('other')) }))
    const a = new Handshake(options('acceptor', 'b'))
    converse(d, a)
    expect(refusalOf(a)).toEqual({ reason: 'BadSecret', message: 'the cluster secret proof does not match', byPeer: false })
    // the dialer learns it from the acceptor's refusal: it never saw a proof of the acceptor's
    expect(refusalOf(d)).toEqual({ reason: 'BadSecret', message: 'the cluster secret proof does not match', byPeer: true })
  })

  it('a stranger gets nothing derived from the secret, nor the cluster id: a nonce, then a refusal naming neither', () => {
    const a = new Handshake(options('acceptor', 'b', { clusterId: 'cluster-blue' }))
    const toStranger: Array<ControlMessage.ControlMessage> = [...a.start().send]
    // the stranger knows the cluster id here (the worst case) but not the secret
    const stranger = new Handshake(options('dialer', 'x', { clusterId: 'cluster-blue', secret: new Uint8Array(Buffer.from('a-guess')) }))
    const hello = stranger.start().send[0]!
    const answer = a.receive(hello).send
    toStranger.push(...answer)
    expect(answer.map((m) => m._tag)).toEqual(['Challenge'])
    const challenge = answer[0] as ControlMessage.Challenge
    expect(challenge.nonce).toEqual(options('acceptor', 'b').nonce)
    toStranger.push(...a.receive(stranger.receive(challenge).send[0]!).send)
    expect(toStranger.map((m) => m._tag)).toEqual(['Challenge', 'Refuse'])
    expect(refusalOf(a)?.reason).toBe('BadSecret')
    const seen = Buffer.from(toStranger.map((m) => Buffer.from(ControlMessage.encode(m)).toString('hex')).join(''), 'hex')
    expect(seen.includes(Buffer.from('cluster-blue'))).toBe(false)
    // nothing keyed with the secret: no Auth, no Hello of the acceptor
    expect(toStranger.some((m) => m._tag === 'Auth' || m._tag === 'Hello')).toBe(false)
  })

  it('a wrong cluster id is refused without naming either cluster id', () => {
    const a = new Handshake(options('acceptor', 'b', { clusterId: 'cluster-blue' }))
    const step = a.receive(new Handshake(options('dialer', 'x', { clusterId: 'cluster-green' })).start().send[0]!)
    expect(refusalOf(a)?.reason).toBe('ClusterId')
    const refuse = step.send[0] as ControlMessage.Refuse
    expect(refuse._tag).toBe('Refuse')
    expect(refuse.message).not.toContain('cluster-blue')
    expect(refuse.message).not.toContain('cluster-green')
  })

  it('a protocol v1 Hello is refused with a reason naming both versions', () => {
    const a = new Handshake(options('acceptor', 'b'))
    const v1: ControlMessage.Hello = { ...(new Handshake(options('dialer', 'a')).start().send[0] as ControlMessage.Hello), protocolVersion: 1 }
    const step = a.receive(v1)
    expect(PROTOCOL_VERSION).toBe(2)
    expect(refusalOf(a)?.reason).toBe('ProtocolVersion')
    expect(refusalOf(a)?.message).toContain('version 1')
    expect(refusalOf(a)?.message).toContain('version 2')
    expect(step.send).toEqual([{ _tag: 'Refuse', reason: 'ProtocolVersion', message: refusalOf(a)?.message }])
    // a dialer answered by a Hello of another version (a v1 acceptor) refuses the same way
    const d = new Handshake(options('dialer', 'a'))
    d.start()
    d.receive({ ...v1, nodeId: 'b' })
    expect(refusalOf(d)?.reason).toBe('ProtocolVersion')
  })

  it.each([
    ['a node id outside the pattern', { nodeId: '../etc' }],
    ['an empty node id', { nodeId: '' }],
    ['a host that is no hostname', { host: 'evil host;rm' }],
    ['a host label too long', { host: `${'a'.repeat(64)}.example` }],
    ['port 0', { port: 0 }],
    ['a short nonce', { nonce: new Uint8Array(4) }]
  ])('a Hello with %s is refused as InvalidHello', (_what, fields) => {
    const a = new Handshake(options('acceptor', 'b'))
    const hello = { ...(new Handshake(options('dialer', 'a')).start().send[0] as ControlMessage.Hello), ...fields }
    const step = a.receive(hello)
    expect(refusalOf(a)?.reason).toBe('InvalidHello')
    expect(step.send.map((m) => m._tag)).toEqual(['Refuse'])
  })

  it.each([['10.0.0.1'], ['::1'], ['node-1.mycorrizal.svc.cluster.local'], ['localhost']])('a Hello advertising host %s is valid', (host) => {
    expect(isValidHost(host)).toBe(true)
  })

  it('the proof is bound to the certificate the verifier saw: a relayed proof is refused', () => {
    // the acceptor sees a certificate that is not the one the dialer proves with (a relay in between)
    const d = new Handshake(options('dialer', 'a'))
    const a = new Handshake(options('acceptor', 'b', { peerCertificate: new Uint8Array([1, 2, 3]) }))
    converse(d, a)
    expect(refusalOf(a)?.reason).toBe('BadSecret')
  })

  it.each([
    ['ClusterId', { clusterId: 'green' }],
    ['ProtocolVersion', {}],
    ['AuthMode', { authMode: 'tls' as const }]
  ])('a Hello that does not match is refused: %s', (reason, overrides) => {
    const a = new Handshake(options('acceptor', 'b'))
    a.start()
    const hello = new Handshake(options('dialer', 'a', overrides)).start().send[0] as ControlMessage.Hello
    const step = a.receive(reason === 'ProtocolVersion' ? { ...hello, protocolVersion: PROTOCOL_VERSION + 1 } : hello)
    expect(step.outcome?._tag).toBe('Refused')
    expect(refusalOf(a)?.reason).toBe(reason)
    expect(step.send.map((m) => m._tag)).toEqual(['Refuse'])
  })

  it('the same node id, once the dialer proved: itself (same instance) or a duplicate (another instance)', () => {
    const self = new Handshake(options('acceptor', 'a'))
    expect(converse(new Handshake(options('dialer', 'a')), self)).toEqual(['d>a Hello', 'a>d Challenge', 'd>a Auth', 'a>d Refuse'])
    expect(refusalOf(self)?.reason).toBe('SelfConnection')
    const dup = new Handshake(options('acceptor', 'a'))
    converse(new Handshake(options('dialer', 'a', { instanceId: 'a-2' })), dup)
    expect(refusalOf(dup)?.reason).toBe('DuplicateNodeId')
  })

  it("a dialer without the secret that claims the acceptor's id is told BadSecret: nothing confirms its guess of the id", () => {
    const acceptor = new Handshake(options('acceptor', 'a'))
    const dialer = new Handshake(options('dialer', 'a', { instanceId: 'a-2', secret: new Uint8Array(Buffer.from('other')) }))
    expect(converse(dialer, acceptor)).toEqual(['d>a Hello', 'a>d Challenge', 'd>a Auth', 'a>d Refuse'])
    expect(refusalOf(acceptor)?.reason).toBe('BadSecret')
    expect(refusalOf(dialer)?.reason).toBe('BadSecret')
  })

  it('a Refuse from the peer ends the handshake with the peer reason, sending nothing', () => {
    const d = new Handshake(options('dialer', 'a'))
    d.start()
    const step: Step = d.receive({ _tag: 'Refuse', reason: 'ClusterId', message: 'no' })
    expect(step.send).toEqual([])
    expect(refusalOf(d)).toEqual({ reason: 'ClusterId', message: 'no', byPeer: true })
  })

  it('an unexpected message is a protocol error; later input changes nothing', () => {
    const a = new Handshake(options('acceptor', 'b'))
    a.receive({ _tag: 'Ping', seq: 1, sentAt: 0 })
    expect(refusalOf(a)?.reason).toBe('Protocol')
    expect(a.receive(new Handshake(options('dialer', 'a')).start().send[0]!)).toEqual({ send: [], outcome: undefined })
  })

  it('expires at its deadline, not before', () => {
    const d = new Handshake(options('dialer', 'a', { now: 1_000, timeoutMs: 5_000 }))
    d.start()
    expect(d.expire(5_999).outcome).toBeUndefined()
    expect(d.expire(6_000).outcome?._tag).toBe('Refused')
    expect(refusalOf(d)?.reason).toBe('HandshakeTimeout')
  })
})

describe('simultaneous-dial tie-break', () => {
  it('both sides keep the connection the smaller node id dialed', () => {
    // node a sees: existing = the one b dialed, incoming = the one a dialed
    const atA = keepNewer('a', 'b', { dialedByUs: false, connectionId: 'c1' }, { dialedByUs: true, connectionId: 'c2' })
    // node b sees the same two connections the other way round
    const atB = keepNewer('b', 'a', { dialedByUs: false, connectionId: 'c2' }, { dialedByUs: true, connectionId: 'c1' })
    expect(atA).toBe(true) // a keeps the one it dialed (the newer at a)
    expect(atB).toBe(false) // b keeps the existing one, which a dialed
  })

  it('two connections dialed by the same node: the smaller connection id wins', () => {
    expect(keepNewer('a', 'b', { dialedByUs: true, connectionId: 'c2' }, { dialedByUs: true, connectionId: 'c1' })).toBe(true)
    expect(keepNewer('a', 'b', { dialedByUs: true, connectionId: 'c1' }, { dialedByUs: true, connectionId: 'c2' })).toBe(false)
  })
})
