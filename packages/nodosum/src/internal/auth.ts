import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/** Bytes of a handshake nonce. */
export const NONCE_BYTES = 32

export const nonce = (): Uint8Array => new Uint8Array(randomBytes(NONCE_BYTES))

/** Which side of the handshake a proof speaks for; each side proves with its own label. */
export type ProofRole = 'dialer' | 'acceptor'

export interface ProofInput {
  readonly role: ProofRole
  readonly clusterId: string
  readonly dialerId: string
  readonly acceptorId: string
  readonly dialerNonce: Uint8Array
  readonly acceptorNonce: Uint8Array
  /** SHA-256 of the prover's own TLS certificate, as the verifier saw it: binds the proof to this TLS session's peer. */
  readonly proverCertFingerprint: Uint8Array
}

const field = (mac: ReturnType<typeof createHmac>, bytes: Uint8Array): void => {
  const len = Buffer.allocUnsafe(4)
  len.writeUInt32BE(bytes.byteLength)
  mac.update(len)
  mac.update(bytes)
}

/**
 * HMAC-SHA256 over every handshake fact, length-prefixed so no two inputs collide. Both
 * nonces make it fresh; the role label stops a reflected proof; the certificate fingerprint
 * stops a relay (a man in the middle presents its own certificate to each side).
 */
export const proof = (secret: Uint8Array, input: ProofInput): Uint8Array => {
  const mac = createHmac('sha256', secret)
  const text = (s: string) => field(mac, Buffer.from(s, 'utf8'))
  text(`mycorrizal/1 ${input.role}`)
  text(input.clusterId)
  text(input.dialerId)
  text(input.acceptorId)
  field(mac, input.dialerNonce)
  field(mac, input.acceptorNonce)
  field(mac, input.proverCertFingerprint)
  return new Uint8Array(mac.digest())
}

/** Constant-time comparison of a received proof with the expected one. */
export const verify = (secret: Uint8Array, input: ProofInput, received: Uint8Array): boolean => {
  const expected = proof(secret, input)
  return received.byteLength === expected.byteLength && timingSafeEqual(received, expected)
}
