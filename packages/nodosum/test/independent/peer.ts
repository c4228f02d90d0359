/**
 * A second implementation of the Mycorrizal wire protocol, written from `docs/protocol.md`
 * alone: it imports no `@mycorrizal/*` module and nothing of nodosum's `src/` (checked by
 * `Imports.test.ts`). QUIC is quiche through `@matrixai/quic`'s `native` binding, driven here
 * over `node:dgram`; the cluster handshake (§5), membership and heartbeats (§7) and
 * application streams (§2, §3) are coded by hand. Both auth modes (§1: cluster secret, or mTLS
 * against a cluster CA), dialer role only.
 */
import * as native from '@matrixai/quic/native/index.js'
import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual, webcrypto, X509Certificate } from 'node:crypto'
import dgram from 'node:dgram'
import { type Control, decodeControl, encodeControl, frame, StreamReader, streamInit, type WireMember } from './wire.js'

const quiche = native.quiche

/** §1 */
export const ALPN = 'mycorrizal/1'
/** §6 */
export const PROTOCOL_VERSION = 2
/** §2 */
export const CONTROL_APP_ID = 'SYSTEM-NODOSUM'
/** §3 */
const CONTROL_MAX_PAYLOAD = 1024 * 1024
/** §7 application close codes */
export const CloseCode = { NotAuthenticated: 0x101, HandshakeRefused: 0x110, Leaving: 0x112, PeerFailed: 0x113 } as const

/** §5: K = HKDF-SHA256(secret, "mycorrizal/2 cluster key", clusterId, 32). */
export const clusterKey = (secret: string, clusterId: string): Buffer =>
  Buffer.from(hkdfSync('sha256', Buffer.from(secret, 'utf8'), Buffer.from('mycorrizal/2 cluster key', 'ascii'), Buffer.from(clusterId, 'utf8'), 32))

const F = (x: Uint8Array) => {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(x.length)
  return Buffer.concat([len, x])
}

/** §5: HMAC-SHA256(K, F("mycorrizal/2 " role) F(clusterId) F(dialerId) F(acceptorId) F(Nd) F(Na) F(fingerprint)). */
export const proof = (
  key: Buffer,
  p: { role: 'dialer' | 'acceptor'; clusterId: string; dialerId: string; acceptorId: string; nd: Buffer; na: Buffer; fingerprint: Buffer }
): Buffer =>
  createHmac('sha256', key)
    .update(
      Buffer.concat([
        F(Buffer.from(`mycorrizal/2 ${p.role}`, 'ascii')),
        F(Buffer.from(p.clusterId, 'utf8')),
        F(Buffer.from(p.dialerId, 'utf8')),
        F(Buffer.from(p.acceptorId, 'utf8')),
        F(p.nd),
        F(p.na),
        F(p.fingerprint)
      ])
    )
    .digest()

/** A self-signed ECDSA P-256 certificate (§1: self-signed is fine in secret mode). */
export const selfSigned = async (commonName: string): Promise<{ cert: string; key: string; der: Buffer }> => {
  await import('reflect-metadata')
  const x509 = await import('@peculiar/x509')
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString('hex'),
    name: `CN=${commonName}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    signingAlgorithm: alg,
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys']
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n`
  return { cert: cert.toString('pem'), key, der: Buffer.from(cert.rawData) }
}

