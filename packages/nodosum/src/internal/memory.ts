import * as Effect from 'effect/Effect'
import type * as Fiber from 'effect/Fiber'
import * as FiberId from 'effect/FiberId'
import type * as Queue from 'effect/Queue'
import { Outbox } from './outbox.js'
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
import { formatAddress, isStreamPriority, type StreamPriority } from '../Transport.js'

/** Reset code a stream gets when a handler of ours throws. */
export const HANDLER_FAILED = 0x0fff

const keyOf = (address: Address): string => formatAddress(address)

interface Link {
  /** Link from -> to carries nothing while blocked (partition, drop, kill). */
  blocked: boolean
  delayMs: number
}

/** One node's registration in the network. */
export interface MemoryEndpoint {
  readonly key: string
  readonly address: Address
  readonly limits: TransportLimits
  readonly idleTimeoutMs: number
  readonly handshakeTimeoutMs: number
  readonly incoming: Queue.Queue<TransportConnection>
  readonly connections: Set<MemoryConnectionEnd>
  /** What this endpoint presents to peers in place of a TLS certificate chain. */
  readonly certificates: ReadonlyArray<Uint8Array>
  dead: boolean
}

/**
 * The shared medium of every `MemoryTransport` in one process, with fault injection.
 * Faults are per direction of a pair of endpoints; time-based behaviour (delays, idle
 * timeouts of cut links, connect timeouts) runs on the Effect clock, so `TestClock` drives it.
 */
export class MemoryNetworkImpl {
  readonly endpoints = new Map<string, MemoryEndpoint>()
  private readonly links = new Map<string, Link>()
  private nextPort = 1
  private nextConnection = 1

  /** `run` forks into the network's scope (a `FiberSet`): closing the scope interrupts every timer. */
  constructor(private readonly run: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>) {}

  private link(from: string, to: string): Link {
    const id = `${from}>${to}`
    let link = this.links.get(id)
    if (link === undefined) {
      link = { blocked: false, delayMs: 0 }
      this.links.set(id, link)
    }
    return link
  }

  /** True when bytes from `from` currently reach `to`. */
  canDeliver(from: string, to: string): boolean {
    const a = this.endpoints.get(from)
    const b = this.endpoints.get(to)
    if (a === undefined || b === undefined || a.dead || b.dead) return false
    const link = this.links.get(`${from}>${to}`)
    return link === undefined || !link.blocked
  }

  delayOf(from: string, to: string): number {
    return this.links.get(`${from}>${to}`)?.delayMs ?? 0
  }

  allocatePort(host: string): number {
    while (this.endpoints.has(keyOf({ host, port: this.nextPort }))) this.nextPort++
    return this.nextPort++
  }

  connectionId(): string {
    return `mem-${this.nextConnection++}`
  }

  register(endpoint: MemoryEndpoint): void {
    this.endpoints.set(endpoint.key, endpoint)
  }

  unregister(endpoint: MemoryEndpoint): void {
    if (this.endpoints.get(endpoint.key) === endpoint) this.endpoints.delete(endpoint.key)
  }

  /** Runs `f` after `delayMs` on the Effect clock, in the network's scope. */
  runLater(delayMs: number, f: () => void): Fiber.RuntimeFiber<void> {
    return this.run(Effect.sleep(delayMs).pipe(Effect.andThen(Effect.sync(f))))
  }

  /** Blocks or unblocks one direction. */
  setBlocked(from: string, to: string, blocked: boolean): void {
    this.link(from, to).blocked = blocked
    this.onLinksChanged()
  }

  setDelay(from: string, to: string, delayMs: number): void {
    this.link(from, to).delayMs = delayMs
  }

  /** Called after any change of reachability: cut connections time out, healed ones resume. */
  onLinksChanged(): void {
    for (const endpoint of this.endpoints.values()) {
      for (const end of endpoint.connections) end.checkLink()
    }
  }

}

