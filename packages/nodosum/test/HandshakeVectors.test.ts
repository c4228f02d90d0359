import { createHash, createHmac, hkdfSync } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { compute } from './vectors/handshakeVectors.js'

const file = fileURLToPath(new URL('./vectors/handshake-v2.json', import.meta.url))

if (process.env['WRITE_VECTORS'] === '1') writeFileSync(file, `${JSON.stringify(compute(), null, 2)}\n`)

const stored = JSON.parse(readFileSync(file, 'utf8')) as ReturnType<typeof compute>
const unhex = (s: string) => Buffer.from(s, 'hex')

/** The construction of docs/protocol.md, written again from the document with node:crypto alone. */
const field = (b: Buffer) => {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(b.length)
  return Buffer.concat([len, b])
}
const proof = (key: Buffer, role: string, dialerId: string, acceptorId: string, fingerprint: string) =>
  createHmac('sha256', key)
    .update(
      Buffer.concat([
        field(Buffer.from(`mycorrizal/2 ${role}`)),
        field(Buffer.from(stored.inputs.clusterId)),
        field(Buffer.from(dialerId)),
        field(Buffer.from(acceptorId)),
        field(unhex(stored.inputs.dialer.nonce)),
        field(unhex(stored.inputs.acceptor.nonce)),
        field(unhex(fingerprint))
      ])
    )
    .digest('hex')

describe('handshake v2 test vectors (test/vectors/handshake-v2.json)', () => {
  it('the code produces exactly the stored vectors', () => {
    expect(compute()).toEqual(stored)
  })

  it('the stored vectors follow the documented construction: HKDF key, HMAC proofs, message order', () => {
    const e = stored.expected
    const key = Buffer.from(hkdfSync('sha256', Buffer.from(stored.inputs.secret), Buffer.from('mycorrizal/2 cluster key'), Buffer.from(stored.inputs.clusterId), 32))
    expect(key.toString('hex')).toBe(e.key)
    expect(e.dialerCertFingerprint).toBe(createHash('sha256').update(unhex(stored.inputs.dialer.certificateDer)).digest('hex'))
    // the dialer proves before it knows the acceptor's id: that field is empty in its proof
    expect(e.dialerProof).toBe(proof(key, 'dialer', stored.inputs.dialer.nodeId, '', e.dialerCertFingerprint))
    expect(e.acceptorProof).toBe(proof(key, 'acceptor', stored.inputs.dialer.nodeId, stored.inputs.acceptor.nodeId, e.acceptorCertFingerprint))
    expect(e.messages.map((m) => `${m.from} ${m.tag}`)).toEqual(['dialer Hello', 'acceptor Challenge', 'dialer Auth', 'acceptor Hello', 'acceptor Auth'])
    expect(e.controlStreamInit).toBe('01000e53595354454d2d4e4f444f53554d0000')
    expect(e.outcome).toEqual({ dialer: 'Accepted', acceptor: 'Accepted' })
    // the acceptor's first word holds nothing but its nonce: no cluster id, nothing keyed
    expect(e.messages[1]!.encoded).toBe(`0401${'00000020'}${stored.inputs.acceptor.nonce}`)
  })
})
