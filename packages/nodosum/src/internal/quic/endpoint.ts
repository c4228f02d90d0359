/**
 * The QUIC driver: quiche (shipped by `@matrixai/quic`) under a lean event loop of our own.
 * `endpoint.ts` owns the UDP socket and routes datagrams to connections by connection id;
 * `connection.ts` drives one quiche connection; `stream.ts` one stream, whose write half is
 * the `Outbox` shared with the memory transport. Plain TypeScript throughout: this is the
 * hot path.
 */
// the `native` subpath only: the package's main entry loads its whole high-level API (~30 MB)
import * as native from '@matrixai/quic/native/index.js'
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import type { Address, TransportLimits } from '../../Transport.js'
import { cidKey, type ConnectionHost, QuicConnection } from './connection.js'

export { QuicConnection } from './connection.js'
export { HANDLER_FAILED, QuicStream } from './stream.js'

const quiche = native.quiche
type QConn = native.Connection
type QConfig = native.Config
type HostPort = native.Host

/** Length of the connection ids we issue. */
export const CID_LEN = quiche.MAX_CONN_ID_LEN
/** IPv4 cannot carry more in one UDP datagram. */
const MAX_UDP_PAYLOAD = 65_507
/** quiche does not send datagrams larger than this once connected. */
const QUICHE_MAX_PAYLOAD = 16_384
/** Application close code when the local transport shuts down. */
const TRANSPORT_CLOSING = 0

const sigalgs = ['ecdsa_secp256r1_sha256', 'ecdsa_secp384r1_sha384', 'ed25519', 'rsa_pss_rsae_sha256', 'rsa_pss_rsae_sha384', 'rsa_pkcs1_sha256'].join(':')

/** TLS material and policy of an endpoint. */
export interface QuicTls {
  readonly cert: string
  readonly key: string
  /** With a CA, both sides verify the peer's chain against it (mTLS). Without, any certificate is accepted and the caller authenticates otherwise. */
  readonly ca: string | undefined
}

export interface QuicEndpointOptions {
  readonly tls: QuicTls
  readonly limits: TransportLimits
  readonly datagramSize: number
  readonly idleTimeoutMs: number
  readonly handshakeTimeoutMs: number
  readonly socketBufferSize: number
  /** Handshakes in progress (accepted, not finished) above which new Initial packets are dropped. */
  readonly maxPendingHandshakes?: number
  /** Handshakes in progress above which an Initial without a token is answered with a Retry (address validation). */
  readonly retryThreshold?: number
  /** Handshakes in progress from one source address, not validated by a Retry, above which its Initials get a Retry. */
  readonly maxHandshakesPerSource?: number
  /** Validated new connections accepted from one source address per second. */
  readonly maxNewConnectionsPerSource?: number
  /** Bytes an accepted connection may send before the cluster handshake authenticates it. */
  readonly maxUnauthenticatedBytes?: number
}

/** Defaults of the admission limits (see `QuicEndpointOptions`). */
export const admissionDefaults = {
  maxPendingHandshakes: 256,
  retryThreshold: 16,
  maxHandshakesPerSource: 8,
  maxNewConnectionsPerSource: 64
} as const

/** Sources tracked per second for `maxNewConnectionsPerSource`; a new source beyond it is refused until the window turns. */
const SOURCE_TABLE_SIZE = 4096
/** A Retry token is valid this long (ms). */
const TOKEN_LIFETIME_MS = 10_000
const TOKEN_VERSION = 1
const TOKEN_MAC_LEN = 16

/** Why an Initial packet did not create a connection (counted in `QuicEndpointStats.refused`). */
export type AdmissionRefusal = 'PendingLimit' | 'InvalidToken' | 'SourceRate' | 'SourceTable'

/** Counters of an endpoint's admission control. */
export interface QuicEndpointStats {
  /** Accepted connections whose QUIC (TLS) handshake has not finished. */
  readonly handshakesInProgress: number
  /** Retry packets sent (address validation asked of a new source). */
  readonly retriesSent: number
  /** Initial packets that created no connection, by reason. */
  readonly refused: Readonly<Record<AdmissionRefusal, number>>
}