const closedError = (reason: 'StreamClosed' | 'ConnectionClosed', what: string) =>
  new TransportError({ reason, message: `${what} is closed` })

class MemoryStreamEnd implements TransportStream {
  peer!: MemoryStreamEnd
  private handler: StreamHandler | undefined
  /** Bytes the peer wrote that this side has not read yet (paused or no handler). */
  private readonly inbox: Array<Uint8Array> = []
  private inboxBytes = 0
  private readonly out: Outbox
  private paused = false
  private finReceived = false
  private endDelivered = false
  private closed = false

  constructor(
    readonly id: number,
    readonly connection: MemoryConnectionEnd,
    handler: StreamHandler | undefined
  ) {
    this.handler = handler
    this.out = new Outbox(connection.limits.writeHighWaterMark)
  }

  setHandler = (handler: StreamHandler): void => {
    this.handler = handler
    this.deliver()
  }

  /** The priority set on this side (recorded: the memory transport does not schedule). */
  priority: StreamPriority | undefined

  setPriority = (priority: StreamPriority): void => {
    if (!isStreamPriority(priority)) throw new RangeError('a stream priority is an urgency from 0 to 7 and a boolean incremental')
    this.priority = priority
  }

  write = (chunk: Uint8Array, owned = false, onRelease?: () => void): boolean => {
    if (this.closed || this.out.finQueued) {
      onRelease?.()
      throw closedError('StreamClosed', `stream ${this.id}`)
    }
    if (chunk.byteLength > 0) {
      // a buffer the caller wants back is copied (the peer's inbox would otherwise share it)
      this.out.push(chunk, 0, owned && onRelease === undefined, onRelease)
      this.connection.schedulePump()
    } else {
      onRelease?.()
    }
    return this.out.accepts()
  }

  writableLength = (): number => this.out.bytes

  end = (): void => {
    if (this.closed || this.out.finQueued) return
    this.out.finQueued = true
    this.connection.schedulePump()
  }

  reset = (code: number): void => {
    if (this.closed) return
    this.close(undefined)
    this.peer.close(new TransportError({ reason: 'StreamReset', message: `stream ${this.id} reset by peer with code ${code}`, code }))
  }

  pause = (): void => {
    this.paused = true
  }

  resume = (): void => {
    if (!this.paused) return
    this.paused = false
    this.deliver()
    this.connection.schedulePump()
  }

  isClosed = (): boolean => this.closed

  /** Moves queued bytes to the peer within its window. Returns true if anything is left. */
  pump(): boolean {
    if (this.closed) return false
    const window = this.connection.limits.maxStreamWindow
    const out = this.out
    while (!out.isEmpty() && this.peer.inboxBytes < window) {
      const room = window - this.peer.inboxBytes
      const head = out.head()
      const chunk = head.byteLength > room ? head.subarray(0, room) : head
      out.consume(chunk.byteLength)
      this.connection.bytesSent += chunk.byteLength
      this.connection.peer.bytesReceived += chunk.byteLength
      this.peer.receive(chunk)
    }
    if (out.finDue()) {
      out.finSent = true
      this.peer.receiveFin()
    }
    if (!this.closed && out.drainDue()) this.connection.call(this, () => this.handler?.onDrain?.())
    this.maybeFinish()
    return !out.isEmpty()
  }

  private receive(chunk: Uint8Array): void {
    this.inbox.push(chunk)
    this.inboxBytes += chunk.byteLength
    this.deliver()
  }

  private receiveFin(): void {
    this.finReceived = true
    this.deliver()
  }