export interface PeerOptions {
  readonly nodeId: string
  readonly clusterId: string
  /** Auth mode `secret` (§1, §5): the cluster secret; exactly one of `secret` and `ca`. */
  readonly secret?: string
  /**
   * Auth mode `tls` (§1): the cluster CA (PEM) the node's chain must verify against; `tls` is
   * then this peer's certificate signed by that CA, its common name our node id. Proofs are empty.
   */
  readonly ca?: string
  readonly heartbeatIntervalMs?: number
  /** Send Ping (§7); false makes a peer that goes silent after the handshake. */
  readonly heartbeat?: boolean
  /** A certificate to present (else a fresh self-signed one). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly der: Buffer }
  /**
   * A hostile dialer: `silent` finishes QUIC and sends nothing; `stall` sends its STREAM_INIT and
   * Hello, parks `parkBytes` on streams of its own right behind, and never proves.
   */
  readonly hostile?: { readonly mode: 'silent' | 'stall'; readonly parkBytes?: number }
  /**
   * How long the dialer waits for the handshake's outcome (default 10 s, past the node's own 5 s
   * handshake timeout): then it fails `HandshakeTimeout`. A refusal that travels in one datagram
   * (a TLS alert in CONNECTION_CLOSE) is lost with it, and the node forgets the connection: the
   * dialer would otherwise wait for its QUIC idle timeout (60 s). Not for a hostile peer.
   */
  readonly handshakeTimeoutMs?: number
  /** Fault injection: a datagram from the node is lost when this returns true. */
  readonly dropIncoming?: (peer: IndependentPeer) => boolean
}

/** Everything the peer received on its control stream, in order, and how the connection ended. */
export interface PeerLog {
  readonly control: Array<Control>
  /** Raw control-stream bytes received (STREAM_INIT is the dialer's, so none here). */
  readonly controlBytes: Array<Buffer>
  closed: { readonly by: 'peer' | 'local'; readonly app: boolean; readonly code: number; readonly reason: string } | undefined
}

type Outcome = { readonly ok: true; readonly acceptor: string } | { readonly ok: false; readonly reason: string; readonly message: string }

/** One QUIC connection to one node, as dialer. */
export class IndependentPeer {
  readonly instanceId = randomBytes(8).toString('hex')
  readonly log: PeerLog = { control: [], controlBytes: [], closed: undefined }
  /** Sequence numbers of our Pings the node answered. */
  readonly pongs: Array<number> = []
  /** Pings the node sent us. */
  pingsReceived = 0
  /** Members lists the node sent us. */
  readonly members: Array<ReadonlyArray<WireMember>> = []
  /** Application messages received, by `appId/name`. */
  readonly received = new Map<string, Array<Buffer>>()
  acceptorId: string | undefined
  lastHeardAt = 0

  private socket!: dgram.Socket
  private qc!: native.Connection
  private local!: native.Host
  private remote!: native.Host
  private readonly sendBuf = Buffer.alloc(65_535)
  private readonly readBuf = Buffer.alloc(65_535)
  private timer: NodeJS.Timeout | null = null
  private heartbeat: NodeJS.Timeout | null = null
  private pingSeq = 0
  /** Our nonce (§5 Nd). */
  readonly nd = randomBytes(32)
  private na: Buffer | undefined
  private stage: 'hello-sent' | 'auth-sent' | 'hello-received' | 'accepted' | 'failed' = 'hello-sent'
  private readonly readers = new Map<number, StreamReader>()
  private readonly pending = new Map<number, Buffer>()
  private nextStream = 0
  private settle: ((o: Outcome) => void) | undefined
  private handshakeTimer: NodeJS.Timeout | null = null
  private acceptorHello: Extract<Control, { type: 'Hello' }> | undefined
  private ownFingerprint!: Buffer

  private constructor(private options: PeerOptions) {}

  /** Dials `target`, runs the handshake; resolves with the outcome (refusals resolve too). */
  static async dial(target: { host: string; port: number }, options: PeerOptions): Promise<{ peer: IndependentPeer; outcome: Outcome }> {
    const peer = new IndependentPeer(options)
    const { outcome } = await peer.start(target)
    return { peer, outcome: await outcome }
  }

  /** Starts dialing; the outcome (of the handshake) settles later, or never for a hostile peer. */
  static async open(target: { host: string; port: number }, options: PeerOptions): Promise<IndependentPeer> {
    const peer = new IndependentPeer(options)
    await peer.start(target)
    return peer
  }

