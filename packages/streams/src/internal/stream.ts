/**
 * One stream of an application (the default stream or a named one): the shell that connects
 * its outboxes, inboxes, send waits and counters to the peer streams of the transport. Plain
 * TypeScript on the hot path; the rules live in `outbox.ts`, `inbox.ts`, `sendWait.ts` and
 * `stats.ts`.
 */
import { ErrorCode, type Nodosum, type PeerStream, type PeerStreamError, type StreamPriority } from '@mycorrizal/nodosum'
import * as Effect from 'effect/Effect'
import type { ApplicationConfig, ReceiveFunc, Stream, StreamStats } from '../Application.js'
import { type DeliveryFailure, type SendError, StreamsError } from '../StreamsError.js'
import { Outbox } from './outbox.js'
import { Receiver } from './receiver.js'
import type { BufferPool } from './pool.js'
import { DONE, SendWait, type TakeOutcome } from './sendWait.js'
import { BACKLOG_WARNING_BYTES, ERROR_RATE_WARNING, StreamCounters } from './stats.js'

export type LogLevelName = 'Debug' | 'Info' | 'Warning' | 'Error'
export type Log = (level: LogLevelName, message: string, annotations: Record<string, unknown>) => void

/** What a stream needs from its node. */
export interface StreamHost {
  readonly nodosum: Nodosum.Nodosum['Type']
  readonly pool: BufferPool
  readonly maxMessageSize: number
  /** Milliseconds on the Effect clock. */
  readonly now: () => number
  readonly log: Log
  /** Logs the spec's thresholds of streams per connection after a stream was opened. */
  readonly checkStreamCount: (node: string) => void
}

/** What a stream needs from its application. */
export interface StreamOwner {
  readonly id: string
  readonly config: Required<ApplicationConfig>
  readonly removeStream: (name: string) => void
}

/** A waiting send, told when its target took the message or failed. */
type Waiter = (failure?: DeliveryFailure) => void

/** Outgoing side of one stream towards one peer. */
interface Outgoing {
  readonly _tag: 'Open'
  readonly peer: string
  readonly ps: PeerStream
  readonly outbox: Outbox<Waiter>
}


/** Why a peer stream closed, as a delivery failure reason. */
const closeReason = (error: PeerStreamError | undefined): DeliveryFailure['reason'] => {
  if (error === undefined || error._tag !== 'TransportError') return 'ConnectionLost'
  if (error.code === ErrorCode.UnknownStream) return 'StreamRefused'
  if (error.code === ErrorCode.StreamClosed) return 'StreamClosed'
  return 'ConnectionLost'
}


export class StreamImpl implements Stream {
  private readonly outgoing = new Map<string, Outgoing>()
  private readonly receiver: Receiver
  private readonly counters: StreamCounters
  private refusedFn: ((node: string) => void) | undefined
  closed = false

  constructor(
    private readonly host: StreamHost,
    private readonly app: StreamOwner,
    readonly streamName: string,
    private readonly sendPriority: StreamPriority
  ) {
    this.counters = new StreamCounters(host.now())
    this.receiver = new Receiver(
      this.counters,
      { messages: app.config.streamBufferSize, bytes: app.config.streamBufferBytes },
      host.now,
      (from, error) => host.log('Error', 'receive handler failed', this.annotations({ node: from, error: String(error) }))
    )
  }

  private label(): string {
    return this.streamName === '' ? `${this.app.id} (default)` : `${this.app.id}/${this.streamName}`
  }

  private annotations(extra: Record<string, unknown>): Record<string, unknown> {
    return { app: this.app.id, stream: this.streamName, ...extra }
  }

  // ---- sending ----------------------------------------------------------------------------

  send = (payload: Uint8Array, nodeIds: ReadonlyArray<string> = []): Effect.Effect<void, SendError | StreamsError> =>
    Effect.suspend((): Effect.Effect<void, SendError | StreamsError> => {
      const outcome = this.take(payload, nodeIds)
      switch (outcome._tag) {
        case 'Done':
          return Effect.void
        case 'Refused':
          return Effect.fail(outcome.error)
        case 'Pending': {
          const wait = outcome.wait
          return Effect.async<void, SendError>((resume) =>
            wait.whenSettled(() => {
              const error = wait.error()
              resume(error === undefined ? Effect.void : Effect.fail(error))
            })
          )
        }
      }
    })

