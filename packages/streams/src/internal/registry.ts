import { ErrorCode, type Nodosum, type PeerStream, type TransportError } from '@mycorrizal/nodosum'
import { Effect, Fiber, LogLevel, Runtime } from 'effect'
import type { Application, ApplicationConfig, ApplicationStats, ReceiveFunc, Stream, StreamStats } from '../Application.js'
import { type DeliveryFailure, SendError, StreamsError } from '../StreamsError.js'
import { BufferPool } from './pool.js'

/** Streams per connection above which a warning is logged (spec threshold). */
export const WARN_STREAMS_PER_CONNECTION = 50

export interface RegistryOptions {
  /** How long an incoming stream for a name not created yet is held before it is refused (ms). */
  readonly graceMs: number
  readonly maxMessageSize: number
  /** Streams a peer allows per connection (for the error threshold). */
  readonly connectionStreamLimit: number
}

type Log = (level: 'Debug' | 'Info' | 'Warning' | 'Error', message: string, annotations: Record<string, unknown>) => void

const levels = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error } as const

const NAME_BYTES = 255
const utf8Length = (s: string) => Buffer.byteLength(s, 'utf8')

/** An incoming stream waiting to be claimed, with the cancel of its refusal. */
interface Held {
  readonly ps: PeerStream
  readonly cancel: () => void
}

/** Outgoing side of one stream towards one peer. */
interface Outgoing {
  readonly peer: string
  readonly ps: PeerStream
  /** Copies of messages the transport could not take yet (at most the buffer size). */
  readonly pending: Array<Uint8Array>
  pendingBytes: number
  /** Messages and bytes handed to this QUIC stream: all lost if the peer refuses the stream. */
  written: number
  writtenBytes: number
  /** Senders waiting for room, in order; called with the failure when the peer is gone. */
  readonly waiters: Array<(failure?: DeliveryFailure) => void>
  /** The transport said "wait for drain". */
  blocked: boolean
}

/** Incoming side of one stream from one peer. */
interface Incoming {
  readonly peer: string
  readonly ps: PeerStream
  /** Messages waiting for an async receive handler. */
  readonly queue: Array<Uint8Array>
  queueBytes: number
  busy: boolean
}

/** A send that could not finish at once: resolves when every target's buffer took the message. */
interface SendWait {
  remaining: number
  failures: Array<DeliveryFailure>
  accepted: Array<string>
  resolve: () => void
}

/** Spec thresholds of the stream health warnings. */
const ERROR_RATE_WARNING = 0.05
/** Below this many sends one failure is not yet a rate worth a warning. */
const ERROR_RATE_MIN_ATTEMPTS = 20
const BACKLOG_WARNING_BYTES = 10 * 1024 * 1024
/** Outgoing copies from this size on come from the pool (smaller ones are framed into a batch at once). */
const POOLED_MIN_BYTES = 64 * 1024
/** Free pooled buffers kept at most, and how long they are kept without use. */
const POOL_RETAINED_BYTES = 64 * 1024 * 1024
const POOL_IDLE_MS = 10_000

class StreamImpl implements Stream {
  readonly outgoing = new Map<string, Outgoing>()
  readonly incoming = new Map<string, Incoming>()
  receiveFn: ReceiveFunc | undefined
  refusedFn: ((node: string) => void) | undefined
  closed = false
  bytesSent = 0
  bytesReceived = 0
  messagesOut = 0
  messagesIn = 0
  failedSends = 0
  receiveErrors = 0
  readonly createdAt: number
  lastActive: number
  /** Set while the error rate is above the warning threshold (one warning per excursion). */
  private errorRateHigh = false
  /** Peers whose queued bytes are above the warning threshold (one warning per excursion). */
  private readonly backlogged = new Set<string>()

  constructor(
    readonly app: AppImpl,
    readonly streamName: string
  ) {
    this.createdAt = app.registry.now()
    this.lastActive = this.createdAt
  }

  private get bufferSize(): number {
    return this.app.config.streamBufferSize
  }

