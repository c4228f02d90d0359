import { describe, expect, it } from '@effect/vitest'
import { Effect } from 'effect'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import { spawnSync } from 'node:child_process'
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto'
import { createRequire } from 'node:module'
import * as Certificates from '../src/Certificates.js'
import { bitString, oid, selfSigned, sequence, time, unsignedInteger } from '../src/internal/selfSigned.js'

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

describe('the DER writer of the self-signed certificate', () => {
  it('integers are minimal: no leading zeros, a zero byte before a set high bit', () => {
    expect(hex(unsignedInteger(Uint8Array.of(2)))).toBe('020102')
    expect(hex(unsignedInteger(Uint8Array.of(0, 0, 0x7f)))).toBe('02017f')
    expect(hex(unsignedInteger(Uint8Array.of(0, 0x80)))).toBe('02020080')
    expect(hex(unsignedInteger(Uint8Array.of(0x80)))).toBe('02020080')
    expect(hex(unsignedInteger(Uint8Array.of(0, 0)))).toBe('020100')
  })

  it('object identifiers, in base 128 (the known encodings of ecdsa-with-SHA256, commonName, serverAuth)', () => {
    expect(hex(oid('1.2.840.10045.4.3.2'))).toBe('06082a8648ce3d040302')
    expect(hex(oid('2.5.4.3'))).toBe('0603550403')
    expect(hex(oid('1.3.6.1.5.5.7.3.1'))).toBe('06082b06010505070301')
  })

  it('times: UTCTime through 2049, GeneralizedTime from 2050', () => {
    expect(Buffer.from(time(new Date('2026-12-02T04:05:06.789Z'))).toString('latin1')).toBe('\x17\x0d261202040506Z')
    expect(Buffer.from(time(new Date('2049-12-31T23:59:59Z'))).toString('latin1')).toBe('\x17\x0d491231235959Z')
    expect(Buffer.from(time(new Date('2050-01-01T00:00:00Z'))).toString('latin1')).toBe('\x18\x0f20500101000000Z')
  })

  it('lengths: short form below 128, then one, two, three length bytes', () => {
    expect(hex(sequence().subarray(0, 2))).toBe('3000')
    expect(hex(bitString(new Uint8Array(126)).subarray(0, 2))).toBe('037f')
    expect(hex(bitString(new Uint8Array(127)).subarray(0, 3))).toBe('038180')
    expect(hex(bitString(new Uint8Array(299)).subarray(0, 4))).toBe('0382012c')
    const big = bitString(new Uint8Array(70_000))
    expect(hex(big.subarray(0, 5))).toBe('0383011171')
    expect(big.byteLength).toBe(5 + 70_001)
  })
})

describe('the self-signed certificate of cluster-secret mode', () => {
  it.effect('parses with Node and with @peculiar/x509, signs itself and names the node', () =>
    Effect.gen(function* () {
      const before = Date.now()
      const made = yield* Certificates.createSelfSigned('node-α, "b"')
      const cert = new X509Certificate(made.cert)
      expect(cert.verify(cert.publicKey)).toBe(true)
      expect(cert.checkPrivateKey(createPrivateKey(made.key))).toBe(true)
      expect(cert.ca).toBe(false)
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
      expect(Certificates.commonName(made.cert)).toBeDefined()
      expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(before)
      const days = (new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()) / 86_400_000
      expect(days).toBe(30)
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])

      // an independent parser, and its own signature check
      const peculiar = new x509.X509Certificate(made.cert)
      expect(peculiar.subject).toBe(peculiar.issuer)
      expect(peculiar.subjectName.getField('CN')).toEqual(['node-α, "b"'])
      expect(peculiar.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } })
      expect(peculiar.serialNumber).toMatch(/^[4-7][0-9a-f]{31}$/)
      expect(yield* Effect.promise(() => peculiar.verify({ signatureOnly: true }))).toBe(true)
      const basic = peculiar.getExtension(x509.BasicConstraintsExtension)
      expect(basic?.ca).toBe(false)
      expect(basic?.critical).toBe(true)
      const usage = peculiar.getExtension(x509.KeyUsagesExtension)
      expect(usage?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement)
      expect(usage?.critical).toBe(true)
      expect(Buffer.from(yield* Effect.promise(() => peculiar.publicKey.export().then((k) => crypto.subtle.exportKey('spki', k))))).toEqual(
        createPublicKey(made.key).export({ format: 'der', type: 'spki' })
      )
      expect(Certificates.commonName(Certificates.toDer(made.cert))).toBe(Certificates.commonName(made.cert))
    })
  )

  it('a fresh key and serial every time; validity past 2050 is written as GeneralizedTime', () => {
    const a = selfSigned({ commonName: 'a', notBefore: new Date('2049-06-01T00:00:00Z'), notAfter: new Date('2051-06-01T00:00:00Z') })
    const b = selfSigned({ commonName: 'a', notBefore: new Date('2049-06-01T00:00:00Z'), notAfter: new Date('2051-06-01T00:00:00Z') })
    const cert = new X509Certificate(a.cert)
    expect(new Date(cert.validTo).toISOString()).toBe('2051-06-01T00:00:00.000Z')
    expect(new Date(cert.validFrom).toISOString()).toBe('2049-06-01T00:00:00.000Z')
    expect(cert.serialNumber).not.toBe(new X509Certificate(b.cert).serialNumber)
    expect(cert.publicKey.equals(new X509Certificate(b.cert).publicKey)).toBe(false)
  })

  it('starting secret-mode nodes over real QUIC does not load the certificate library; making a CA does', () => {
    const tsx = createRequire(import.meta.url).resolve('tsx')
    const child = spawnSync(process.execPath, ['--import', tsx, '--conditions=@mycorrizal/source', new URL('./fixtures/modules.ts', import.meta.url).pathname], {
      encoding: 'utf8',
      timeout: 25_000
    })
    expect(child.status, child.stderr).toBe(0)
    const events = child.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { event: string; joined?: boolean; modules: Array<string> })
    const certificateLibrary = (modules: ReadonlyArray<string>) => modules.filter((m) => /@peculiar[\\/]|reflect-metadata|tsyringe/.test(m))
    const started = events.find((e) => e.event === 'started')!
    expect(started.joined).toBe(true)
    expect(started.modules.some((m) => m.includes('/nodosum/src/Certificates.ts'))).toBe(true)
    expect(certificateLibrary(started.modules)).toEqual([])
    const ca = events.find((e) => e.event === 'ca')!
    expect(certificateLibrary(ca.modules)).toContain(createRequire(import.meta.url).resolve('@peculiar/x509'))
  }, 30_000)
})