  /** Hands buffered bytes to the handler unless paused. */
  deliver(): void {
    const handler = this.handler
    if (handler === undefined || this.closed) return
    while (this.inbox.length > 0 && !this.paused && !this.closed) {
      const chunk = this.inbox.shift()!
      this.inboxBytes -= chunk.byteLength
      this.connection.call(this, () => handler.onData(chunk))
    }
    if (this.inbox.length === 0 && this.finReceived && !this.endDelivered && !this.closed) {
      this.endDelivered = true
      this.connection.call(this, () => handler.onEnd?.())
      this.maybeFinish()
    }
    // room opened in our window: let the peer send more
    this.peer.connection.schedulePump()
  }

  private maybeFinish(): void {
    if (!this.closed && this.out.finSent && this.endDelivered) this.close(undefined)
  }

  close(error: TransportError | undefined): void {
    if (this.closed) return
    this.closed = true
    this.inbox.length = 0
    this.inboxBytes = 0
    this.out.clear()
    this.connection.streams.delete(this.id)
    const handler = this.handler
    if (handler?.onClose !== undefined) this.connection.call(undefined, () => handler.onClose!(error))
  }
}

export class MemoryConnectionEnd implements TransportConnection {
  peer!: MemoryConnectionEnd
  readonly streams = new Map<number, MemoryStreamEnd>()
  private readonly pendingIncoming: Array<MemoryStreamEnd> = []
  private handler: ConnectionHandler | undefined
  private nextStreamId: number
  private closed = false
  private pumpScheduled = false
  private idleWatch: Fiber.RuntimeFiber<void> | undefined
  bytesSent = 0
  bytesReceived = 0
  streamsOpened = 0

  constructor(
    readonly id: string,
    readonly initiator: boolean,
    readonly endpoint: MemoryEndpoint,
    readonly remoteAddress: Address,
    readonly network: MemoryNetworkImpl
  ) {
    this.nextStreamId = initiator ? 0 : 1
  }

  get localAddress(): Address {
    return this.endpoint.address
  }

  get limits(): TransportLimits {
    return this.endpoint.limits
  }

  private get remoteKey(): string {
    return keyOf(this.remoteAddress)
  }

  peerCertificates = (): ReadonlyArray<Uint8Array> => this.peer.endpoint.certificates

  setHandler = (handler: ConnectionHandler): void => {
    this.handler = handler
    const pending = this.pendingIncoming.splice(0)
    for (const stream of pending) this.call(stream, () => handler.onStream(stream))
  }

  openStream = (handler: StreamHandler): TransportStream => {
    if (this.closed) throw closedError('ConnectionClosed', `connection ${this.id}`)
    if (this.streamsLeft() <= 0) {
      throw new TransportError({ reason: 'StreamLimit', message: `peer allows at most ${this.peer.limits.maxStreams} open streams` })
    }
    const id = this.nextStreamId
    this.nextStreamId += 4
    const local = new MemoryStreamEnd(id, this, handler)
    const remote = new MemoryStreamEnd(id, this.peer, undefined)
    local.peer = remote
    remote.peer = local
    this.streams.set(id, local)
    this.peer.streams.set(id, remote)
    this.streamsOpened++
    this.peer.streamsOpened++
    this.peer.incomingStream(remote)
    return local
  }

  private incomingStream(stream: MemoryStreamEnd): void {
    const handler = this.handler
    if (handler === undefined) this.pendingIncoming.push(stream)
    else this.call(stream, () => handler.onStream(stream))
  }

  streamsLeft = (): number => {
    let open = 0
    for (const id of this.streams.keys()) if ((id & 1) === (this.initiator ? 0 : 1)) open++
    return Math.max(0, this.peer.limits.maxStreams - open)
  }

  /** Runs a callback of ours; a throw resets the stream it belongs to instead of escaping. */
  call(stream: MemoryStreamEnd | undefined, f: () => void): void {
    try {
      f()
    } catch {
      if (stream !== undefined && !stream.isClosed()) stream.reset(HANDLER_FAILED)
    }
  }