  /** A buffer has room for `bytes` more while under both its message and byte limits (an empty one takes any message). */
  private room(count: number, held: number, bytes: number): boolean {
    return count === 0 || (count < this.bufferSize && held + bytes <= this.app.config.streamBufferBytes)
  }

  private full(count: number, held: number): boolean {
    return count >= this.bufferSize || held >= this.app.config.streamBufferBytes
  }

  private enqueue(o: Outgoing, payload: Uint8Array): void {
    o.pending.push(payload)
    o.pendingBytes += payload.byteLength
    if (!this.backlogged.has(o.peer)) {
      const queued = o.pendingBytes + o.ps.writableLength()
      if (queued >= BACKLOG_WARNING_BYTES) {
        this.backlogged.add(o.peer)
        this.app.registry.log('Warning', 'stream backlog high', {
          app: this.app.id,
          stream: this.streamName,
          node: o.peer,
          queuedBytes: queued,
          threshold: BACKLOG_WARNING_BYTES
        })
      }
    }
  }

  private dequeue(o: Outgoing): Uint8Array {
    const payload = o.pending.shift()!
    o.pendingBytes -= payload.byteLength
    if (o.pendingBytes === 0) this.backlogged.delete(o.peer)
    return payload
  }

  /** Drops what waits in a buffer; pooled copies go back to the pool. */
  private discardPending(o: Outgoing): void {
    const pool = this.app.registry.pool
    for (const payload of o.pending.splice(0)) pool.release(payload)
    o.pendingBytes = 0
  }

  /** Warns once when the share of failed sends goes above the threshold; re-arms when it falls back below half of it. */
  private checkErrorRate(): void {
    const attempts = this.messagesOut + this.failedSends
    const rate = attempts === 0 ? 0 : this.failedSends / attempts
    if (!this.errorRateHigh && rate > ERROR_RATE_WARNING && attempts >= ERROR_RATE_MIN_ATTEMPTS) {
      this.errorRateHigh = true
      this.app.registry.log('Warning', 'stream error rate high', {
        app: this.app.id,
        stream: this.streamName,
        errorRate: Number(rate.toFixed(4)),
        threshold: ERROR_RATE_WARNING
      })
    } else if (this.errorRateHigh && rate <= ERROR_RATE_WARNING / 2) {
      this.errorRateHigh = false
    }
  }

  send = (payload: Uint8Array, nodeIds: ReadonlyArray<string> = []): Effect.Effect<void, SendError | StreamsError> =>
    Effect.suspend((): Effect.Effect<void, SendError | StreamsError> => {
      const outcome = this.take(payload, nodeIds)
      if (outcome === undefined) return Effect.void
      if (outcome instanceof StreamsError) return Effect.fail(outcome)
      return Effect.async<void, SendError>((resume) => {
        const finish = () => {
          if (outcome.failures.length === 0) resume(Effect.void)
          else resume(Effect.fail(sendError(this, outcome)))
        }
        if (outcome.remaining === 0) finish()
        else outcome.resolve = finish
      })
    })

  offer = (payload: Uint8Array, nodeIds: ReadonlyArray<string> = []): Promise<void> | undefined => {
    const outcome = this.take(payload, nodeIds)
    if (outcome === undefined) return undefined
    if (outcome instanceof StreamsError) throw outcome
    return new Promise<void>((resolve, reject) => {
      const finish = () => (outcome.failures.length === 0 ? resolve() : reject(sendError(this, outcome)))
      if (outcome.remaining === 0) finish()
      else outcome.resolve = finish
    })
  }