const buildConfig = (o: QuicEndpointOptions): QConfig => {
  const pem = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'))
  // with a CA: verify the peer against it (server side this demands a client certificate);
  // without: still ask for the peer's certificate, accept any, let the handshake bind to it
  const config = quiche.Config.withBoringSslCtx(
    true,
    o.tls.ca === undefined,
    o.tls.ca === undefined ? null : pem(o.tls.ca),
    [pem(o.tls.key)],
    [pem(o.tls.cert)],
    sigalgs
  )
  const payload = Math.min(o.datagramSize, MAX_UDP_PAYLOAD)
  config.setApplicationProtos(['mycorrizal/1'])
  config.setMaxIdleTimeout(o.idleTimeoutMs)
  config.setMaxSendUdpPayloadSize(payload)
  config.setMaxRecvUdpPayloadSize(payload)
  config.setInitialMaxData(o.limits.connectionWindow)
  config.setInitialMaxStreamDataBidiLocal(o.limits.streamWindow)
  config.setInitialMaxStreamDataBidiRemote(o.limits.streamWindow)
  config.setInitialMaxStreamDataUni(0)
  config.setInitialMaxStreamsBidi(o.limits.maxStreams)
  config.setInitialMaxStreamsUni(0)
  config.setMaxStreamWindow(o.limits.maxStreamWindow)
  config.setMaxConnectionWindow(o.limits.maxConnectionWindow)
  config.setDisableActiveMigration(true)
  config.grease(false)
  return config
}

/** One node's QUIC endpoint: a UDP socket shared by the client and server roles. */
export class QuicEndpoint implements ConnectionHost {
  private socket!: dgram.Socket
  readonly localHost: HostPort = { host: '0.0.0.0', port: 0 }
  private readonly config: QConfig
  private readonly conns = new Map<string, QuicConnection>()
  private dirty: Array<QuicConnection> = []
  private spare: Array<QuicConnection> = []
  /** Connections received this turn, waiting for the send pass. */
  private sending: Array<QuicConnection> = []
  private sendingSpare: Array<QuicConnection> = []
  private flushScheduled = false
  private sendBuf: Buffer
  /** Shared read buffer: `onData` gets views into it, valid only during the call. */
  readonly readBuf = Buffer.allocUnsafeSlow(64 * 1024)
  private readonly cidSeed = randomBytes(32)
  readonly payload: number
  private pendingHandshakes = 0
  /** Accepted connections still in their QUIC handshake. */
  private acceptedPending = 0
  /** Half-open accepted connections not validated by a Retry, by source host. */
  private readonly unvalidatedBySource = new Map<string, number>()
  /** Validated connections accepted in the current second, by source host. */
  private newBySource = new Map<string, number>()
  private newBySourceWindow = 0
  private readonly tokenKey = randomBytes(32)
  private retriesSent = 0
  private readonly refused: Record<AdmissionRefusal, number> = { PendingLimit: 0, InvalidToken: 0, SourceRate: 0, SourceTable: 0 }
  private readonly admission: Required<Pick<QuicEndpointOptions, keyof typeof admissionDefaults>>
  private nextId = 1
  closed = false
  /** Accepted connections, once established. */
  onAccept: (connection: QuicConnection) => void = () => {}
  /** Internal failures (socket errors, unexpected quiche errors); the endpoint keeps going. */
  onError: (error: unknown) => void = () => {}

  constructor(readonly options: QuicEndpointOptions) {
    this.payload = Math.min(options.datagramSize, MAX_UDP_PAYLOAD, QUICHE_MAX_PAYLOAD)
    this.sendBuf = Buffer.allocUnsafeSlow(Math.min(options.datagramSize, MAX_UDP_PAYLOAD))
    this.config = buildConfig(options)
    this.admission = {
      maxPendingHandshakes: options.maxPendingHandshakes ?? admissionDefaults.maxPendingHandshakes,
      retryThreshold: options.retryThreshold ?? admissionDefaults.retryThreshold,
      maxHandshakesPerSource: options.maxHandshakesPerSource ?? admissionDefaults.maxHandshakesPerSource,
      maxNewConnectionsPerSource: options.maxNewConnectionsPerSource ?? admissionDefaults.maxNewConnectionsPerSource
    }
  }

