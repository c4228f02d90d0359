import { native } from '@matrixai/quic'
import { copyBytes } from './bytes.js'
import { createHmac, randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import { TransportError } from '../NodosumError.js'
import type {
  Address,
  ConnectionHandler,
  ConnectionStats,
  StreamHandler,
  TransportConnection,
  TransportLimits,
  TransportStream
} from '../Transport.js'

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
/** Reset code a stream gets when a handler of ours throws. */
export const HANDLER_FAILED = 0x0fff
/** Bytes read from one stream per event-loop turn before the others get their turn. */
const READ_BUDGET = 256 * 1024
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

const cidKey = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')

/** Parses quiche's thrown strings such as `StreamReset(42)`. */
const errorCode = (e: unknown): number | undefined => {
  const match = /\((\d+)\)/.exec(String(e))
  return match === null ? undefined : Number(match[1])
}

const isCryptoCode = (code: number) => code >= 0x100 && code <= 0x1ff

/** One node's QUIC endpoint: a UDP socket shared by the client and server roles. */
export class QuicEndpoint {
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
    const deadline = performance.now() + 200
    await new Promise((resolve) => setImmediate(resolve))
    while (this.conns.size > 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    this.closed = true
    for (const c of new Set(this.conns.values())) c.destroy()
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }
}

/** Handler events are delivered through this, so a throwing handler resets its own stream only. */
const guard = (stream: QuicStream | undefined, f: () => void): void => {
  try {
    f()
  } catch {
    if (stream !== undefined && !stream.isClosed()) stream.reset(HANDLER_FAILED)
  }
}

export class QuicConnection implements TransportConnection {
  readonly key: string
  readonly id: string
  aliasKey: string | null = null
  private recvInfo: native.RecvInfo
  dirty = false
  established = false
  /** The JS side is done (closed locally, by the peer, or failed). */
  private jsClosed = false
  /** quiche reported closed and the connection left the endpoint. */
  private finalized = false
  private timer: NodeJS.Timeout | null = null
  private timerDeadline = 0
  private handshakeTimer: NodeJS.Timeout | null = null
  private readonly streams = new Map<number, QuicStream>()
  private readonly blocked = new Set<QuicStream>()
  private readonly pendingIncoming: Array<QuicStream> = []
  private handler: ConnectionHandler | undefined
  private nextStreamId: number
  streamsOpened = 0
  /** Settles the dialer's wait for the handshake. */
  onEstablished: (() => void) | undefined
  onHandshakeFailed: ((error: TransportError) => void) | undefined

  constructor(
    readonly endpoint: QuicEndpoint,
    readonly qc: QConn,
    readonly initiator: boolean,
    scid: Buffer,
    remote: HostPort
  ) {
    this.key = cidKey(scid)
    this.id = endpoint.connectionId()
    this.recvInfo = { from: remote, to: endpoint.localHost }
    this.nextStreamId = initiator ? 0 : 1
    endpoint.handshakeStarted()
    this.handshakeTimer = setTimeout(() => {
      this.handshakeTimer = null
      if (!this.established) {
        this.fail(new TransportError({ reason: 'HandshakeTimeout', message: `no QUIC handshake with ${remote.host}:${remote.port} within ${endpoint.options.handshakeTimeoutMs} ms` }))
      }
    }, endpoint.options.handshakeTimeoutMs)
  }

  get localAddress(): Address {
    return this.endpoint.address
  }

  get remoteAddress(): Address {
    return { host: this.recvInfo.from.host, port: this.recvInfo.from.port }
  }

  get limits(): TransportLimits {
    return this.endpoint.options.limits
  }

  recv(data: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.finalized) return
    const from = this.recvInfo.from
    if (from.port !== rinfo.port || from.host !== rinfo.address) {
      this.recvInfo = { from: { host: rinfo.address, port: rinfo.port }, to: this.endpoint.localHost }
    }
    try {
      this.qc.recv(data, this.recvInfo)
    } catch (e) {
      // quiche closed the connection itself (TLS failure and the like) when localError is set
      if (this.qc.localError() === null) this.endpoint.onError(e)
    }
    this.endpoint.markDirty(this)
  }

  /** Dispatches events, drains quiche's send queue, re-arms the timer. */
  flush(): void {
    const qc = this.qc
    if (!this.established && qc.isEstablished()) this.handshakeDone()
    if (this.established && !this.jsClosed) {
      for (const id of qc.readable()) this.readStream(id)
      if (this.blocked.size > 0) this.checkWritable()
    }
    const endpoint = this.endpoint
    const to = this.recvInfo.from
    for (let i = 0; i < 100_000; i++) {
      const buf = endpoint.scratch
      let r: [number, native.SendInfo] | null
      try {
        r = qc.send(buf)
      } catch (e) {
        endpoint.onError(e)
        break
      }
      if (r === null) break
      endpoint.sendDatagram(buf, r[0], to)
    }
    if (qc.isClosed()) {
      this.finalize()
      return
    }
    this.armTimer()
  }

  private armTimer(): void {
    const t = this.qc.timeout()
    if (t === null) {
      if (this.timer !== null) {
        clearTimeout(this.timer)
        this.timer = null
      }
      return
    }
    const deadline = performance.now() + t
    if (this.timer !== null && Math.abs(deadline - this.timerDeadline) < 1) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timerDeadline = deadline
    this.timer = setTimeout(this.onTimer, t)
  }

  private onTimer = (): void => {
    this.timer = null
    this.qc.onTimeout()
    this.flush()
  }

  private handshakeDone(): void {
    this.established = true
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer)
      this.handshakeTimer = null
    }
    this.endpoint.handshakeEnded()
    if (this.aliasKey !== null) {
      this.endpoint.unregister(this.aliasKey, this)
      this.aliasKey = null
    }
    if (this.initiator) {
      const settle = this.onEstablished
      this.onEstablished = undefined
      this.onHandshakeFailed = undefined
      settle?.()
    } else {
      this.endpoint.onAccept(this)
    }
  }

  private readStream(id: number): void {
    let s = this.streams.get(id)
    if (s === undefined) {
      // a new stream of the peer's (a closed one of ours would not come back readable)
      if ((id & 1) === (this.initiator ? 0 : 1)) return
      s = new QuicStream(this, id, undefined)
      this.streams.set(id, s)
      this.streamsOpened++
      const handler = this.handler
      if (handler === undefined) this.pendingIncoming.push(s)
      else guard(s, () => handler.onStream(s!))
    }
    s.read()
  }

  private checkWritable(): void {
    for (const s of [...this.blocked]) {
      let capacity: number
      try {
        capacity = this.qc.streamCapacity(s.id)
      } catch (e) {
        this.blocked.delete(s)
        s.peerStopped(e)
        continue
      }
      if (capacity > 0) {
        this.blocked.delete(s)
        s.pump()
      }
    }
  }

  block(s: QuicStream): void {
    this.blocked.add(s)
  }

  dropStream(s: QuicStream): void {
    this.streams.delete(s.id)
    this.blocked.delete(s)
  }

  setHandler = (handler: ConnectionHandler): void => {
    this.handler = handler
    for (const s of this.pendingIncoming.splice(0)) guard(s, () => handler.onStream(s))
  }

  peerCertificates = (): ReadonlyArray<Uint8Array> => this.qc.peerCertChain() ?? []

  openStream = (handler: StreamHandler): TransportStream => {
    if (this.jsClosed) throw new TransportError({ reason: 'ConnectionClosed', message: `connection ${this.id} is closed` })
    if (this.qc.peerStreamsLeftBidi() <= 0) {
      throw new TransportError({ reason: 'StreamLimit', message: `the peer allows no more open streams (limit ${this.qc.stats().peerInitialMaxStreamsBidi})` })
    }
    const id = this.nextStreamId
    this.nextStreamId += 4
    try {
      this.qc.streamSend(id, new Uint8Array(0), false)
    } catch (e) {
      throw new TransportError({ reason: 'StreamLimit', message: `cannot open stream: ${String(e)}` })
    }
    const s = new QuicStream(this, id, handler)
    this.streams.set(id, s)
    this.streamsOpened++
    return s
  }

  streamsLeft = (): number => (this.jsClosed ? 0 : this.qc.peerStreamsLeftBidi())

  close = (code = 0, reason = ''): void => {
    if (this.jsClosed) return
    try {
      this.qc.close(true, code, Buffer.from(reason))
    } catch {
      // already closing
    }
    this.endpoint.markDirty(this)
    this.closeJs(undefined, new TransportError({ reason: 'ConnectionClosed', message: `connection ${this.id} closed locally` }))
  }

  isClosed = (): boolean => this.jsClosed

  stats = (): ConnectionStats => {
    const s = this.qc.stats()
    let rtt: number | undefined
    for (const path of this.qc.pathStats()) {
      rtt = path.rtt
      break
    }
    return {
      bytesSent: s.sentBytes,
      bytesReceived: s.recvBytes,
      packetsSent: s.sent,
      packetsReceived: s.recv,
      packetsLost: s.lost,
      rttMicros: rtt === undefined ? undefined : Math.round(rtt * 1000),
      streamsOpen: this.streams.size,
      streamsOpened: this.streamsOpened
    }
  }

  /** Closes the JS side: every stream and the handler hear of it once. */
  private closeJs(error: TransportError | undefined, streamError: TransportError): void {
    if (this.jsClosed) return
    this.jsClosed = true
    for (const s of [...this.streams.values()]) s.close(streamError)
    this.streams.clear()
    this.blocked.clear()
    this.pendingIncoming.length = 0
    const handler = this.handler
    if (handler?.onClose !== undefined) guard(undefined, () => handler.onClose!(error))
  }

  /** Why quiche closed the connection, as a transport error (undefined for our own close). */
  private closeReason(): TransportError {
    const peer = this.qc.peerError()
    const local = this.qc.localError()
    if (this.qc.isTimedOut()) return new TransportError({ reason: 'IdleTimeout', message: `no packets from ${this.remoteAddress.host}:${this.remoteAddress.port} within the idle timeout` })
    if (peer !== null) {
      if (!peer.isApp && isCryptoCode(peer.errorCode)) {
        return new TransportError({ reason: 'TlsFailed', message: `the peer refused the TLS handshake (alert ${peer.errorCode - 0x100})`, code: peer.errorCode })
      }
      return new TransportError({
        reason: 'PeerClosed',
        message: `peer closed the connection (code ${peer.errorCode}${peer.reason.byteLength > 0 ? `: ${Buffer.from(peer.reason).toString('utf8')}` : ''})`,
        code: peer.errorCode
      })
    }
    if (local !== null && !local.isApp && isCryptoCode(local.errorCode)) {
      return new TransportError({ reason: 'TlsFailed', message: `TLS handshake failed (alert ${local.errorCode - 0x100})`, code: local.errorCode })
    }
    return new TransportError({ reason: 'ConnectionClosed', message: 'connection closed' })
  }

  /** Fails the connection without a graceful close (handshake timeout). */
  private fail(error: TransportError): void {
    try {
      this.qc.close(false, 0, Buffer.from('timeout'))
    } catch {
      // already closing
    }
    this.destroyWith(error)
  }

  destroy(): void {
    this.destroyWith(undefined)
  }

  private destroyWith(error: TransportError | undefined): void {
    if (this.finalized) return
    this.finalized = true
    if (this.timer !== null) clearTimeout(this.timer)
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer)
    this.timer = null
    this.handshakeTimer = null
    if (!this.established) this.endpoint.handshakeEnded()
    this.endpoint.unregister(this.key, this)
    if (this.aliasKey !== null) this.endpoint.unregister(this.aliasKey, this)
    const reason = error ?? this.closeReason()
    if (!this.established || this.onHandshakeFailed !== undefined) {
      const fail = this.onHandshakeFailed
      this.onHandshakeFailed = undefined
      this.onEstablished = undefined
      fail?.(reason)
    }
    this.closeJs(reason, reason)
  }

  private finalize(): void {
    this.destroyWith(undefined)
  }
}