  /**
   * The hot path, plain: takes the message into each target's buffer. Returns undefined when
   * every target took it at once, a `StreamsError` when nothing was sent, else a wait.
   */
  take(payload: Uint8Array, nodeIds: ReadonlyArray<string>): SendWait | StreamsError | undefined {
    if (this.closed) return new StreamsError({ reason: 'StreamClosed', message: `stream '${this.label()}' is closed` })
    const registry = this.app.registry
    if (payload.byteLength > registry.options.maxMessageSize) {
      return new StreamsError({
        reason: 'MessageTooLarge',
        message: `message of ${payload.byteLength} bytes exceeds the maximum of ${registry.options.maxMessageSize} bytes`
      })
    }
    const self = registry.nodosum.nodeId
    const targets = nodeIds.length === 0 ? registry.nodosum.nodes().filter((id) => id !== self) : nodeIds
    let wait: SendWait | undefined
    let i = 0
    // created at the first failure or full buffer: every target before it was accepted
    const getWait = () =>
      (wait ??= { remaining: 0, failures: [], accepted: targets.slice(0, i).filter((n) => n !== self), resolve: () => {} })
    for (; i < targets.length; i++) {
      const node = targets[i]!
      if (node === self) {
        this.deliverLocal(payload)
        continue
      }
      const out = this.outgoingTo(node)
      if (!(out as Outgoing).ps) {
        const failure = out as DeliveryFailure
        this.failedSends++
        getWait().failures.push(failure)
        continue
      }
      const o = out as Outgoing
      if (!o.blocked && o.pending.length === 0) {
        this.write(o, payload)
        wait?.accepted.push(node)
        continue
      }
      if (this.room(o.pending.length, o.pendingBytes, payload.byteLength)) {
        this.enqueue(o, registry.pool.copy(payload))
        wait?.accepted.push(node)
        continue
      }
      // buffer full: wait for room, then queue a copy
      const w = getWait()
      w.remaining++
      const copy = registry.pool.copy(payload)
      o.waiters.push((failure) => {
        if (failure === undefined) {
          this.enqueue(o, copy)
          w.accepted.push(node)
        } else {
          registry.pool.release(copy)
          w.failures.push(failure)
        }
        if (--w.remaining === 0) w.resolve()
      })
    }
    if (wait !== undefined && wait.failures.length > 0) this.checkErrorRate()
    if (wait !== undefined && wait.accepted.length === 0 && wait.failures.length === 0 && wait.remaining === 0) return undefined
    return wait
  }

  private label(): string {
    return this.streamName === '' ? `${this.app.id} (default)` : `${this.app.id}/${this.streamName}`
  }

  /** `owned`: the payload is this stream's own copy (from its buffer), not the caller's; a pooled one goes back to the pool once the transport is done with it. */
  private write(o: Outgoing, payload: Uint8Array, owned = false): void {
    let ok: boolean
    try {
      ok = o.ps.send(payload, owned, owned ? this.app.registry.pool.releaser(payload) : undefined)
    } catch (e) {
      this.dropOutgoing(o, 'ConnectionLost', (e as Error).message)
      this.failedSends++
      return
    }
    this.bytesSent += payload.byteLength
    this.messagesOut++
    o.written++
    o.writtenBytes += payload.byteLength
    this.lastActive = this.app.registry.now()
    if (!ok) o.blocked = true
  }

  /** The transport drained: move buffered messages on and let waiting senders in. */
  private drain(o: Outgoing): void {
    o.blocked = false
    while (!o.blocked && o.pending.length > 0) this.write(o, this.dequeue(o), true)
    while (o.waiters.length > 0 && !this.full(o.pending.length, o.pendingBytes)) o.waiters.shift()!()
    while (!o.blocked && o.pending.length > 0) this.write(o, this.dequeue(o), true)
  }

