/**
 * The QUIC driver: quiche (shipped by `@matrixai/quic`) under a lean event loop of our own.
 * `endpoint.ts` owns the UDP socket and routes datagrams to connections by connection id;
 * `connection.ts` drives one quiche connection; `stream.ts` one stream, whose write half is
 * the `Outbox` shared with the memory transport. Plain TypeScript throughout: this is the
 * hot path.
 */
// the `native` subpath only: the package's main entry loads its whole high-level API (~30 MB)
import * as native from '@matrixai/quic/native/index.js'
import { createHmac, randomBytes } from 'node:crypto'
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
  /** Handshakes in progress above which new Initial packets are dropped. */
  readonly maxPendingHandshakes?: number
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
  private flushScheduled = false
  private sendBuf: Buffer
  /** Shared read buffer: `onData` gets views into it, valid only during the call. */
  readonly readBuf = Buffer.allocUnsafeSlow(64 * 1024)
  private readonly cidSeed = randomBytes(32)
  readonly payload: number
  private pendingHandshakes = 0
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
  }

  /** Binds the socket; an IPv6 host gets an IPv6 socket. */
  bind(port: number, host: string): Promise<void> {
    const socket = dgram.createSocket({
      type: isIPv6(host) ? 'udp6' : 'udp4',
      // a synchronous lookup lets send() hand the datagram to the kernel at once, so the send buffer can be reused
      lookup: (h: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void) => cb(null, h, isIPv6(h) ? 6 : 4)
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

  markDirty(c: QuicConnection): void {
    if (c.dirty) return
    c.dirty = true
    this.dirty.push(c)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(this.runFlush)
    }
  }

  private runFlush = (): void => {
    this.flushScheduled = false
    const list = this.dirty
    this.dirty = this.spare
    this.spare = list
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      c.dirty = false
      try {
        c.flush()
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

  handshakeStarted(): void {
    this.pendingHandshakes++
  }

  handshakeEnded(): void {
    this.pendingHandshakes--
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

  private accept(data: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.pendingHandshakes >= (this.options.maxPendingHandshakes ?? 256)) return
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
    // derived from the client's dcid, so a retransmitted Initial lands on the same connection
    const scid = createHmac('sha256', this.cidSeed).update(header.dcid).digest().subarray(0, CID_LEN)
    let qc: QConn
    try {
      qc = quiche.Connection.accept(scid, null, this.localHost, remote, this.config)
    } catch (e) {
      this.onError(e)
      return
    }
    const connection = new QuicConnection(this, qc, false, scid, remote)
    this.conns.set(connection.key, connection)
    connection.aliasKey = cidKey(header.dcid)
    this.conns.set(connection.aliasKey, connection)
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
