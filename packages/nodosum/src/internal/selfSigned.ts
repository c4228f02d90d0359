/**
 * The throw-away self-signed certificate of cluster-secret mode, written with `node:crypto` (an
 * ECDSA P-256 key pair, the signature) and a DER writer of our own that knows only what one such
 * certificate needs: the TBSCertificate, the `ecdsa-with-SHA256` algorithm identifier, the
 * validity, a subject (= issuer) common name, the SubjectPublicKeyInfo exactly as
 * `KeyObject.export({ format: 'der', type: 'spki' })` gives it, and three fixed extensions.
 *
 * Written here rather than with `@peculiar/x509` (which the CA and node certificates of mTLS and
 * `mycorrizal certs` still use) because that library, with `reflect-metadata` which it needs,
 * costs about 21 MiB of RSS and 0.2 s when a node starts, in the default mode, for a certificate
 * whose only job is to let TLS run: in this mode nobody verifies it, the cluster handshake binds
 * its proofs to the certificate's SHA-256 (docs/protocol.md §1, §5).
 *
 * The certificate: X.509 v3, a random positive 128-bit serial, `CN=<node id>` as subject and
 * issuer (UTF8String), the validity as given, extensions basicConstraints (critical, not a CA),
 * keyUsage (critical, digitalSignature and keyAgreement) and extKeyUsage (serverAuth,
 * clientAuth), signed with the key it certifies.
 *
 * @internal
 */
import { generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto'

// -- a minimal DER writer (X.690): definite lengths, one tag byte ---------------------------------

/** One DER element: tag, length, contents. */
const tlv = (tag: number, contents: Uint8Array): Uint8Array => {
  const n = contents.byteLength
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  const out = new Uint8Array(1 + length.length + n)
  out[0] = tag
  out.set(length, 1)
  out.set(contents, 1 + length.length)
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

/** The DER of a SEQUENCE of the given elements. */
export const sequence = (...items: ReadonlyArray<Uint8Array>): Uint8Array => tlv(0x30, concat(items))
const set = (...items: ReadonlyArray<Uint8Array>): Uint8Array => tlv(0x31, concat(items))
/** `[n] EXPLICIT`: a constructed context-specific tag around one element. */
const explicit = (n: number, item: Uint8Array): Uint8Array => tlv(0xa0 | n, item)
const octetString = (bytes: Uint8Array): Uint8Array => tlv(0x04, bytes)
const utf8String = (text: string): Uint8Array => tlv(0x0c, new TextEncoder().encode(text))
const booleanTrue = tlv(0x01, Uint8Array.of(0xff))
/** A BIT STRING with `unused` bits unused in its last byte. */
export const bitString = (bytes: Uint8Array, unused = 0): Uint8Array => tlv(0x03, concat([Uint8Array.of(unused), bytes]))

/**
 * A non-negative INTEGER from its big-endian magnitude, in DER's minimal form: leading zero bytes
 * dropped, one put back when the high bit would read as a sign.
 */
export const unsignedInteger = (magnitude: Uint8Array): Uint8Array => {
  let start = 0
  while (start < magnitude.byteLength - 1 && magnitude[start] === 0) start++
  const digits = magnitude.subarray(start)
  return tlv(0x02, digits.byteLength === 0 ? Uint8Array.of(0) : digits[0]! & 0x80 ? concat([Uint8Array.of(0), digits]) : digits)
}

/** An OBJECT IDENTIFIER from its dotted form. */
export const oid = (dotted: string): Uint8Array => {
  const arcs = dotted.split('.').map(Number)
  const bytes: Array<number> = []
  const base128 = (value: number) => {
    const digits = [value & 0x7f]
    for (let v = Math.floor(value / 128); v > 0; v = Math.floor(v / 128)) digits.unshift((v & 0x7f) | 0x80)
    bytes.push(...digits)
  }
  base128(arcs[0]! * 40 + arcs[1]!)
  for (const arc of arcs.slice(2)) base128(arc)
  return tlv(0x06, Uint8Array.from(bytes))
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, to the second, in UTC. */
export const time = (date: Date): Uint8Array => {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`
  const year = date.getUTCFullYear()
  return year < 2050 ? tlv(0x17, new TextEncoder().encode(digits.slice(2))) : tlv(0x18, new TextEncoder().encode(digits))
}

// -- the certificate ------------------------------------------------------------------------------

/** `ecdsa-with-SHA256` (RFC 5758 §3.2): no parameters. */
const ecdsaWithSha256 = sequence(oid('1.2.840.10045.4.3.2'))

/** A Name of one RDN: `CN=<commonName>`. */
const commonNameName = (commonName: string): Uint8Array => sequence(set(sequence(oid('2.5.4.3'), utf8String(commonName))))

const extension = (id: string, critical: boolean, value: Uint8Array): Uint8Array =>
  critical ? sequence(oid(id), booleanTrue, octetString(value)) : sequence(oid(id), octetString(value))

const extensions = sequence(
  // basicConstraints: cA absent (FALSE), no path length
  extension('2.5.29.19', true, sequence()),
  // keyUsage: digitalSignature (bit 0) and keyAgreement (bit 4), 3 unused bits
  extension('2.5.29.15', true, bitString(Uint8Array.of(0x88), 3)),
  // extKeyUsage: serverAuth, clientAuth
  extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')))
)

/** What a self-signed certificate is made of. */
export interface SelfSignedOptions {
  readonly commonName: string
  readonly notBefore: Date
  readonly notAfter: Date
}

/** A self-signed certificate and its private key, both DER (the key PKCS#8). */
export interface SelfSignedDer {
  readonly cert: Uint8Array
  readonly key: Uint8Array
}

/** An ECDSA P-256 key pair, as `generateKeyPair('ec', { namedCurve: 'P-256' })` gives it. */
export interface KeyPair {
  readonly privateKey: KeyObject
  readonly publicKey: KeyObject
}

/** A self-signed certificate for an ECDSA P-256 key pair (by default a fresh one, made synchronously). */
export const selfSigned = (options: SelfSignedOptions, keys: KeyPair = generateKeyPairSync('ec', { namedCurve: 'P-256' })): SelfSignedDer => {
  const { privateKey, publicKey } = keys
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x40 // positive, 16 bytes in DER, never a leading zero
  const name = commonNameName(options.commonName)
  const tbs = sequence(
    explicit(0, unsignedInteger(Uint8Array.of(2))), // version v3
    unsignedInteger(serial),
    ecdsaWithSha256,
    name,
    sequence(time(options.notBefore), time(options.notAfter)),
    name,
    new Uint8Array(publicKey.export({ format: 'der', type: 'spki' })),
    explicit(3, extensions)
  )
  // ECDSA-Sig-Value, DER (node's default dsaEncoding)
  const signature = sign('sha256', tbs, privateKey)
  return {
    cert: sequence(tbs, ecdsaWithSha256, bitString(new Uint8Array(signature))),
    key: new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }))
  }
}