  offer = (payload: Uint8Array, nodeIds: ReadonlyArray<string> = []): Promise<void> | undefined => {
    const outcome = this.take(payload, nodeIds)
    switch (outcome._tag) {
      case 'Done':
        return undefined
      case 'Refused':
        throw outcome.error
      case 'Pending': {
        const wait = outcome.wait
        return new Promise<void>((resolve, reject) =>
          wait.whenSettled(() => {
            const error = wait.error()
            if (error === undefined) resolve()
            else reject(error)
          })
        )
      }
    }
  }

  /**
   * The hot path, plain: offers the message to each target's outbox. `Done` when every target
   * took it at once, `Refused` when nothing was sent, else a wait.
   */
  take(payload: Uint8Array, nodeIds: ReadonlyArray<string>): TakeOutcome {
    const refused = this.refusal(payload)
    if (refused !== undefined) return { _tag: 'Refused', error: refused }
    const self = this.host.nodosum.nodeId
    const targets = nodeIds.length === 0 ? this.host.nodosum.nodes().filter((id) => id !== self) : nodeIds
    let wait: SendWait | undefined
    for (let i = 0; i < targets.length; i++) {
      const node = targets[i]!
      if (node === self) this.deliverLocal(payload)
      // the wait is created at the first failure or full buffer: every target before it was accepted
      else wait = this.offerTo(node, payload, wait, targets, i)
    }
    if (wait === undefined) return DONE
    if (wait.failures.length > 0) this.checkErrorRate()
    return wait.trivial ? DONE : { _tag: 'Pending', wait }
  }

  /** Why nothing is sent at all, if so. */
  private refusal(payload: Uint8Array): StreamsError | undefined {
    if (this.closed) return new StreamsError({ reason: 'StreamClosed', message: `stream '${this.label()}' is closed` })
    const max = this.host.maxMessageSize
    if (payload.byteLength <= max) return undefined
    return new StreamsError({ reason: 'MessageTooLarge', message: `message of ${payload.byteLength} bytes exceeds the maximum of ${max} bytes` })
  }

  /** A send's wait, created at target `i`: the targets before it took the message. */
  private newWait(targets: ReadonlyArray<string>, i: number): SendWait {
    const self = this.host.nodosum.nodeId
    return new SendWait(`${this.app.id}/${this.streamName}`, targets.slice(0, i).filter((n) => n !== self))
  }

  /** Offers the message to target `i`'s outbox; returns the send's wait (created when one is needed). */
  private offerTo(node: string, payload: Uint8Array, wait: SendWait | undefined, targets: ReadonlyArray<string>, i: number): SendWait | undefined {
    const out = this.outgoingTo(node)
    if (out._tag === 'Failure') {
      this.counters.failedSends++
      const w = wait ?? this.newWait(targets, i)
      w.fail(out.failure)
      return w
    }
    const o = out
    const admission = o.outbox.admit(payload.byteLength)
    switch (admission._tag) {
      case 'Write':
        this.write(o, payload)
        wait?.accept(node)
        return wait
      case 'Buffer':
        this.buffer(o, this.host.pool.copy(payload))
        wait?.accept(node)
        return wait
      case 'Wait': {
        const w = wait ?? this.newWait(targets, i)
        w.waitFor()
        const copy = this.host.pool.copy(payload)
        o.outbox.wait(copy, (failure) => {
          if (failure !== undefined) this.host.pool.release(copy)
          w.done(node, failure)
        })
        this.checkBacklog(o)
        return w
      }
      case 'Overloaded': {
        this.counters.failedSends++
        const w = wait ?? this.newWait(targets, i)
        const limit = this.app.config.maxWaitingBytes
        w.fail({ node, reason: 'Overloaded', message: `node '${node}' is not taking messages: ${admission.waitingBytes} bytes already wait for it (maxWaitingBytes ${limit})` })
        return w
      }
    }
  }