export class QuicStream implements TransportStream {
  private handler: StreamHandler | undefined
  private readonly outbox: Array<Uint8Array> = []
  /** For each outbox entry, what to call once quiche took all of it (undefined: nothing). */
  private readonly releases: Array<(() => void) | undefined> = []
  private outboxBytes = 0
  private wantDrain = false
  private finQueued = false
  private finSent = false
  private readDone = false
  private paused = false
  private closed = false

  constructor(
    readonly connection: QuicConnection,
    readonly id: number,
    handler: StreamHandler | undefined
  ) {
    this.handler = handler
  }

  setHandler = (handler: StreamHandler): void => {
    this.handler = handler
    if (!this.paused) this.connection.endpoint.markDirty(this.connection)
  }

  write = (chunk: Uint8Array, owned = false, onRelease?: () => void): boolean => {
    if (this.closed || this.finQueued) {
      onRelease?.()
      throw new TransportError({ reason: 'StreamClosed', message: `stream ${this.id} is closed` })
    }
    let offset = 0
    if (this.outbox.length === 0 && chunk.byteLength > 0) {
      let n: number | null
      try {
        n = this.connection.qc.streamSend(this.id, chunk, false)
      } catch (e) {
        onRelease?.()
        this.peerStopped(e)
        throw new TransportError({ reason: 'StreamReset', message: `stream ${this.id}: ${String(e)}`, code: errorCode(e) })
      }
      offset = n ?? 0
      if (offset > 0) this.connection.endpoint.markDirty(this.connection)
    }
    if (offset < chunk.byteLength) {
      this.outbox.push(owned ? chunk.subarray(offset) : copyBytes(chunk, offset))
      this.releases.push(owned ? onRelease : undefined)
      this.outboxBytes += chunk.byteLength - offset
      this.connection.block(this)
      if (!owned) onRelease?.()
    } else {
      onRelease?.()
    }
    const ok = this.outboxBytes < this.connection.limits.writeHighWaterMark
    if (!ok) this.wantDrain = true
    return ok
  }