  /** The QUIC (TLS) handshake finished. */
  isEstablished(): boolean {
    return this.qc.isEstablished()
  }

  private async start(target: { host: string; port: number }): Promise<{ readonly outcome: Promise<Outcome> }> {
    const tls = this.options.tls ?? (await selfSigned(this.options.nodeId))
    // the verifier fingerprints the certificate it saw in TLS: the DER we present
    this.ownFingerprint = createHash('sha256').update(tls.der).digest()
    const pem = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'))
    // secret mode: present a certificate, do not verify the node's (the handshake binds to it);
    // tls mode: verify the node's chain against the cluster CA
    const ca = this.options.ca
    const config = quiche.Config.withBoringSslCtx(ca !== undefined, false, ca === undefined ? null : pem(ca), [pem(tls.key)], [pem(tls.cert)], null)
    config.setApplicationProtos([ALPN])
    config.setMaxIdleTimeout(60_000)
    config.setMaxRecvUdpPayloadSize(1452)
    config.setMaxSendUdpPayloadSize(1452)
    config.setInitialMaxData(4 * 1024 * 1024)
    config.setInitialMaxStreamDataBidiLocal(1024 * 1024)
    config.setInitialMaxStreamDataBidiRemote(1024 * 1024)
    // the node opens its own streams towards us for what it sends (§9 "Which stream")
    config.setInitialMaxStreamsBidi(100)
    config.setInitialMaxStreamsUni(0)
    this.socket = dgram.createSocket('udp4')
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', resolve))
    const a = this.socket.address()
    this.local = { host: a.address, port: a.port }
    this.remote = { host: target.host, port: target.port }
    this.socket.on('message', (data, rinfo) => {
      if (this.stopped || this.qc.isClosed()) return
      if (this.options.dropIncoming?.(this) === true) return
      try {
        this.qc.recv(data, { from: { host: rinfo.address, port: rinfo.port }, to: this.local })
      } catch {
        // quiche closes the connection itself on a fatal error
      }
      this.pump()
    })
    this.qc = quiche.Connection.connect(null, randomBytes(20), this.local, this.remote, config)
    const outcome = new Promise<Outcome>((resolve) => (this.settle = resolve))
    if (this.options.hostile === undefined) {
      const ms = this.options.handshakeTimeoutMs ?? 10_000
      this.handshakeTimer = setTimeout(() => {
        this.handshakeTimer = null
        this.fail('HandshakeTimeout', `no outcome of the handshake within ${ms} ms`)
      }, ms)
    }
    this.pump()
    return { outcome }
  }

  /** Reads what arrived, sends what quiche has, re-arms its timer. */
  private pump(): void {
    if (this.stopped) return
    const qc = this.qc
    if (qc.isEstablished() && this.nextStream === 0) this.onEstablished()
    if (qc.isEstablished()) for (const id of qc.readable()) this.readStream(id)
    this.flushPending()
    for (;;) {
      let r: [number, native.SendInfo] | null
      try {
        r = qc.send(this.sendBuf)
      } catch {
        break
      }
      if (r === null) break
      // a copy: dgram sends asynchronously, the next packet reuses sendBuf
      this.socket.send(Buffer.from(this.sendBuf.subarray(0, r[0])), r[1].to.port, r[1].to.host)
    }
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    // the peer's CONNECTION_CLOSE: known at once, though quiche drains for 3 PTO before it is closed
    this.notePeerClose()
    if (qc.isClosed()) return this.onClosed()
    const t = qc.timeout()
    if (t !== null)
      this.timer = setTimeout(() => {
        this.timer = null
        qc.onTimeout()
        this.pump()
      }, t)
  }

