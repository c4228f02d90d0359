import type * as native from '@matrixai/quic/native/index.js'
import type dgram from 'node:dgram'
import { TransportError } from '../../NodosumError.js'
import type { Address, ConnectionHandler, ConnectionStats, StreamHandler, TransportConnection, TransportLimits, TransportStream } from '../../Transport.js'
import { FIRST_READ, guard, QuicStream, READ_BUDGET, type StreamHost } from './stream.js'

type QConn = native.Connection
type HostPort = native.Host

export const cidKey = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')

const isCryptoCode = (code: number) => code >= 0x100 && code <= 0x1ff

/** Application close code of a connection that sent more than it may before authenticating (`ErrorCode.NotAuthenticated`). */
export const NOT_AUTHENTICATED = 0x101
/** Known streams of a connection up to which readable ones are found by probing each (`readStreams`). */
const PROBE_STREAMS = 16

/** Moves `order[i]` ahead of the streams of its urgency before it (the one read last is probed first among equals). */
const promote = (order: Array<QuicStream>, i: number): void => {
  const s = order[i]!
  const urgency = s.urgency
  let j = i
  while (j > 0 && order[j - 1]!.urgency === urgency) {
    order[j] = order[j - 1]!
    j--
  }
  order[j] = s
}

/** What a connection needs of its endpoint (`endpoint.ts` implements it). */
export interface ConnectionHost {
  readonly localHost: HostPort
  readonly address: Address
  readonly options: { readonly limits: TransportLimits; readonly handshakeTimeoutMs: number; readonly maxUnauthenticatedBytes?: number }
  /** Shared read buffer: `onData` gets views into it, valid only during the call. */
  readonly readBuf: Buffer
  /** The send buffer to fill; replaced when the socket keeps the last one. */
  readonly scratch: Buffer
  connectionId(): string
  markDirty(c: QuicConnection): void
  sendDatagram(buf: Buffer, len: number, to: HostPort): void
  unregister(key: string, c: QuicConnection): void
  handshakeStarted(c: QuicConnection): void
  handshakeEnded(c: QuicConnection): void
  onAccept: (connection: QuicConnection) => void
  onError: (error: unknown) => void
}

/**
 * One QUIC connection: feeds received datagrams to quiche, dispatches stream events, drains
 * quiche's send queue when flushed, and keeps quiche's timer.
 *
 * Timers: the packet pump's timer (quiche's `timeout()`) and the handshake deadline are plain
 * `setTimeout`s, one of each per connection at most — the measured design of the hot path (an
 * Effect fiber per connection timer costs more than it does). Both are cleared when the
 * connection is destroyed (`destroyWith`), and the endpoint destroys every connection on close,
 * so none outlives the transport's scope.
 */
export class QuicConnection implements TransportConnection, StreamHost {
  readonly key: string
  readonly id: string
  aliasKey: string | null = null
  private recvInfo: native.RecvInfo
  dirty = false
  /** Received this turn; its packets are sent at the end of it (`QuicEndpoint`'s send pass). */
  sendQueued = false
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
  private readonly readableIds: Array<number> = []
  /** The id the peer's next bidirectional stream will have (its first: 0 when it dialed, 1 when this node did). */
  private nextPeerStream: number
  private readonly readableUrgencies: Array<number> = []
  /**
   * Packets arrived, or a stream asked to be read, since the last receive pass looked for
   * readable streams. A pass that follows only this node's own writes (the send pass after the
   * handlers answered) does not ask quiche again.
   */
  private readPending = true
  /** The known streams in the order they are probed: the most urgent first, within an urgency the one read last first. */
  private order: Array<QuicStream> = []
  /** Streams came or went, or a priority changed, since `order` was built. */
  private orderStale = false
  private handler: ConnectionHandler | undefined
  private nextStreamId: number
  streamsOpened = 0
  /** Bytes an accepted connection may still send before `authenticated()`, once a handler that `authenticates` is set; else Infinity. */
  private preAuthLeft: number
  private authenticatedOnce = false
  /** Settles the dialer's wait for the handshake. */
  onEstablished: (() => void) | undefined
  onHandshakeFailed: ((error: TransportError) => void) | undefined

