/**
 * Computes the protocol v2 handshake test vectors (`handshake-v2.json`) from the code: the
 * inputs fixed, every output derived. `HandshakeVectors.test.ts` checks the stored file against
 * this and recomputes the key and proofs with node:crypto alone; `WRITE_VECTORS=1 npx vitest run
 * test/HandshakeVectors.test.ts` rewrites it (only after a deliberate protocol change).
 */
import { createHash } from 'node:crypto'
import { ControlMessage, Frame, StreamInit } from '@mycorrizal/wire'
import * as Auth from '../../src/internal/auth.js'
import { Handshake, type HandshakeOptions } from '../../src/internal/handshake.js'
import { CONTROL_APP_ID, CONTROL_STREAM_NAME } from '../../src/internal/protocol.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const unhex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'))

export const inputs = {
  secret: 'q7Rk1mZ0vX9pL3sT8wY2cB6nH4jD5fG0aE1uI7oK2',
  clusterId: 'mycorrizal',
  dialer: { nodeId: 'node-a', instanceId: '0011223344556677', host: '10.0.0.1', port: 7001, nonce: '01'.repeat(32), certificateDer: 'a1a2a3' },
  acceptor: { nodeId: 'node-b', instanceId: '8899aabbccddeeff', host: 'node-b.example', port: 7002, nonce: '02'.repeat(32), certificateDer: 'b1b2b3' }
}

const options = (role: 'dialer' | 'acceptor'): HandshakeOptions => {
  const self = inputs[role]
  const peer = role === 'dialer' ? inputs.acceptor : inputs.dialer
  return {
    role,
    clusterId: inputs.clusterId,
    nodeId: self.nodeId,
    instanceId: self.instanceId,
    advertised: { host: self.host, port: self.port },
    authMode: 'secret',
    secret: new Uint8Array(Buffer.from(inputs.secret, 'utf8')),
    ownFingerprint: new Uint8Array(createHash('sha256').update(unhex(self.certificateDer)).digest()),
    peerCertificate: unhex(peer.certificateDer),
    nonce: unhex(self.nonce),
    now: 0,
    timeoutMs: 5_000
  }
}

/** Runs both cores over the inputs: every message in order, with its sender, encoded and framed. */
export const compute = () => {
  const d = new Handshake(options('dialer'))
  const a = new Handshake(options('acceptor'))
  const messages: Array<{ from: 'dialer' | 'acceptor'; tag: string; encoded: string; framed: string }> = []
  const record = (from: 'dialer' | 'acceptor', m: ControlMessage.ControlMessage) => {
    const encoded = ControlMessage.encode(m)
    messages.push({ from, tag: m._tag, encoded: hex(encoded), framed: hex(Frame.encodeMessage(encoded)) })
  }
  let toAcceptor = d.start().send
  a.start()
  for (let i = 0; i < 5 && toAcceptor.length > 0; i++) {
    const toDialer: Array<ControlMessage.ControlMessage> = []
    for (const m of toAcceptor) {
      record('dialer', m)
      toDialer.push(...a.receive(m).send)
    }
    const next: Array<ControlMessage.ControlMessage> = []
    for (const m of toDialer) {
      record('acceptor', m)
      next.push(...d.receive(m).send)
    }
    toAcceptor = next
  }
  const proofOf = (from: 'dialer' | 'acceptor') => {
    const auth = messages.find((m) => m.from === from && m.tag === 'Auth')
    return auth === undefined ? '' : hex((ControlMessage.decode(unhex(auth.encoded)) as ControlMessage.Auth).proof)
  }
  const fp = (der: string) => createHash('sha256').update(unhex(der)).digest('hex')
  return {
    description:
      'Mycorrizal control protocol v2 handshake, secret mode (docs/protocol.md). Strings are UTF-8, byte strings hex. Every output is derived from `inputs`; certificateDer stands for the DER of the certificate each side presents in TLS.',
    inputs,
    expected: {
      controlStreamInit: hex(StreamInit.encode({ appId: CONTROL_APP_ID, streamName: CONTROL_STREAM_NAME })),
      dialerCertFingerprint: fp(inputs.dialer.certificateDer),
      acceptorCertFingerprint: fp(inputs.acceptor.certificateDer),
      key: hex(Auth.deriveKey(new Uint8Array(Buffer.from(inputs.secret, 'utf8')), inputs.clusterId)),
      dialerProof: proofOf('dialer'),
      acceptorProof: proofOf('acceptor'),
      messages,
      outcome: { dialer: d.outcome?._tag, acceptor: a.outcome?._tag }
    }
  }
}