  private onEstablished(): void {
    // §2: the control stream is the first bidirectional stream the dialer opens
    const id = this.openStreamId()
    const hostile = this.options.hostile
    if (hostile?.mode === 'silent') return
    this.readers.set(id, new StreamReader(false, CONTROL_MAX_PAYLOAD, (p) => this.onControl(p)))
    this.write(id, streamInit(CONTROL_APP_ID, ''))
    this.sendControl({
      type: 'Hello',
      protocolVersion: PROTOCOL_VERSION,
      clusterId: this.options.clusterId,
      nodeId: this.options.nodeId,
      instanceId: this.instanceId,
      host: this.local.host,
      port: this.local.port,
      authMode: this.tlsMode ? 1 : 0,
      nonce: this.nd
    })
    if (hostile?.mode === 'stall') this.park()
  }

  /** Client-initiated bidirectional stream ids: 0, 4, 8, … (RFC 9000 §2.1). */
  private openStreamId(): number {
    const id = this.nextStream
    this.nextStream += 4
    return id
  }

  private write(id: number, data: Buffer): void {
    const queued = this.pending.get(id)
    this.pending.set(id, queued === undefined ? data : Buffer.concat([queued, data]))
    this.flushPending()
  }

  private flushPending(): void {
    if (!this.qc.isEstablished() || this.qc.isClosed()) return
    for (const [id, data] of this.pending) {
      let n: number | null = 0
      try {
        n = this.qc.streamSend(id, data, false)
      } catch {
        n = 0
      }
      const rest = data.subarray(n ?? 0)
      if (rest.length === 0) this.pending.delete(id)
      else this.pending.set(id, rest)
    }
  }

  private sendControl(m: Control): void {
    this.write(0, frame(encodeControl(m)))
    this.schedulePump()
  }

  private stopped = false
  private pumpScheduled = false
  private schedulePump(): void {
    if (this.pumpScheduled) return
    this.pumpScheduled = true
    setImmediate(() => {
      this.pumpScheduled = false
      if (!this.stopped && !this.qc.isClosed()) this.pump()
    })
  }

  private readStream(id: number): void {
    let reader = this.readers.get(id)
    if (reader === undefined) {
      if ((id & 3) !== 1) return
      // a stream the node opened: STREAM_INIT, then messages
      const r: StreamReader = new StreamReader(true, 16 * 1024 * 1024, (p) => {
        const key = `${r.init!.appId}/${r.init!.name}`
        const list = this.received.get(key) ?? []
        list.push(p)
        this.received.set(key, list)
      })
      reader = r
      this.readers.set(id, reader)
    }
    for (;;) {
      let got: [number, boolean] | null
      try {
        got = this.qc.streamRecv(id, this.readBuf)
      } catch {
        return
      }
      if (got === null) return
      const chunk = Buffer.from(this.readBuf.subarray(0, got[0]))
      if (id === 0) this.log.controlBytes.push(chunk)
      reader.push(chunk)
      if (got[1]) return
    }
  }