  private buffer(o: Outgoing, copy: Uint8Array): void {
    o.outbox.buffer(copy)
    this.checkBacklog(o)
  }

  private checkBacklog(o: Outgoing): void {
    const queued = o.outbox.queuedBytes + o.ps.writableLength()
    if (this.counters.backlogExcursion(o.peer, queued)) {
      this.host.log('Warning', 'stream backlog high', this.annotations({ node: o.peer, queuedBytes: queued, threshold: BACKLOG_WARNING_BYTES }))
    }
  }

  private checkErrorRate(): void {
    const rate = this.counters.errorRateExcursion()
    if (rate !== undefined) {
      this.host.log('Warning', 'stream error rate high', this.annotations({ errorRate: Number(rate.toFixed(4)), threshold: ERROR_RATE_WARNING }))
    }
  }

  /** `owned`: the payload is this stream's own copy (from its buffer); a pooled one goes back to the pool once the transport is done with it. */
  private write(o: Outgoing, payload: Uint8Array, owned = false): void {
    let accepted: boolean
    try {
      accepted = o.ps.send(payload, owned, owned ? this.host.pool.releaser(payload) : undefined)
    } catch (e) {
      this.dropOutgoing(o, 'ConnectionLost', e instanceof Error ? e.message : String(e))
      this.counters.failedSends++
      return
    }
    this.counters.sent(payload.byteLength, this.host.now())
    o.outbox.wrote(payload.byteLength, accepted)
  }

  private flush(o: Outgoing): void {
    for (let next = o.outbox.next(); next !== undefined; next = o.outbox.next()) this.write(o, next, true)
    if (o.outbox.queuedBytes === 0) this.counters.backlogCleared(o.peer)
  }

  /** The transport drained: move buffered messages on and let waiting senders in. */
  private drain(o: Outgoing): void {
    o.outbox.drained()
    this.flush(o)
    for (const waiter of o.outbox.admitWaiting()) waiter()
    this.flush(o)
  }

  /** The outgoing side to a node, opened on first use, or why there is none. */
  private outgoingTo(node: string): Outgoing | { readonly _tag: 'Failure'; readonly failure: DeliveryFailure } {
    const existing = this.outgoing.get(node)
    if (existing !== undefined) return existing
    const nodosum = this.host.nodosum
    if (!nodosum.nodes().includes(node)) {
      return { _tag: 'Failure', failure: { node, reason: 'UnknownNode', message: `node '${node}' is not an alive member` } }
    }
    // set once the stream is open; its callbacks come later
    const ref: { o?: Outgoing } = {}
    let ps: PeerStream
    try {
      ps = nodosum.openStream(node, this.app.id, this.streamName, {
        onMessage: (payload, owned) => this.receiver.receive(node, payload, owned),
        onDrain: () => {
          if (ref.o !== undefined) this.drain(ref.o)
        },
        onClose: (error) => {
          if (ref.o !== undefined && this.outgoing.get(node) === ref.o) this.outgoingClosed(ref.o, error)
        }
      })
    } catch (e) {
      const limit = typeof e === 'object' && e !== null && 'reason' in e && e.reason === 'StreamLimit'
      return { _tag: 'Failure', failure: { node, reason: limit ? 'StreamLimit' : 'UnknownNode', message: e instanceof Error ? e.message : String(e) } }
    }
    ps.setPriority(this.sendPriority)
    const config = this.app.config
    const o: Outgoing = { _tag: 'Open', peer: node, ps, outbox: new Outbox({ messages: config.streamBufferSize, bytes: config.streamBufferBytes, waitingBytes: config.maxWaitingBytes }) }
    ref.o = o
    this.outgoing.set(node, o)
    this.host.checkStreamCount(node)
    return o
  }

  private outgoingClosed(o: Outgoing, error: PeerStreamError | undefined): void {
    const reason = closeReason(error)
    const refused = reason === 'StreamRefused'
    this.dropOutgoing(o, reason, refused ? `node '${o.peer}' has no stream '${this.label()}'` : (error?.message ?? 'stream closed'))
    if (refused) this.refusedFn?.(o.peer)
  }