  /** The outgoing side to a node, opened on first use, or why there is none. */
  private outgoingTo(node: string): Outgoing | DeliveryFailure {
    const existing = this.outgoing.get(node)
    if (existing !== undefined) return existing
    const registry = this.app.registry
    if (!registry.nodosum.nodes().includes(node)) {
      return { node, reason: 'UnknownNode', message: `node '${node}' is not an alive member` }
    }
    let ps: PeerStream
    const holder: { o?: Outgoing } = {}
    try {
      ps = registry.nodosum.openStream(node, this.app.id, this.streamName, {
        onMessage: (payload, owned) => this.receive(node, payload, owned),
        onDrain: () => {
          if (holder.o !== undefined) this.drain(holder.o)
        },
        onClose: (error) => {
          if (holder.o !== undefined && this.outgoing.get(node) === holder.o) {
            const refused = error !== undefined && 'code' in error && (error as TransportError).code === ErrorCode.UnknownStream
            const closedByPeer = error !== undefined && 'code' in error && (error as TransportError).code === ErrorCode.StreamClosed
            this.dropOutgoing(
              holder.o,
              refused ? 'StreamRefused' : closedByPeer ? 'StreamClosed' : 'ConnectionLost',
              refused ? `node '${node}' has no stream '${this.label()}'` : (error?.message ?? 'stream closed')
            )
            if (refused) this.refusedFn?.(node)
          }
        }
      })
    } catch (e) {
      const reason = (e as { reason?: string }).reason === 'StreamLimit' ? 'StreamLimit' : 'UnknownNode'
      return { node, reason, message: (e as Error).message }
    }
    const o: Outgoing = { peer: node, ps, pending: [], pendingBytes: 0, written: 0, writtenBytes: 0, waiters: [], blocked: false }
    holder.o = o
    this.outgoing.set(node, o)
    registry.checkStreamCount(node)
    return o
  }

  /** Fails what waits for a peer that is gone; counts every lost message. */
  private dropOutgoing(o: Outgoing, reason: DeliveryFailure['reason'], message: string): void {
    if (this.outgoing.get(o.peer) === o) this.outgoing.delete(o.peer)
    // a refused stream was never read: what was written to it is lost too, not sent
    if (reason === 'StreamRefused' && o.written > 0) {
      this.messagesOut -= o.written
      this.bytesSent -= o.writtenBytes
      this.failedSends += o.written
    }
    const lost = o.pending.length + o.waiters.length + (reason === 'StreamRefused' ? o.written : 0)
    this.discardPending(o)
    // waiting senders finish with this failure; every lost message counts
    const failure: DeliveryFailure = { node: o.peer, reason, message }
    for (const waiter of o.waiters.splice(0)) waiter(failure)
    if (lost > 0) this.failedSends += lost - (reason === 'StreamRefused' ? o.written : 0)
    if (reason !== 'StreamClosed' || lost > 0) {
      this.app.registry.log(lost > 0 || reason === 'StreamRefused' ? 'Warning' : 'Debug', 'stream send failed', {
        app: this.app.id,
        stream: this.streamName,
        node: o.peer,
        reason,
        error: message,
        lost
      })
    }
    this.backlogged.delete(o.peer)
    if (lost > 0 || reason === 'StreamRefused') this.checkErrorRate()
    if (!o.ps.isClosed()) o.ps.reset(ErrorCode.StreamClosed)
  }

  /** One message from a peer: copied, then handed to the receive function in order. */
  receive(from: string, payload: Uint8Array, owned = false): void {
    this.bytesReceived += payload.byteLength
    this.messagesIn++
    this.lastActive = this.app.registry.now()
    const fn = this.receiveFn
    // the receive function keeps what it gets: copy unless the buffer is already ours
    const copy = owned ? payload : new Uint8Array(payload)
    const incoming = this.incoming.get(from)
    // in order behind a busy async handler, or kept until a receive function is set
    if (incoming !== undefined && (incoming.busy || incoming.queue.length > 0 || fn === undefined)) {
      incoming.queue.push(copy)
      incoming.queueBytes += copy.byteLength
      if (this.full(incoming.queue.length, incoming.queueBytes)) incoming.ps.pause()
      return
    }
    if (fn === undefined) return
    this.call(fn, copy, from, incoming)
  }