  private onControl(payload: Buffer): void {
    const m = decodeControl(payload)
    this.log.control.push(m)
    if (this.options.hostile !== undefined) return
    this.lastHeardAt = Date.now()
    if (m.type === 'Refuse') return this.fail(m.reason, m.message)
    switch (this.stage) {
      case 'hello-sent': {
        if (m.type !== 'Challenge' || m.nonce.length !== 32) return this.refuse('Protocol', `expected Challenge, got ${m.type}`)
        this.na = m.nonce
        // §5: the dialer proves before it knows the acceptor's id: acceptorId is empty; in tls
        // mode the proof is empty (the chain and its common name authenticate)
        const p = this.tlsMode
          ? Buffer.alloc(0)
          : proof(clusterKey(this.secret(), this.options.clusterId), { role: 'dialer', clusterId: this.options.clusterId, dialerId: this.options.nodeId, acceptorId: '', nd: this.nd, na: m.nonce, fingerprint: this.ownFingerprint })
        this.stage = 'auth-sent'
        return this.sendControl({ type: 'Auth', proof: p })
      }
      case 'auth-sent': {
        if (m.type !== 'Hello') return this.refuse('Protocol', `expected Hello, got ${m.type}`)
        if (m.protocolVersion !== PROTOCOL_VERSION) return this.refuse('ProtocolVersion', `peer speaks protocol version ${m.protocolVersion}, this node version ${PROTOCOL_VERSION}`)
        if (m.clusterId !== this.options.clusterId) return this.refuse('ClusterId', 'another cluster')
        if (m.authMode !== (this.tlsMode ? 1 : 0)) return this.refuse('AuthMode', `peer uses auth mode ${m.authMode}`)
        if (!this.na!.equals(m.nonce)) return this.refuse('Protocol', 'the Hello nonce is not the Challenge nonce')
        this.acceptorHello = m
        this.stage = 'hello-received'
        return
      }
      case 'hello-received': {
        if (m.type !== 'Auth') return this.refuse('Protocol', `expected Auth, got ${m.type}`)
        const der = this.qc.peerCertChain()?.[0]
        if (der === undefined) return this.refuse('CertificateMismatch', 'no peer certificate')
        const hello = this.acceptorHello!
        if (this.tlsMode) {
          // §1: quiche verified the chain against the CA; the common name must be the claimed id
          const subject = new X509Certificate(Buffer.from(der)).subject
          if (!subject.split('\n').includes(`CN=${hello.nodeId}`)) return this.refuse('CertificateMismatch', 'the certificate names another node')
          if (m.proof.length !== 0) return this.refuse('Protocol', 'a proof in tls mode')
          return this.accepted(hello)
        }
        const expected = proof(clusterKey(this.secret(), this.options.clusterId), {
          role: 'acceptor',
          clusterId: this.options.clusterId,
          dialerId: this.options.nodeId,
          acceptorId: hello.nodeId,
          nd: this.nd,
          na: this.na!,
          fingerprint: createHash('sha256').update(der).digest()
        })
        if (m.proof.length !== expected.length || !timingSafeEqual(m.proof, expected)) return this.refuse('BadSecret', 'the proof does not verify')
        return this.accepted(hello)
      }
      case 'accepted':
        return this.onMembership(m)
      case 'failed':
        return
    }
  }

  private get tlsMode(): boolean {
    return this.options.ca !== undefined
  }

  private secret(): string {
    if (this.options.secret === undefined) throw new Error('secret mode needs a secret')
    return this.options.secret
  }

  private accepted(hello: Extract<Control, { type: 'Hello' }>): void {
    this.stage = 'accepted'
    this.acceptorId = hello.nodeId
    this.afterHandshake()
    this.settle?.({ ok: true, acceptor: hello.nodeId })
    this.settle = undefined
    this.clearHandshakeTimer()
  }

  /** A stalling dialer: data on streams of its own, never read by a node that waits for its proof. */
  private park(): void {
    let left = this.options.hostile?.parkBytes ?? 0
    this.options = { ...this.options, hostile: { mode: 'stall' } }
    while (left > 0) {
      const n = Math.min(left, 64 * 1024)
      this.write(this.openStreamId(), Buffer.concat([streamInit('app', ''), frame(Buffer.alloc(n - 11))]))
      left -= n
    }
    this.schedulePump()
  }

  /** §7: Members with ourselves, then a Ping every heartbeat interval. */
  private afterHandshake(): void {
    this.sendControl({ type: 'Members', members: [this.self()] })
    if (this.options.heartbeat === false) return
    const every = this.options.heartbeatIntervalMs ?? 500
    const beat = () => {
      this.ping()
      this.heartbeat = setTimeout(beat, every)
    }
    this.heartbeat = setTimeout(beat, every)
  }

  self(): WireMember {
    return { nodeId: this.options.nodeId, instanceId: this.instanceId, host: this.local.host, port: this.local.port }
  }

  private ping(): void {
    if (this.qc.isClosed()) return
    this.sendControl({ type: 'Ping', seq: ++this.pingSeq, sentAt: Date.now() })
  }