  writableLength = (): number => this.outboxBytes

  /** Moves queued bytes into quiche as capacity allows; then FIN; then drain. */
  pump(): void {
    if (this.closed) return
    const qc = this.connection.qc
    while (this.outbox.length > 0) {
      const chunk = this.outbox[0]!
      let n: number | null
      try {
        n = qc.streamSend(this.id, chunk, false)
      } catch (e) {
        this.peerStopped(e)
        return
      }
      const sent = n ?? 0
      this.outboxBytes -= sent
      if (sent < chunk.byteLength) {
        this.outbox[0] = chunk.subarray(sent)
        this.connection.block(this)
        break
      }
      this.outbox.shift()
      this.releases.shift()?.()
    }
    this.connection.endpoint.markDirty(this.connection)
    if (this.outbox.length === 0 && this.finQueued && !this.finSent) this.sendFin()
    if (this.wantDrain && this.outboxBytes < this.connection.limits.writeHighWaterMark) {
      this.wantDrain = false
      const handler = this.handler
      if (handler?.onDrain !== undefined) guard(this, handler.onDrain)
    }
  }

  private sendFin(): void {
    let r: number | null
    try {
      r = this.connection.qc.streamSend(this.id, new Uint8Array(0), true)
    } catch (e) {
      this.peerStopped(e)
      return
    }
    if (r === null) {
      this.connection.block(this)
      return
    }
    this.finSent = true
    this.connection.endpoint.markDirty(this.connection)
    this.maybeFinish()
  }