  private call(fn: ReceiveFunc, payload: Uint8Array, from: string, incoming: Incoming | undefined): void {
    let result: void | Promise<void>
    try {
      result = fn(payload, from)
    } catch (e) {
      this.receiveFailed(from, e)
      return
    }
    if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
      if (incoming === undefined) {
        ;(result as Promise<void>).then(undefined, (e) => this.receiveFailed(from, e))
        return
      }
      incoming.busy = true
      ;(result as Promise<void>).then(
        () => this.next(incoming),
        (e) => {
          this.receiveFailed(from, e)
          this.next(incoming)
        }
      )
    }
  }

  /** An async handler finished: the next queued message, and reading resumes when there is room. */
  private next(incoming: Incoming): void {
    incoming.busy = false
    const fn = this.receiveFn
    while (!incoming.busy && incoming.queue.length > 0 && fn !== undefined) {
      const payload = incoming.queue.shift()!
      incoming.queueBytes -= payload.byteLength
      this.call(fn, payload, incoming.peer, incoming)
    }
    if (!this.full(incoming.queue.length, incoming.queueBytes) && !this.closed) incoming.ps.resume()
  }

  private receiveFailed(from: string, error: unknown): void {
    this.receiveErrors++
    this.app.registry.log('Error', 'receive handler failed', { app: this.app.id, stream: this.streamName, node: from, error: String(error) })
  }

  private deliverLocal(payload: Uint8Array): void {
    const copy = new Uint8Array(payload)
    this.messagesOut++
    this.bytesSent += payload.byteLength
    queueMicrotask(() => this.receive(this.app.registry.nodosum.nodeId, copy))
  }

  /** Takes an incoming QUIC stream of this stream from a peer. */
  attach(ps: PeerStream): void {
    const incoming: Incoming = { peer: ps.peer, ps, queue: [], queueBytes: 0, busy: false }
    const previous = this.incoming.get(ps.peer)
    if (previous !== undefined && previous.ps !== ps && !previous.ps.isClosed()) previous.ps.reset(ErrorCode.StreamClosed)
    this.incoming.set(ps.peer, incoming)
    ps.setHandler({
      onMessage: (payload, owned) => this.receive(ps.peer, payload, owned),
      onClose: () => {
        if (this.incoming.get(ps.peer) === incoming) this.incoming.delete(ps.peer)
      }
    })
    ps.resume()
  }

  setRefusedFunc = (fn: (node: string) => void): void => {
    this.refusedFn = fn
  }

  setReceiveFunc = (fn: ReceiveFunc): void => {
    this.receiveFn = fn
    for (const incoming of this.incoming.values()) if (!incoming.busy) this.next(incoming)
  }

  closeNow(): void {
    if (this.closed) return
    this.closed = true
    for (const o of [...this.outgoing.values()]) {
      const lost = o.pending.length + o.waiters.length
      if (lost > 0) this.failedSends += lost
      const failure: DeliveryFailure = { node: o.peer, reason: 'StreamClosed', message: `stream '${this.label()}' was closed` }
      for (const waiter of o.waiters.splice(0)) waiter(failure)
      this.discardPending(o)
      o.ps.reset(ErrorCode.StreamClosed)
    }
    this.outgoing.clear()
    for (const i of this.incoming.values()) i.ps.reset(ErrorCode.StreamClosed)
    this.incoming.clear()
    const s = this.stats()
    this.app.registry.log('Info', 'stream closed', {
      app: this.app.id,
      stream: this.streamName,
      lifetimeMs: this.app.registry.now() - this.createdAt,
      totalBytes: s.bytesSent + s.bytesReceived
    })
  }

  close: Effect.Effect<void> = Effect.sync(() => {
    if (this.streamName === '') return
    this.app.removeStream(this.streamName)
    this.closeNow()
  })

  name = (): string => this.streamName

  isClosed = (): boolean => this.closed

  /** Peers that left: their QUIC streams are gone with the connection. */
  forget(node: string): void {
    const o = this.outgoing.get(node)
    if (o !== undefined) this.dropOutgoing(o, 'ConnectionLost', `node '${node}' is gone`)
    this.incoming.delete(node)
  }

  stats = (): StreamStats => {
    let queuedMessages = 0
    let queuedBytes = 0
    const active = new Set<string>()
    for (const o of this.outgoing.values()) {
      queuedMessages += o.pending.length + o.waiters.length
      queuedBytes += o.pendingBytes
      queuedBytes += o.ps.writableLength()
      if (!o.ps.isClosed()) active.add(o.peer)
    }
    for (const i of this.incoming.values()) if (!i.ps.isClosed()) active.add(i.peer)
    const attempts = this.messagesOut + this.failedSends
    return {
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      messagesOut: this.messagesOut,
      messagesIn: this.messagesIn,
      failedSends: this.failedSends,
      receiveErrors: this.receiveErrors,
      errorRate: attempts === 0 ? 0 : this.failedSends / attempts,
      queuedMessages,
      queuedBytes,
      createdAt: this.createdAt,
      lastActive: this.lastActive,
      activeNodes: [...active].sort()
    }
  }
}