  private onMembership(m: Control): void {
    switch (m.type) {
      case 'Ping':
        this.pingsReceived++
        if (this.muted) return
        return this.sendControl({ type: 'Pong', seq: m.seq, sentAt: m.sentAt })
      case 'Pong':
        this.pongs.push(m.seq)
        return
      case 'Members':
        this.members.push(m.members)
        return
      case 'Leave':
        void this.stop()
        return
      default:
        return this.refuse('Protocol', `unexpected ${m.type} after the handshake`)
    }
  }

  /** §9: application messages go on a stream we open, with our STREAM_INIT. */
  /** Opens an application stream (§2); `send` frames a message (§3), `sendRaw` writes bytes as they are. */
  openStream(appId: string, name: string): { send: (payload: Uint8Array) => void; sendRaw: (bytes: Uint8Array) => void } {
    const id = this.openStreamId()
    this.readers.set(id, new StreamReader(false, 16 * 1024 * 1024, () => {}))
    this.write(id, streamInit(appId, name))
    const raw = (bytes: Buffer) => {
      this.write(id, bytes)
      this.schedulePump()
    }
    return { send: (payload) => raw(frame(payload)), sendRaw: (bytes) => raw(Buffer.from(bytes)) }
  }

  private refuse(reason: string, message: string): void {
    this.sendControl({ type: 'Refuse', reason, message })
    this.fail(reason, message)
    setTimeout(() => this.close(CloseCode.HandshakeRefused, reason), 200)
  }

  private fail(reason: string, message: string): void {
    if (this.stage !== 'accepted') this.stage = 'failed'
    this.settle?.({ ok: false, reason, message })
    this.settle = undefined
    this.clearHandshakeTimer()
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer)
    this.handshakeTimer = null
  }

  private close(code: number, reason: string): void {
    if (this.qc.isClosed()) return
    try {
      this.qc.close(true, code, Buffer.from(reason))
    } catch {
      // already closing
    }
    if (this.log.closed === undefined) this.log.closed = { by: 'local', app: true, code, reason }
    this.pump()
  }

  private notePeerClose(): void {
    if (this.log.closed !== undefined) return
    const e = this.qc.peerError()
    if (e !== null) this.log.closed = { by: 'peer', app: e.isApp, code: e.errorCode, reason: Buffer.from(e.reason).toString('utf8') }
  }

  private onClosed(): void {
    if (this.heartbeat !== null) clearTimeout(this.heartbeat)
    this.heartbeat = null
    this.notePeerClose()
    this.fail('ConnectionClosed', 'the connection closed during the handshake')
  }

  private muted = false

  /** Sends no control message at all any more (no Ping, no Pong) while QUIC stays up. */
  mute(): void {
    this.muted = true
    this.silence()
  }

  /** Stops sending Pings (still answers the node's). */
  silence(): void {
    if (this.heartbeat !== null) clearTimeout(this.heartbeat)
    this.heartbeat = null
  }

  /** §7 Leave: on the control stream, 20 ms, then close with 0x112. */
  async leave(): Promise<void> {
    if (!this.qc.isClosed()) {
      this.sendControl({ type: 'Leave' })
      await new Promise((r) => setTimeout(r, 20))
      this.close(CloseCode.Leaving, 'leaving')
    }
    await this.stop()
  }

  /** Closes the connection (if open) and the socket; no timer is left. */
  async stop(): Promise<void> {
    this.silence()
    this.clearHandshakeTimer()
    if (!this.qc.isClosed()) this.close(0, 'stop')
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    await new Promise((r) => setTimeout(r, 20))
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve())
      } catch {
        resolve()
      }
    })
  }

  /** The DER of the certificate the node presented in TLS. */
  peerCertificate(): Buffer | undefined {
    const der = this.qc.peerCertChain()?.[0]
    return der === undefined ? undefined : Buffer.from(der)
  }

  /** Closed, or draining after the node's close (RFC 9000 §10.2.2). */
  isClosed(): boolean {
    return this.qc.isClosed() || this.qc.isDraining()
  }
}
