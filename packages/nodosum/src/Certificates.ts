/**
 * Certificates for the cluster's TLS: a cluster CA, node certificates signed by it (mTLS),
 * and throw-away self-signed certificates for cluster-secret mode. ECDSA P-256 with SHA-256.
 * The CA and node certificates are built with `@peculiar/x509` over Node's WebCrypto; the
 * self-signed one with `node:crypto` and a DER writer of our own (`internal/selfSigned.ts`), so
 * that starting a node in the default mode never loads that library.
 *
 * `@peculiar/x509` (with `reflect-metadata`, which it needs) is loaded on first use, inside the
 * Effect that makes a CA or node certificate: importing this module, making a self-signed
 * certificate, or reading a certificate's name or fingerprint, does not load it (about a fifth of
 * a second and 21 MiB).
 *
 * @since 0.1.0
 */
import type * as X509Module from '@peculiar/x509'
import * as Effect from 'effect/Effect'
import { X509Certificate, createHash, generateKeyPair, webcrypto } from 'node:crypto'
import { isIP } from 'node:net'
import { selfSigned } from './internal/selfSigned.js'

type X509 = typeof X509Module

let loading: Promise<X509> | undefined
/** `@peculiar/x509`, loaded once and bound to Node's WebCrypto. */
const loadX509 = (): Promise<X509> =>
  (loading ??= import('reflect-metadata').then(async () => {
    const x509 = await import('@peculiar/x509')
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
    return x509
  }))

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const

/** A certificate and its private key, PEM encoded. */
export interface CertificateAndKey {
  /** The certificate (PEM). */
  readonly cert: string
  /** The PKCS#8 private key (PEM). */
  readonly key: string
}

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

/** PEM armour of DER bytes, 64 base64 characters a line. */
const pem = (der: ArrayBuffer | Uint8Array, label: string): string =>
  `-----BEGIN ${label}-----\n${(Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${label}-----`

/** The DER bytes of the first PEM block. */
const firstPemBlock = (text: string): Uint8Array => {
  const match = /-----BEGIN ([^-]+)-----([\s\S]*?)-----END \1-----/.exec(text)
  if (match === null) throw new Error('no PEM block found')
  return new Uint8Array(Buffer.from(match[2]!.replace(/\s+/g, ''), 'base64'))
}

const pemKey = async (key: CryptoKey): Promise<string> => pem(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY')

const importKey = async (text: string): Promise<CryptoKey> => webcrypto.subtle.importKey('pkcs8', firstPemBlock(text), algorithm, true, ['sign'])

const serial = (): string => {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16))
  bytes[0] = bytes[0]! & 0x7f
  return Buffer.from(bytes).toString('hex')
}

const validity = (days: number) => {
  const notBefore = new Date(Date.now() - 60_000)
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) }
}

/** Subject names are X.500 strings: escape what would end a component. */
const cn = (name: string): string => `CN=${name.replace(/([,+"\\<>;=])/g, '\\$1')}`

const subjectAltNames = (x509: X509, names: ReadonlyArray<string>) =>
  new x509.SubjectAlternativeNameExtension(names.map((name) => (isIP(name) ? { type: 'ip' as const, value: name } : { type: 'dns' as const, value: name })))

/** Options of a cluster CA. */
export interface CaOptions {
  readonly commonName?: string
  readonly validityDays?: number
}

/** Creates a cluster CA (self-signed, may sign node certificates). */
export const createCa = (options: CaOptions = {}): Effect.Effect<CertificateAndKey> =>
  Effect.promise(async () => {
    const x509 = await loadX509()
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: cn(options.commonName ?? 'Mycorrizal cluster CA'),
      ...validity(options.validityDays ?? 3650),
      keys,
      signingAlgorithm: algorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
      ]
    })
    return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey) }
  })

/** Options of a node certificate. */
export interface NodeCertificateOptions {
  /** Becomes the subject CN: peers check that it matches the node id claimed in the handshake. */
  readonly nodeId: string
  /** DNS names and IP addresses the node is reached at. */
  readonly hosts?: ReadonlyArray<string>
  readonly validityDays?: number
  /** For tests of expiry: a validity window wholly in the past. */
  readonly expired?: boolean
}

const leafExtensions = async (x509: X509, publicKey: CryptoKey, nodeId: string, hosts: ReadonlyArray<string>) => [
  new x509.BasicConstraintsExtension(false, undefined, true),
  new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
  new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
  subjectAltNames(x509, [nodeId, ...hosts].filter((h, i, all) => h.length > 0 && all.indexOf(h) === i)),
  await x509.SubjectKeyIdentifierExtension.create(publicKey)
]

/** Creates a node certificate signed by the cluster CA; usable for both TLS server and client. */
export const createNodeCertificate = (ca: CertificateAndKey, options: NodeCertificateOptions): Effect.Effect<CertificateAndKey> =>
  Effect.promise(async () => {
    const x509 = await loadX509()
    const caCert = new x509.X509Certificate(ca.cert)
    const caKey = await importKey(ca.key)
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair
    const window = options.expired
      ? { notBefore: new Date(Date.now() - 3 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }
      : validity(options.validityDays ?? 825)
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: cn(options.nodeId),
      issuer: caCert.subject,
      ...window,
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: algorithm,
      extensions: [
        ...(await leafExtensions(x509, keys.publicKey, options.nodeId, options.hosts ?? ['localhost', '127.0.0.1', '::1'])),
        await x509.AuthorityKeyIdentifierExtension.create(caCert)
      ]
    })
    return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey) }
  })

/**
 * A throw-away self-signed certificate: TLS encryption for cluster-secret mode, where the secret
 * authenticates. `CN=<nodeId>`, valid from a minute ago for 30 days, ECDSA P-256; made with
 * `node:crypto` alone (no certificate library is loaded).
 */
export const createSelfSigned = (nodeId: string): Effect.Effect<CertificateAndKey> =>
  // the key pair is made off the event loop (libuv's thread pool), as WebCrypto's was
  Effect.async<CertificateAndKey>((resume) =>
    generateKeyPair('ec', { namedCurve: 'P-256' }, (error, publicKey, privateKey) => {
      if (error !== null) return resume(Effect.die(error))
      const { notBefore, notAfter } = validity(30)
      const made = selfSigned({ commonName: nodeId, notBefore, notAfter }, { publicKey, privateKey })
      resume(Effect.succeed({ cert: pem(made.cert, 'CERTIFICATE'), key: pem(made.key, 'PRIVATE KEY') }))
    })
  )

/** The subject common name of a DER or PEM certificate, if it has one. */
export const commonName = (cert: Uint8Array | string): string | undefined => {
  const parsed = new X509Certificate(typeof cert === 'string' ? cert : Buffer.from(cert))
  const match = /(?:^|\n)CN=([^\n]*)/.exec(parsed.subject)
  return match?.[1]
}

/** SHA-256 of a DER certificate: what the secret handshake binds its proofs to. */
export const fingerprint = (der: Uint8Array): Uint8Array => new Uint8Array(createHash('sha256').update(der).digest())

/** DER bytes of a PEM certificate. */
export const toDer = (pem: string): Uint8Array => firstPemBlock(pem)