const sendError = (stream: StreamImpl, wait: SendWait): SendError =>
  new SendError({
    message: `send on '${stream.app.id}/${stream.streamName}' failed for ${wait.failures.map((f) => `${f.node} (${f.reason})`).join(', ')}`,
    accepted: wait.accepted,
    failures: wait.failures
  })

class AppImpl implements Application {
  readonly streams = new Map<string, StreamImpl>()
  readonly defaultStream: StreamImpl
  /** Incoming streams for names not created yet, with their refusal timers. */
  readonly held = new Map<string, Array<Held>>()

  constructor(
    readonly registry: Registry,
    readonly id: string,
    readonly config: Required<ApplicationConfig>
  ) {
    this.defaultStream = new StreamImpl(this, '')
  }

  send = (payload: Uint8Array, nodeIds?: ReadonlyArray<string>) => this.defaultStream.send(payload, nodeIds)

  setReceiveFunc = (fn: ReceiveFunc): void => this.defaultStream.setReceiveFunc(fn)

  nodes = (): ReadonlyArray<string> => this.registry.nodosum.nodes()

  createStream = (name: string): Effect.Effect<Stream, StreamsError> =>
    Effect.suspend(() => {
      if (this.config.defaultStreamOnly) {
        return Effect.fail(new StreamsError({ reason: 'DefaultStreamOnly', message: `application '${this.id}' is configured for the default stream only` }))
      }
      if (name.length === 0 || utf8Length(name) > NAME_BYTES) {
        return Effect.fail(new StreamsError({ reason: 'InvalidName', message: `a stream name must be 1 to ${NAME_BYTES} bytes of UTF-8` }))
      }
      if (this.streams.has(name)) return Effect.fail(new StreamsError({ reason: 'DuplicateStream', message: `stream '${name}' already exists in '${this.id}'` }))
      if (this.streams.size >= this.config.maxStreams) {
        return Effect.fail(
          new StreamsError({ reason: 'MaxStreamsReached', message: `application '${this.id}' has its maximum of ${this.config.maxStreams} streams` })
        )
      }
      const stream = new StreamImpl(this, name)
      this.streams.set(name, stream)
      this.registry.log('Info', 'stream created', { app: this.id, stream: name, maxNodes: this.registry.nodosum.nodes().length })
      const held = this.held.get(name)
      if (held !== undefined) {
        this.held.delete(name)
        for (const h of held) {
          h.cancel()
          if (!h.ps.isClosed()) stream.attach(h.ps)
        }
      }
      return Effect.succeed(stream as Stream)
    })

  getStream = (name: string): Effect.Effect<Stream, StreamsError> =>
    Effect.suspend(() => {
      if (name === '') return Effect.succeed(this.defaultStream as Stream)
      const stream = this.streams.get(name)
      return stream === undefined
        ? Effect.fail(new StreamsError({ reason: 'UnknownStream', message: `no stream '${name}' in '${this.id}'` }))
        : Effect.succeed(stream as Stream)
    })

  closeStream = (name: string): Effect.Effect<void, StreamsError> =>
    Effect.suspend(() => {
      const stream = this.streams.get(name)
      if (stream === undefined) return Effect.fail(new StreamsError({ reason: 'UnknownStream', message: `no stream '${name}' in '${this.id}'` }))
      return stream.close
    })

