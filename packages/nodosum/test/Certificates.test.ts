import { describe, expect, it } from '@effect/vitest'
import { Effect } from 'effect'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import * as Certificates from '../src/Certificates.js'

describe('Certificates', () => {
  it.effect('a node certificate is signed by the cluster CA and names the node', () =>
    Effect.gen(function* () {
      const ca = yield* Certificates.createCa({ commonName: 'test CA' })
      const node = yield* Certificates.createNodeCertificate(ca, { nodeId: 'node-a', hosts: ['127.0.0.1', 'node-a.local'] })
      const caCert = new X509Certificate(ca.cert)
      const nodeCert = new X509Certificate(node.cert)
      expect(caCert.ca).toBe(true)
      expect(nodeCert.ca).toBe(false)
      expect(nodeCert.verify(caCert.publicKey)).toBe(true)
      expect(nodeCert.checkIssued(caCert)).toBe(true)
      expect(Certificates.commonName(node.cert)).toBe('node-a')
      expect(nodeCert.subjectAltName).toContain('IP Address:127.0.0.1')
      expect(nodeCert.subjectAltName).toContain('DNS:node-a.local')
      expect(node.key).toMatch(/^-----BEGIN PRIVATE KEY-----/)
      expect(Certificates.commonName(Certificates.toDer(node.cert))).toBe('node-a')
    })
  )

  it.effect('a certificate from another CA does not verify', () =>
    Effect.gen(function* () {
      const ca = yield* Certificates.createCa()
      const other = yield* Certificates.createCa()
      const node = yield* Certificates.createNodeCertificate(other, { nodeId: 'x' })
      expect(new X509Certificate(node.cert).verify(new X509Certificate(ca.cert).publicKey)).toBe(false)
    })
  )

  it.effect('expired certificates lie wholly in the past; self-signed ones sign themselves', () =>
    Effect.gen(function* () {
      const ca = yield* Certificates.createCa()
      const expired = yield* Certificates.createNodeCertificate(ca, { nodeId: 'old', expired: true })
      expect(new Date(new X509Certificate(expired.cert).validTo).getTime()).toBeLessThan(Date.now())
      const self = yield* Certificates.createSelfSigned('solo')
      const cert = new X509Certificate(self.cert)
      expect(cert.verify(cert.publicKey)).toBe(true)
      expect(Certificates.fingerprint(Certificates.toDer(self.cert)).byteLength).toBe(32)
    })
  )

  it.effect('PEM is read and written without the certificate library: DER as Node reads it, keys Node imports', () =>
    Effect.gen(function* () {
      const self = yield* Certificates.createSelfSigned('pem')
      // a PEM file may carry text around the block and CRLF line ends
      const messy = `subject=CN=pem\r\n${self.cert.replace(/\n/g, '\r\n')}\r\n`
      expect(Buffer.from(Certificates.toDer(messy)).equals(new X509Certificate(self.cert).raw)).toBe(true)
      expect(self.key).toMatch(/^-----BEGIN PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END PRIVATE KEY-----$/)
      expect(createPrivateKey(self.key).asymmetricKeyType).toBe('ec')
      // a node certificate signed with the CA key read back from its PEM
      const ca = yield* Certificates.createCa()
      const node = yield* Certificates.createNodeCertificate(ca, { nodeId: 'n' })
      expect(new X509Certificate(node.cert).verify(new X509Certificate(ca.cert).publicKey)).toBe(true)
    })
  )
})