  constructor(
    readonly endpoint: ConnectionHost,
    readonly qc: QConn,
    readonly initiator: boolean,
    scid: Uint8Array,
    remote: HostPort,
    /** The source host of an accepted connection not validated by a Retry (counted per source while half-open). */
    readonly unvalidatedSource: string | null = null
  ) {
    this.key = cidKey(scid)
    this.id = endpoint.connectionId()
    this.recvInfo = { from: remote, to: endpoint.localHost }
    this.nextStreamId = initiator ? 0 : 1
    this.nextPeerStream = initiator ? 1 : 0
    this.preAuthLeft = Infinity
    endpoint.handshakeStarted(this)
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

  get readBuf(): Buffer {
    return this.endpoint.readBuf
  }

  markDirty(): void {
    this.endpoint.markDirty(this)
  }

  recv(data: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.finalized) return
    if ((this.preAuthLeft -= data.length) < 0) return this.overUnauthenticatedBytes()
    const from = this.recvInfo.from
    if (from.port !== rinfo.port || from.host !== rinfo.address) {
      this.recvInfo = { from: { host: rinfo.address, port: rinfo.port }, to: this.endpoint.localHost }
    }
    this.readPending = true
    try {
      this.qc.recv(data, this.recvInfo)
    } catch (e) {
      // quiche closed the connection itself (TLS failure and the like) when localError is set
      if (this.qc.localError() === null) this.endpoint.onError(e)
    }
    this.endpoint.markDirty(this)
  }

  /** The cluster handshake succeeded: the peer may now use the whole flow-control window. */
  authenticated = (): void => {
    this.preAuthLeft = Infinity
    this.authenticatedOnce = true
  }

  /** Received more than `maxUnauthenticatedBytes` before authenticating: closed, its streams with it. */
  private overUnauthenticatedBytes(): void {
    if (this.jsClosed) return
    const limit = this.endpoint.options.maxUnauthenticatedBytes
    try {
      this.qc.close(true, NOT_AUTHENTICATED, Buffer.from('unauthenticated bytes'))
    } catch {
      // already closing
    }
    this.endpoint.markDirty(this)
    const error = new TransportError({ reason: 'UnauthenticatedBytes', message: `the peer sent more than ${limit} bytes before authenticating`, code: NOT_AUTHENTICATED })
    this.closeJs(error, error)
  }

  /** One whole turn at once: `receive`, then `transmit` (the timer's, the dialer's first packet). */
  flush(): void {
    this.receive()
    this.transmit()
  }

  /**
   * Dispatches events: delivers what the streams received and moves waiting bytes into quiche.
   * Sending is left to `transmit`, which the endpoint runs once the microtasks the handlers
   * started have run, so answers written a few microtasks after their request leave in the
   * datagram that acknowledges it (quiche sends an ACK-only packet when asked to send after
   * ack-eliciting packets arrived with nothing else queued).
   *
   * Reading goes in two passes. First every readable stream, the most urgent first, gets one
   * read of at most `FIRST_READ` bytes: a small message arrives whole in it, so a request is
   * delivered, and what its handler writes at once (the answer) is sent, before any stream's
   * bulk is read and decoded. Then the streams with more get the rest of their `READ_BUDGET`;
   * what is left after it waits for the next turn.
   */
  receive(): void {
    const qc = this.qc
    if (!this.established && qc.isEstablished()) this.handshakeDone()
    if (this.established && !this.jsClosed) {
      if (this.readPending) this.readStreams()
      if (this.blocked.size > 0) this.checkWritable()
    }
  }

  /** A stream has bytes to read that no packet announces (a handler was set, reading resumed). */
  wantRead(): void {
    this.readPending = true
    this.endpoint.markDirty(this)
  }

  /** A stream's urgency changed: the probing order is built again. */
  reorder(): void {
    this.orderStale = true
  }

  /**
   * The two passes over the readable streams. Which streams are readable costs a call into the
   * binding per stream (quiche's readable-stream iterator costs ~40 µs to build and walk through
   * it, ~100 times `streamReadable(id)`; a connection has a few streams): up to PROBE_STREAMS
   * known streams are probed in `order`, then the peer's next stream ids (a stream it opened
   * since), and a drained stream asks `isReadable()` whether any other is left — most turns
   * carry one stream's messages, and the probing stops there. Only when no probe finds the
   * stream quiche has bytes for, the iterator, its ids sorted by urgency.
   */
  private readStreams(): void {
    const qc = this.qc
    this.readPending = false
    if (!qc.isReadable()) return
    let more: Array<QuicStream> | undefined
    let found = false
    /** `isReadable()` said no after a read: nothing left to look for. */
    let drained = false
    if (this.streams.size <= PROBE_STREAMS) {
      if (this.orderStale) this.buildOrder()
      // a handler may open or close streams meanwhile: they change `this.order` at the next pass, not this array
      const order = this.order
      for (let i = 0; i < order.length; i++) {
        const s = order[i]!
        if (s.isClosed() || !qc.streamReadable(s.id)) continue
        found = true
        promote(order, i)
        if (s.read(FIRST_READ)) (more ??= []).push(s)
        else if (!qc.isReadable()) {
          drained = true
          break
        }
      }
      if (!drained) {
        for (let id = this.nextPeerStream; qc.streamReadable(id); id += 4) {
          found = true
          const s = this.readStream(id)
          if (s !== undefined && s.read(FIRST_READ)) (more ??= []).push(s)
        }
      }
    }
    if (!found) {
      const ids = this.readableByUrgency()
      for (let i = 0; i < ids.length; i++) {
        const s = this.readStream(ids[i]!)
        if (s !== undefined && s.read(FIRST_READ)) (more ??= []).push(s)
      }
    }
    if (more !== undefined) {
      // a handler wrote (an answer): it leaves before the bulk is read (a write marks the connection dirty)
      if (this.dirty) this.sendAll()
      for (let i = 0; i < more.length; i++) if (more[i]!.read(READ_BUDGET - FIRST_READ)) this.wantRead()
    }
    // probing finds the known streams and the peer's next new ones; a stream it missed (the peer
    // opened two at once and the first has no bytes yet) is read now, the known ones left as they are
    if (found && !drained && qc.isReadable()) {
      for (const id of qc.readable()) {
        if (this.streams.has(id)) continue
        const s = this.readStream(id)
        if (s !== undefined && s.read(FIRST_READ)) this.wantRead()
      }
    }
  }