  removeStream(name: string): void {
    this.streams.delete(name)
  }

  listStreams = (): ReadonlyArray<string> => [...this.streams.keys()]

  /** Routes an incoming QUIC stream to its stream, or holds it for the grace period. */
  accept(ps: PeerStream): boolean {
    const stream = ps.streamName === '' ? this.defaultStream : this.streams.get(ps.streamName)
    if (stream !== undefined && !stream.closed) {
      stream.attach(ps)
      return true
    }
    this.registry.hold(this.held, ps.streamName, ps, this.config.unknownStreamGraceMs, 'incoming stream refused: not created here within the grace period')
    return true
  }

  stats = (): ApplicationStats => {
    const defaultStreamStats = this.defaultStream.stats()
    const streams: Record<string, StreamStats> = {}
    let bytesSent = defaultStreamStats.bytesSent
    let bytesReceived = defaultStreamStats.bytesReceived
    let messagesOut = defaultStreamStats.messagesOut
    let messagesIn = defaultStreamStats.messagesIn
    let failed = defaultStreamStats.failedSends
    for (const [name, s] of this.streams) {
      const st = s.stats()
      streams[name] = st
      bytesSent += st.bytesSent
      bytesReceived += st.bytesReceived
      messagesOut += st.messagesOut
      messagesIn += st.messagesIn
      failed += st.failedSends
    }
    return {
      totalBytesSent: bytesSent,
      totalBytesReceived: bytesReceived,
      totalMessagesOut: messagesOut,
      totalMessagesIn: messagesIn,
      totalFailedSends: failed,
      activeStreams: this.streams.size + 1,
      defaultStreamStats,
      streams
    }
  }

  forget(node: string): void {
    this.defaultStream.forget(node)
    for (const s of this.streams.values()) s.forget(node)
  }

  close(): void {
    this.defaultStream.closeNow()
    for (const s of this.streams.values()) s.closeNow()
    this.streams.clear()
    for (const list of this.held.values()) for (const h of list) h.cancel()
    this.held.clear()
  }
}

/** Every application of this node, and the routing of incoming streams to them. */
export class Registry {
  readonly apps = new Map<string, AppImpl>()
  /** Incoming streams of applications not registered yet, with their refusal timers. */
  private readonly heldApps = new Map<string, Array<Held>>()
  private readonly runFork: ReturnType<typeof Runtime.runFork<never>>
  private readonly runSync: ReturnType<typeof Runtime.runSync<never>>
  /** Copies of large outgoing messages, reused once the transport is done with them. */
  readonly pool: BufferPool

  constructor(
    readonly nodosum: Nodosum.Nodosum['Type'],
    readonly options: RegistryOptions,
    runtime: Runtime.Runtime<never>,
    readonly now: () => number
  ) {
    this.runFork = Runtime.runFork(runtime)
    this.runSync = Runtime.runSync(runtime)
    this.pool = new BufferPool({ minBytes: POOLED_MIN_BYTES, maxRetainedBytes: POOL_RETAINED_BYTES, idleMs: POOL_IDLE_MS, schedule: (ms, f) => this.later(ms, f) })
    nodosum.setStreamAcceptor((ps) => {
      const app = this.apps.get(ps.appId)
      if (app !== undefined) return app.accept(ps)
      // the application may not be registered yet (services register after joining): hold it too
      this.hold(this.heldApps, ps.appId, ps, this.options.graceMs, 'incoming stream refused: application not registered here within the grace period')
      return true
    })
  }

  /**
   * Holds an incoming stream (not read, so its sender is held back by flow control) under `key`
   * until it is claimed or `graceMs` pass; then it is refused with UnknownStream and logged.
   */
  hold(held: Map<string, Array<Held>>, key: string, ps: PeerStream, graceMs: number, refusal: string): void {
    ps.pause()
    const list = held.get(key) ?? []
    const entry: Held = {
      ps,
      cancel: this.later(graceMs, () => {
        const current = held.get(key)
        const index = current?.indexOf(entry) ?? -1
        if (current !== undefined && index >= 0) current.splice(index, 1)
        if (current?.length === 0) held.delete(key)
        this.log('Warning', refusal, { app: ps.appId, stream: ps.streamName, node: ps.peer, graceMs })
        ps.reset(ErrorCode.UnknownStream)
      })
    }
    list.push(entry)
    held.set(key, list)
  }