  /** Fails what waits for a peer that is gone; counts every lost message. */
  private dropOutgoing(o: Outgoing, reason: DeliveryFailure['reason'], message: string): void {
    if (this.outgoing.get(o.peer) === o) this.outgoing.delete(o.peer)
    const refused = reason === 'StreamRefused'
    const cleared = o.outbox.clear()
    // a refused stream was never read: what was written to it is lost too, not sent
    if (refused && cleared.written > 0) this.counters.unsent(cleared.written, cleared.writtenBytes)
    for (const copy of cleared.pending) this.host.pool.release(copy)
    const queuedLost = cleared.pending.length + cleared.waiting.length
    // waiting senders finish with this failure; every lost message counts
    const failure: DeliveryFailure = { node: o.peer, reason, message }
    for (const w of cleared.waiting) w.waiter(failure)
    this.counters.failedSends += queuedLost
    const lost = queuedLost + (refused ? cleared.written : 0)
    if (reason !== 'StreamClosed' || lost > 0) {
      this.host.log(lost > 0 || refused ? 'Warning' : 'Debug', 'stream send failed', this.annotations({ node: o.peer, reason, error: message, lost }))
    }
    this.counters.backlogCleared(o.peer)
    if (lost > 0 || refused) this.checkErrorRate()
    if (!o.ps.isClosed()) o.ps.reset(ErrorCode.StreamClosed)
  }

  // ---- receiving (receiver.ts) ------------------------------------------------------------

  private deliverLocal(payload: Uint8Array): void {
    const copy = new Uint8Array(payload)
    this.counters.messagesOut++
    this.counters.bytesSent += payload.byteLength
    queueMicrotask(() => this.receiver.receive(this.host.nodosum.nodeId, copy))
  }

  /** Takes an incoming transport stream of this stream from a peer. */
  attach(ps: PeerStream): void {
    ps.setPriority(this.sendPriority)
    this.receiver.attach(ps)
  }

  priority = (): StreamPriority => this.sendPriority

  setRefusedFunc = (fn: (node: string) => void): void => {
    this.refusedFn = fn
  }

  setReceiveFunc = (fn: ReceiveFunc): void => this.receiver.setReceiveFunc(fn)

  // ---- life -------------------------------------------------------------------------------

  closeNow(): void {
    if (this.closed) return
    this.closed = true
    for (const o of [...this.outgoing.values()]) {
      const cleared = o.outbox.clear()
      this.counters.failedSends += cleared.pending.length + cleared.waiting.length
      for (const copy of cleared.pending) this.host.pool.release(copy)
      const failure: DeliveryFailure = { node: o.peer, reason: 'StreamClosed', message: `stream '${this.label()}' was closed` }
      for (const w of cleared.waiting) w.waiter(failure)
      o.ps.reset(ErrorCode.StreamClosed)
    }
    this.outgoing.clear()
    this.receiver.close()
    const s = this.stats()
    this.host.log('Info', 'stream closed', this.annotations({ lifetimeMs: this.host.now() - this.counters.createdAt, totalBytes: s.bytesSent + s.bytesReceived }))
  }

  close: Effect.Effect<void> = Effect.sync(() => {
    if (this.streamName === '') return
    this.app.removeStream(this.streamName)
    this.closeNow()
  })

  name = (): string => this.streamName

  isClosed = (): boolean => this.closed

  /** Peers that left: their transport streams are gone with the connection. */
  forget(node: string): void {
    const o = this.outgoing.get(node)
    if (o !== undefined) this.dropOutgoing(o, 'ConnectionLost', `node '${node}' is gone`)
    this.receiver.forget(node)
  }

  stats = (): StreamStats => {
    let messages = 0
    let bytes = 0
    const active = new Set<string>()
    for (const o of this.outgoing.values()) {
      messages += o.outbox.queuedMessages
      bytes += o.outbox.queuedBytes + o.ps.writableLength()
      if (!o.ps.isClosed()) active.add(o.peer)
    }
    this.receiver.activeNodes(active)
    return this.counters.snapshot({ messages, bytes, activeNodes: [...active].sort() })
  }
}