  private buildOrder(): void {
    this.orderStale = false
    // a new array: a pass walking the old one is not disturbed; sort is stable (equal urgencies keep their order)
    const order = [...this.streams.values()]
    order.sort((x, y) => x.urgency - y.urgency)
    this.order = order
  }

  /** Drains quiche's send queue to the socket, then re-arms the timer (or finalizes a closed connection). */
  transmit(): void {
    if (this.finalized) return
    this.sendAll()
    if (this.qc.isClosed()) {
      this.finalize()
      return
    }
    this.armTimer()
  }

  /**
   * The readable streams' ids from quiche's iterator, the most urgent first (quiche's order among
   * equals). The list is reused from turn to turn (valid until the next call); only a list out of
   * order is sorted.
   */
  private readableByUrgency(): Array<number> {
    const ids = this.readableIds
    ids.length = 0
    for (const id of this.qc.readable()) ids.push(id)
    if (ids.length < 2) return ids
    const urgencies = this.readableUrgencies
    urgencies.length = 0
    let sorted = true
    for (let i = 0; i < ids.length; i++) {
      const u = this.streams.get(ids[i]!)?.urgency ?? 8
      if (i > 0 && u < urgencies[i - 1]!) sorted = false
      urgencies.push(u)
    }
    if (sorted) return ids
    const order = ids.map((_, i) => i).sort((x, y) => urgencies[x]! - urgencies[y]! || x - y)
    return order.map((i) => ids[i]!)
  }

  /** Hands quiche's send queue to the socket. */
  private sendAll(): void {
    const qc = this.qc
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
    this.readPending = true
    this.qc.onTimeout()
    this.flush()
  }

  private handshakeDone(): void {
    this.established = true
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer)
      this.handshakeTimer = null
    }
    this.endpoint.handshakeEnded(this)
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

  /** The stream of a readable id (a new one of the peer's is announced to the handler); undefined for none. */
  private readStream(id: number): QuicStream | undefined {
    let s = this.streams.get(id)
    if (s === undefined) {
      // a new stream of the peer's (a closed one of ours would not come back readable)
      if ((id & 1) === (this.initiator ? 0 : 1)) return undefined
      s = new QuicStream(this, id, undefined)
      this.streams.set(id, s)
      this.orderStale = true
      this.streamsOpened++
      if (id >= this.nextPeerStream) this.nextPeerStream = id + 4
      const handler = this.handler
      if (handler === undefined) this.pendingIncoming.push(s)
      else guard(s, () => handler.onStream(s!))
    }
    return s
  }

  /** True when a stream more urgent than `urgency` has bytes waiting for room in quiche. */
  moreUrgentWaiting(urgency: number): boolean {
    if (this.blocked.size === 0) return false
    for (const s of this.blocked) if (s.urgency < urgency) return true
    return false
  }

  /** Moves waiting bytes into quiche, the most urgent streams first (they take the room first). */
  private checkWritable(): void {
    const waiting = [...this.blocked]
    if (waiting.length > 1) waiting.sort((x, y) => x.urgency - y.urgency)
    for (const s of waiting) {
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
    this.orderStale = true
    this.blocked.delete(s)
  }

  setHandler = (handler: ConnectionHandler): void => {
    this.handler = handler
    const max = this.endpoint.options.maxUnauthenticatedBytes
    if (handler.authenticates === true && !this.initiator && max !== undefined && !this.authenticatedOnce) {
      // what arrived before (the TLS handshake) counts too
      this.preAuthLeft = max - this.qc.stats().recvBytes
      if (this.preAuthLeft < 0) return this.overUnauthenticatedBytes()
    }
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
    this.orderStale = true
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
    if (!this.established) this.endpoint.handshakeEnded(this)
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