  /** Runs `f` after `ms` on the Effect clock (so `TestClock` drives it); returns a cancel. */
  later(ms: number, f: () => void): () => void {
    const fiber = this.runFork(Effect.sleep(ms).pipe(Effect.andThen(Effect.sync(f))))
    return () => {
      this.runFork(Fiber.interrupt(fiber))
    }
  }

  log: Log = (level, message, annotations) => {
    // logged in place: no fiber per line
    this.runSync(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs({ node: this.nodosum.nodeId, ...annotations })))
  }

  register(config: ApplicationConfig): AppImpl | StreamsError {
    if (typeof config.id !== 'string' || config.id.length === 0 || utf8Length(config.id) > NAME_BYTES) {
      return new StreamsError({ reason: 'InvalidName', message: `an application id must be 1 to ${NAME_BYTES} bytes of UTF-8` })
    }
    if (config.id.startsWith('SYSTEM-') && config.id !== 'SYSTEM-MYCEL') {
      return new StreamsError({ reason: 'ReservedApplication', message: `application ids starting with SYSTEM- are reserved` })
    }
    if (this.apps.has(config.id)) return new StreamsError({ reason: 'DuplicateApplication', message: `application '${config.id}' is already registered` })
    const full: Required<ApplicationConfig> = {
      id: config.id,
      maxStreams: config.maxStreams ?? 20,
      defaultStreamOnly: config.defaultStreamOnly ?? false,
      streamBufferSize: config.streamBufferSize ?? 100,
      streamBufferBytes: config.streamBufferBytes ?? 8 * 1024 * 1024,
      unknownStreamGraceMs: config.unknownStreamGraceMs ?? this.options.graceMs
    }
    for (const [field, value, min, max] of [
      ['maxStreams', full.maxStreams, 0, 10_000],
      ['streamBufferSize', full.streamBufferSize, 1, 1_000_000],
      ['streamBufferBytes', full.streamBufferBytes, 1024, 1024 * 1024 * 1024],
      ['unknownStreamGraceMs', full.unknownStreamGraceMs, 0, 600_000]
    ] as const) {
      if (!Number.isInteger(value) || value < min || value > max) {
        return new StreamsError({ reason: 'InvalidConfig', message: `${field} must be an integer from ${min} to ${max}, got ${String(value)}` })
      }
    }
    const app = new AppImpl(this, config.id, full)
    this.apps.set(config.id, app)
    const held = this.heldApps.get(config.id)
    if (held !== undefined) {
      this.heldApps.delete(config.id)
      for (const h of held) {
        h.cancel()
        if (!h.ps.isClosed()) app.accept(h.ps)
      }
    }
    return app
  }

  /** Logs the spec's thresholds for streams per connection. */
  checkStreamCount(node: string): void {
    const peer = this.nodosum.stats().peers.find((p) => p.id === node)
    if (peer === undefined) return
    if (peer.streamsOpen >= this.options.connectionStreamLimit) {
      this.log('Error', 'stream limit reached', { node, count: peer.streamsOpen, limit: this.options.connectionStreamLimit })
    } else if (peer.streamsOpen > WARN_STREAMS_PER_CONNECTION) {
      this.log('Warning', 'high stream count', { node, count: peer.streamsOpen, expected: 30 })
    }
  }

  forget(node: string): void {
    for (const app of this.apps.values()) app.forget(node)
  }

  close(): void {
    for (const app of this.apps.values()) app.close()
    this.apps.clear()
    for (const list of this.heldApps.values()) for (const h of list) h.cancel()
    this.heldApps.clear()
    this.pool.clear()
  }
}