  schedulePump(): void {
    if (this.pumpScheduled || this.closed) return
    this.pumpScheduled = true
    const delay = this.network.delayOf(this.endpoint.key, this.remoteKey)
    if (delay > 0) this.network.runLater(delay, () => this.runPump())
    else setImmediate(() => this.runPump())
  }

  private runPump(): void {
    this.pumpScheduled = false
    if (this.closed || this.peer.closed) return
    if (!this.network.canDeliver(this.endpoint.key, this.remoteKey)) return
    let again = false
    for (const stream of [...this.streams.values()]) if (stream.pump()) again = true
    if (again) this.schedulePump()
  }

  /** Re-evaluates reachability: a cut link times out after the idle timeout; a healed one resumes. */
  checkLink(): void {
    if (this.closed) return
    const ok =
      this.network.canDeliver(this.endpoint.key, this.remoteKey) && this.network.canDeliver(this.remoteKey, this.endpoint.key)
    if (ok) {
      if (this.idleWatch !== undefined) {
        const watch = this.idleWatch
        this.idleWatch = undefined
        watch.unsafeInterruptAsFork(FiberId.none)
      }
      this.schedulePump()
      return
    }
    if (this.idleWatch === undefined && !this.endpoint.dead) {
      this.idleWatch = this.network.runLater(this.endpoint.idleTimeoutMs, () => {
        this.idleWatch = undefined
        this.terminate(new TransportError({ reason: 'IdleTimeout', message: `no packets from ${formatAddress(this.remoteAddress)} for ${this.endpoint.idleTimeoutMs} ms` }))
      })
    }
  }

  close = (code = 0, reason = ''): void => {
    if (this.closed) return
    const reachable = this.network.canDeliver(this.endpoint.key, this.remoteKey)
    this.terminate(undefined)
    if (reachable) {
      this.peer.terminate(new TransportError({ reason: 'PeerClosed', message: `peer closed the connection (code ${code}${reason ? `: ${reason}` : ''})`, code }))
    } else {
      this.peer.checkLink()
    }
  }

  /** Ends this side only (the peer learns of it by a close frame or by timing out). */
  terminate(error: TransportError | undefined): void {
    if (this.closed) return
    this.closed = true
    if (this.idleWatch !== undefined) {
      this.idleWatch.unsafeInterruptAsFork(FiberId.none)
      this.idleWatch = undefined
    }
    this.endpoint.connections.delete(this)
    const streamError = error ?? closedError('ConnectionClosed', `connection ${this.id}`)
    for (const stream of [...this.streams.values()]) stream.close(streamError)
    this.pendingIncoming.length = 0
    const handler = this.handler
    if (handler?.onClose !== undefined) this.call(undefined, () => handler.onClose!(error))
  }

  /** Drops this side without running any callback: what a killed process leaves behind. */
  abandon(): void {
    this.closed = true
    if (this.idleWatch !== undefined) this.idleWatch.unsafeInterruptAsFork(FiberId.none)
    this.endpoint.connections.delete(this)
  }

  isClosed = (): boolean => this.closed

  stats = (): ConnectionStats => ({
    bytesSent: this.bytesSent,
    bytesReceived: this.bytesReceived,
    packetsSent: 0,
    packetsReceived: 0,
    packetsLost: 0,
    rttMicros: undefined,
    streamsOpen: this.streams.size,
    streamsOpened: this.streamsOpened
  })
}

/** Builds both ends of a connection between two registered endpoints. */
export const connectPair = (
  network: MemoryNetworkImpl,
  client: MemoryEndpoint,
  server: MemoryEndpoint
): readonly [MemoryConnectionEnd, MemoryConnectionEnd] => {
  const id = network.connectionId()
  const a = new MemoryConnectionEnd(`${id}-c`, true, client, server.address, network)
  const b = new MemoryConnectionEnd(`${id}-s`, false, server, client.address, network)
  a.peer = b
  b.peer = a
  client.connections.add(a)
  server.connections.add(b)
  return [a, b] as const
}
