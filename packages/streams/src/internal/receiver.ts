/**
 * The receiving side of one stream: an inbox per peer (ordered delivery, reading paused while
 * it is full) connected to the peers' transport streams and the receive function.
 */
import { ErrorCode, type PeerStream } from '@mycorrizal/nodosum'
import type { ReceiveFunc } from '../Application.js'
import { Inbox, type InboxLimits } from './inbox.js'
import type { StreamCounters } from './stats.js'

/** Incoming side of one stream from one peer. */
interface Incoming {
  readonly peer: string
  readonly ps: PeerStream
  readonly inbox: Inbox
}

const isPromise = (x: void | Promise<void>): x is Promise<void> => x !== undefined && typeof x.then === 'function'

export class Receiver {
  private readonly incoming = new Map<string, Incoming>()
  private receiveFn: ReceiveFunc | undefined
  private closed = false

  constructor(
    private readonly counters: StreamCounters,
    private readonly limits: InboxLimits,
    private readonly now: () => number,
    /** A receive function threw or rejected (counted here, logged by the stream). */
    private readonly failed: (from: string, error: unknown) => void
  ) {}

  /** One message from a peer: copied, then handed to the receive function in order. */
  receive(from: string, payload: Uint8Array, owned = false): void {
    this.counters.received(payload.byteLength, this.now())
    // the receive function keeps what it gets: copy unless the buffer is already ours
    const copy = owned ? payload : new Uint8Array(payload)
    const incoming = this.incoming.get(from)
    const fn = this.receiveFn
    if (incoming === undefined) {
      // no ordered queue for this peer (replies on our own stream, local delivery)
      if (fn !== undefined) this.call(fn, copy, from, undefined)
      return
    }
    const arrival = incoming.inbox.arrive(copy, fn !== undefined)
    if (arrival._tag === 'Deliver') this.call(fn!, copy, from, incoming)
    else if (arrival.pause) incoming.ps.pause()
  }

  private call(fn: ReceiveFunc, payload: Uint8Array, from: string, incoming: Incoming | undefined): void {
    let result: void | Promise<void>
    try {
      result = fn(payload, from)
    } catch (e) {
      this.receiveFailed(from, e)
      return
    }
    if (!isPromise(result)) return
    if (incoming === undefined) {
      result.then(undefined, (e) => this.receiveFailed(from, e))
      return
    }
    incoming.inbox.busy = true
    result.then(
      () => this.next(incoming),
      (e) => {
        this.receiveFailed(from, e)
        this.next(incoming)
      }
    )
  }

  /** An async handler finished: the next queued messages, and reading resumes when there is room. */
  private next(incoming: Incoming): void {
    incoming.inbox.busy = false
    const fn = this.receiveFn
    for (let p = incoming.inbox.next(fn !== undefined); p !== undefined; p = incoming.inbox.next(fn !== undefined)) {
      this.call(fn!, p, incoming.peer, incoming)
    }
    if (!incoming.inbox.isFull() && !this.closed) incoming.ps.resume()
  }

  private receiveFailed(from: string, error: unknown): void {
    this.counters.receiveErrors++
    this.failed(from, error)
  }

  /** Takes an incoming transport stream from a peer (replacing an older one). */
  attach(ps: PeerStream): void {
    const incoming: Incoming = { peer: ps.peer, ps, inbox: new Inbox(this.limits) }
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

  setReceiveFunc(fn: ReceiveFunc): void {
    this.receiveFn = fn
    for (const incoming of this.incoming.values()) if (!incoming.inbox.busy) this.next(incoming)
  }

  /** Adds the peers with an open incoming transport stream. */
  activeNodes(into: Set<string>): void {
    for (const i of this.incoming.values()) if (!i.ps.isClosed()) into.add(i.peer)
  }

  /** The peer left: its transport streams are gone with the connection. */
  forget(node: string): void {
    this.incoming.delete(node)
  }

  /** Resets every incoming transport stream (the stream is closed). */
  close(): void {
    this.closed = true
    for (const i of this.incoming.values()) i.ps.reset(ErrorCode.StreamClosed)
    this.incoming.clear()
  }
}