  stats(): QuicEndpointStats {
    return { handshakesInProgress: this.acceptedPending, retriesSent: this.retriesSent, refused: { ...this.refused } }
  }

  /** Binds the socket; an IPv6 host gets an IPv6 socket. */
  bind(port: number, host: string): Promise<void> {
    const family = isIPv6(host) ? 6 : 4
    const socket = dgram.createSocket({
      type: family === 6 ? 'udp6' : 'udp4',
      // a synchronous lookup lets send() hand the datagram to the kernel at once, so the send buffer
      // can be reused; addresses are literals of the socket's family (no parsing per datagram)
      lookup: (h: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void) => cb(null, h, family)
    } as dgram.SocketOptions)
    this.socket = socket
    return new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind(port, host, () => {
        socket.off('error', reject)
        socket.on('error', (e) => this.onError(e))
        socket.on('message', this.onMessage)
        try {
          socket.setRecvBufferSize(this.options.socketBufferSize)
          socket.setSendBufferSize(this.options.socketBufferSize)
        } catch (e) {
          this.onError(e)
        }
        const a = socket.address()
        ;(this.localHost as { host: string }).host = a.address
        ;(this.localHost as { port: number }).port = a.port
        resolve()
      })
    })
  }

  get address(): Address {
    return { host: this.localHost.host, port: this.localHost.port }
  }

  connectionId(): string {
    return `quic-${this.nextId++}`
  }

  connect(remote: Address): QuicConnection {
    const scid = randomBytes(CID_LEN)
    const qc = quiche.Connection.connect(null, scid, this.localHost, { host: remote.host, port: remote.port }, this.config)
    const connection = new QuicConnection(this, qc, true, scid, { host: remote.host, port: remote.port })
    this.conns.set(connection.key, connection)
    connection.flush()
    return connection
  }

  /**
   * Marks `c` for this turn's two passes: a receive pass (events dispatched, handlers run) and,
   * after the microtasks those handlers started, a send pass. Both immediates are queued
   * together, so they run in the same check phase with the microtasks between them: an answer
   * written a few microtasks after its request (a batching outbox, a Promise-based handler)
   * leaves in the datagram that acknowledges the request, not in a second one after an ACK-only
   * packet, and not a turn later.
   */
  markDirty(c: QuicConnection): void {
    if (c.dirty) return
    c.dirty = true
    this.dirty.push(c)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.runReceive)
      setImmediate(this.runTransmit)
    }
  }

  /** Receive pass over the dirty connections; each is queued for the send pass. */
  private receiveDirty(): void {
    const list = this.dirty
    if (list.length === 0) return
    this.dirty = this.spare
    this.spare = list
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      c.dirty = false
      if (!c.sendQueued) {
        c.sendQueued = true
        this.sending.push(c)
      }
      try {
        c.receive()
      } catch (e) {
        this.onError(e)
      }
    }
    list.length = 0
  }

  private runReceive = (): void => this.receiveDirty()

  private runTransmit = (): void => {
    this.flushScheduled = false
    // connections written to since the receive pass (by the handlers' microtasks) get theirs too
    this.receiveDirty()
    const list = this.sending
    this.sending = this.sendingSpare
    this.sendingSpare = list
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      c.sendQueued = false
      try {
        c.transmit()
      } catch (e) {
        this.onError(e)
      }
    }
    list.length = 0
  }

  sendDatagram(buf: Buffer, len: number, to: HostPort): void {
    const socket = this.socket
    socket.send(buf, 0, len, to.port, to.host)
    // queued by libuv (EAGAIN): the buffer now belongs to the pending send
    if (socket.getSendQueueCount() > 0) this.sendBuf = Buffer.allocUnsafeSlow(this.sendBuf.byteLength)
  }

  get scratch(): Buffer {
    return this.sendBuf
  }

  register(key: string, c: QuicConnection): void {
    this.conns.set(key, c)
  }

  unregister(key: string, c: QuicConnection): void {
    if (this.conns.get(key) === c) this.conns.delete(key)
  }

  handshakeStarted(c: QuicConnection): void {
    this.pendingHandshakes++
    if (c.initiator) return
    this.acceptedPending++
    const source = c.unvalidatedSource
    if (source !== null) this.unvalidatedBySource.set(source, (this.unvalidatedBySource.get(source) ?? 0) + 1)
  }

  handshakeEnded(c: QuicConnection): void {
    this.pendingHandshakes--
    if (c.initiator) return
    this.acceptedPending--
    const source = c.unvalidatedSource
    if (source === null) return
    const n = (this.unvalidatedBySource.get(source) ?? 1) - 1
    if (n <= 0) this.unvalidatedBySource.delete(source)
    else this.unvalidatedBySource.set(source, n)
  }

  /** An address-bound, expiring token: version, expiry (ms), original dcid, MAC over them and the source host. */
  private mintToken(odcid: Uint8Array, host: string, now: number): Buffer {
    const body = Buffer.allocUnsafe(1 + 6 + 1 + odcid.byteLength)
    body[0] = TOKEN_VERSION
    body.writeUIntBE(now + TOKEN_LIFETIME_MS, 1, 6)
    body[7] = odcid.byteLength
    body.set(odcid, 8)
    const mac = createHmac('sha256', this.tokenKey).update(body).update(host, 'utf8').digest().subarray(0, TOKEN_MAC_LEN)
    return Buffer.concat([body, mac])
  }

  /** The original dcid of a token minted by this endpoint for `host` and not expired; else null. */
  private checkToken(token: Uint8Array, host: string, now: number): Uint8Array | null {
    if (token.byteLength < 8 + TOKEN_MAC_LEN || token[0] !== TOKEN_VERSION) return null
    const b = Buffer.from(token.buffer, token.byteOffset, token.byteLength)
    const odcidLen = b[7]!
    if (odcidLen > CID_LEN || b.byteLength !== 8 + odcidLen + TOKEN_MAC_LEN) return null
    const body = b.subarray(0, 8 + odcidLen)
    const mac = createHmac('sha256', this.tokenKey).update(body).update(host, 'utf8').digest().subarray(0, TOKEN_MAC_LEN)
    if (!timingSafeEqual(mac, b.subarray(8 + odcidLen))) return null
    if (b.readUIntBE(1, 6) < now) return null
    return new Uint8Array(b.subarray(8, 8 + odcidLen))
  }

  /** Counts a validated new connection from `host` in this second's window; false over the limit. */
  private admitSource(host: string, now: number): AdmissionRefusal | undefined {
    const window = Math.floor(now / 1000)
    if (window !== this.newBySourceWindow) {
      this.newBySourceWindow = window
      this.newBySource = new Map()
    }
    const n = this.newBySource.get(host)
    if (n === undefined && this.newBySource.size >= SOURCE_TABLE_SIZE) return 'SourceTable'
    if ((n ?? 0) >= this.admission.maxNewConnectionsPerSource) return 'SourceRate'
    this.newBySource.set(host, (n ?? 0) + 1)
    return undefined
  }

  private refuse(reason: AdmissionRefusal): void {
    this.refused[reason]++
  }

  private onMessage = (data: Buffer, rinfo: dgram.RemoteInfo): void => {
    if (this.closed) return
    const len = data.length
    if (len < 1 + CID_LEN) return
    let key: string
    const long = (data[0]! & 0x80) !== 0
    if (long) {
      if (len < 7) return
      const dcil = data[5]!
      if (dcil > CID_LEN || len < 6 + dcil) return
      key = data.toString('latin1', 6, 6 + dcil)
    } else {
      key = data.toString('latin1', 1, 1 + CID_LEN)
    }
    const connection = this.conns.get(key)
    if (connection !== undefined) {
      connection.recv(data, rinfo)
      return
    }
    if (long) this.accept(data, rinfo)
  }

  /**
   * A long-header packet for no known connection. Admission, cheapest check first: at most
   * `maxPendingHandshakes` half-open connections; above `retryThreshold` of them, or above
   * `maxHandshakesPerSource` unvalidated ones from the sender's host, an Initial without a
   * token gets a stateless Retry, and only an Initial with a valid token (proof that the
   * sender receives at its address) creates a connection; validated connections are limited
   * to `maxNewConnectionsPerSource` per source host per second. None of this runs for packets
   * of known connections.
   */
  private accept(data: Buffer, rinfo: dgram.RemoteInfo): void {
    const admission = this.admission
    if (this.acceptedPending >= admission.maxPendingHandshakes) {
      this.refuse('PendingLimit')
      return
    }
    let header: native.Header
    try {
      header = quiche.Header.fromSlice(data, CID_LEN)
    } catch {
      return
    }
    const remote = { host: rinfo.address, port: rinfo.port }
    if (!quiche.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(1350)
      try {
        const n = quiche.negotiateVersion(header.scid, header.dcid, out)
        this.sendDatagram(out, n, remote)
      } catch {
        // not even a version negotiation can be built from it: drop
      }
      return
    }
    if (header.ty !== quiche.Type.Initial || data.length < 1200) return
    const now = Date.now()
    const token = header.token
    let odcid: Uint8Array | null = null
    if (token !== undefined && token.byteLength > 0) {
      odcid = this.checkToken(token, rinfo.address, now)
      if (odcid === null || header.dcid.byteLength !== CID_LEN) {
        this.refuse('InvalidToken')
        return
      }
      const refusal = this.admitSource(rinfo.address, now)
      if (refusal !== undefined) {
        this.refuse(refusal)
        return
      }
    }
    // derived from the client's dcid, so a retransmitted Initial lands on the same connection
    const scid = odcid === null ? createHmac('sha256', this.cidSeed).update(header.dcid).digest().subarray(0, CID_LEN) : header.dcid
    if (odcid === null && (this.acceptedPending >= admission.retryThreshold || (this.unvalidatedBySource.get(rinfo.address) ?? 0) >= admission.maxHandshakesPerSource)) {
      const out = Buffer.allocUnsafe(1350)
      try {
        const n = quiche.retry(header.scid, header.dcid, scid, this.mintToken(header.dcid, rinfo.address, now), header.version, out)
        this.sendDatagram(out, n, remote)
        this.retriesSent++
      } catch (e) {
        this.onError(e)
      }
      return
    }
    let qc: QConn
    try {
      qc = quiche.Connection.accept(scid, odcid, this.localHost, remote, this.config)
    } catch (e) {
      this.onError(e)
      return
    }
    const connection = new QuicConnection(this, qc, false, scid, remote, odcid === null ? rinfo.address : null)
    this.conns.set(connection.key, connection)
    if (odcid === null) {
      connection.aliasKey = cidKey(header.dcid)
      this.conns.set(connection.aliasKey, connection)
    }
    connection.recv(data, rinfo)
  }

  connections(): Array<QuicConnection> {
    return [...new Set(this.conns.values())].filter((c) => c.established && !c.isClosed())
  }

  /** Closes every connection (peers get CONNECTION_CLOSE), then the socket. */
  async close(): Promise<void> {
    if (this.closed) return
    for (const c of new Set(this.conns.values())) c.close(TRANSPORT_CLOSING, 'transport closed')
    // give the close frames a moment to leave, and to be sent again if a peer keeps talking
    // (bounded: at most 200 ms of 5 ms polls, awaited by the transport scope's finalizer)
    const deadline = performance.now() + 200
    await new Promise((resolve) => setImmediate(resolve))
    while (this.conns.size > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    this.closed = true
    for (const c of new Set(this.conns.values())) c.destroy()
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }
}