  end = (): void => {
    if (this.closed || this.finQueued) return
    this.finQueued = true
    if (this.outbox.length === 0) this.sendFin()
  }

  reset = (code: number): void => {
    if (this.closed) return
    const qc = this.connection.qc
    try {
      qc.streamShutdown(this.id, quiche.Shutdown.Write, code)
    } catch {
      // already finished
    }
    try {
      qc.streamShutdown(this.id, quiche.Shutdown.Read, code)
    } catch {
      // already finished
    }
    this.connection.endpoint.markDirty(this.connection)
    this.close(undefined)
  }

  pause = (): void => {
    this.paused = true
  }

  resume = (): void => {
    if (!this.paused) return
    this.paused = false
    this.connection.endpoint.markDirty(this.connection)
  }

  isClosed = (): boolean => this.closed

  /** Reads what quiche holds for this stream, unless paused or unclaimed. */
  read(): void {
    const handler = this.handler
    if (handler === undefined || this.paused || this.closed || this.readDone) return
    const qc = this.connection.qc
    const buf = this.connection.endpoint.readBuf
    // a budget per stream per turn: a bulk stream cannot keep the others waiting for a whole turn
    let budget = READ_BUDGET
    for (let i = 0; i < 10_000 && budget > 0 && !this.paused && !this.closed; i++) {
      let r: [number, boolean] | null
      try {
        r = qc.streamRecv(this.id, buf)
      } catch (e) {
        this.close(new TransportError({ reason: 'StreamReset', message: `stream ${this.id} reset by peer with code ${errorCode(e) ?? '?'}`, code: errorCode(e) }))
        return
      }
      if (r === null) return
      const [n, fin] = r
      budget -= n
      if (n > 0) guard(this, () => this.handler!.onData(buf.subarray(0, n)))
      if (fin && !this.closed) {
        this.readDone = true
        const h = this.handler
        if (h?.onEnd !== undefined) guard(this, h.onEnd)
        this.maybeFinish()
        return
      }
    }
    // more remains: come back next turn
    this.connection.endpoint.markDirty(this.connection)
  }

  peerStopped(e: unknown): void {
    this.close(new TransportError({ reason: 'StreamReset', message: `stream ${this.id} stopped by peer with code ${errorCode(e) ?? '?'}`, code: errorCode(e) }))
  }

  private maybeFinish(): void {
    if (!this.closed && this.finSent && this.readDone) this.close(undefined)
  }

  close(error: TransportError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.outbox.length = 0
    this.outboxBytes = 0
    for (const release of this.releases.splice(0)) release?.()
    this.connection.dropStream(this)
    const handler = this.handler
    if (handler?.onClose !== undefined) guard(undefined, () => handler.onClose!(error))
  }
}
