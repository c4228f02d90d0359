import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

/** Bytes of a handshake nonce. */
export const NONCE_BYTES = 32

/** Bytes of the MAC key derived from the cluster secret. */
export const KEY_BYTES = 32

/** HKDF salt of the key derivation (ASCII), fixed for protocol v2. */
export const KDF_LABEL = 'mycorrizal/2 cluster key'

/** Prefix of the label that opens every proof (ASCII), followed by the prover's role. */
export const PROOF_LABEL = 'mycorrizal/2'

export const nonce = (): Uint8Array => new Uint8Array(randomBytes(NONCE_BYTES))

/** Which side of the handshake a proof speaks for; each side proves with its own label. */
export type ProofRole = 'dialer' | 'acceptor'

export interface ProofInput {
  readonly role: ProofRole
  readonly clusterId: string
  readonly dialerId: string
  /** Empty in the dialer's proof: the dialer proves before the acceptor has said who it is. */
  readonly acceptorId: string
  readonly dialerNonce: Uint8Array
  readonly acceptorNonce: Uint8Array
  /** SHA-256 of the prover's own TLS certificate, as the verifier saw it: binds the proof to this TLS session's peer. */
  readonly proverCertFingerprint: Uint8Array
}

/**
 * The MAC key of a cluster: HKDF-SHA256 with the secret (its UTF-8 bytes) as input keying
 * material, `KDF_LABEL` as salt and the cluster id (UTF-8) as info, 32 bytes. The secret itself
 * never keys a MAC; two clusters sharing a secret still have different keys.
 */
export const deriveKey = (secret: Uint8Array, clusterId: string): Uint8Array =>
  new Uint8Array(hkdfSync('sha256', secret, Buffer.from(KDF_LABEL, 'ascii'), Buffer.from(clusterId, 'utf8'), KEY_BYTES))

const field = (mac: ReturnType<typeof createHmac>, bytes: Uint8Array): void => {
  const len = Buffer.allocUnsafe(4)
  len.writeUInt32BE(bytes.byteLength)
  mac.update(len)
  mac.update(bytes)
}

/**
 * HMAC-SHA256 with the derived key over every handshake fact, each `[u32 BE length][bytes]` so
 * no two inputs collide: the label `mycorrizal/2 <role>`, cluster id, dialer id, acceptor id
 * (UTF-8; empty in the dialer's proof), dialer nonce, acceptor nonce, prover certificate fingerprint. Both nonces make it
 * fresh; the role label stops a reflected proof; the certificate fingerprint stops a relay (a
 * man in the middle presents its own certificate to each side).
 */
export const proof = (key: Uint8Array, input: ProofInput): Uint8Array => {
  const mac = createHmac('sha256', key)
  const text = (s: string) => field(mac, Buffer.from(s, 'utf8'))
  text(`${PROOF_LABEL} ${input.role}`)
  text(input.clusterId)
  text(input.dialerId)
  text(input.acceptorId)
  field(mac, input.dialerNonce)
  field(mac, input.acceptorNonce)
  field(mac, input.proverCertFingerprint)
  return new Uint8Array(mac.digest())
}

/** Constant-time comparison of a received proof with the expected one. */
export const verify = (key: Uint8Array, input: ProofInput, received: Uint8Array): boolean => {
  const expected = proof(key, input)
  return received.byteLength === expected.byteLength && timingSafeEqual(received, expected)
}
