/**
 * The outgoing buffer of one stream towards one peer, and its backpressure rules, as plain
 * synchronous state: no transport, no clock. The stream shell asks `admit` what to do with a
 * message, writes to the transport, and tells the outbox what the transport said.
 *
 * A message goes straight to the transport while nothing is buffered and the transport takes
 * more; else into the buffer while it has room (at most `messages` and `bytes`, an empty one
 * takes any message); else the send waits for room, holding its copy, while the bytes already
 * waiting stay within `waitingBytes`; else the peer is overloaded and the send fails at once.
 */

/** Limits of one outbox (from the application's config). */
export interface OutboxLimits {
  /** Messages buffered at most (`streamBufferSize`). */
  readonly messages: number
  /** Bytes buffered at most (`streamBufferBytes`). */
  readonly bytes: number
  /** Bytes of sends allowed to wait for room (`maxWaitingBytes`); 0: sends never wait. */
  readonly waitingBytes: number
}

/** What to do with a message offered to an outbox. */
export type Admission =
  /** Hand it to the transport now (the caller's buffer, no copy needed). */
  | { readonly _tag: 'Write' }
  /** Keep a copy in the buffer. */
  | { readonly _tag: 'Buffer' }
  /** The buffer is full: the send waits for room with its copy. */
  | { readonly _tag: 'Wait' }
  /** The buffer is full and enough already waits: fail this send for this peer. */
  | { readonly _tag: 'Overloaded'; readonly waitingBytes: number }

const WRITE: Admission = { _tag: 'Write' }
const BUFFER: Admission = { _tag: 'Buffer' }
const WAIT: Admission = { _tag: 'Wait' }

/** A send waiting for room: its copy and whom to tell. */
interface Waiting<W> {
  readonly copy: Uint8Array
  readonly waiter: W
}

/** What an outbox held when it was cleared. */
export interface Cleared<W> {
  /** Buffered copies, dropped. */
  readonly pending: ReadonlyArray<Uint8Array>
  /** Waiting sends, to fail; their copies are dropped. */
  readonly waiting: ReadonlyArray<Waiting<W>>
  /** Messages already handed to the transport. */
  readonly written: number
  readonly writtenBytes: number
}

export class Outbox<W> {
  private readonly pending: Array<Uint8Array> = []
  private readonly waiting: Array<Waiting<W>> = []
  private pendingBytesTotal = 0
  private waitingBytesTotal = 0
  /** The transport said "wait for drain". */
  private blocked = false
  /** Messages and bytes handed to the transport (all lost if the peer refuses the stream). */
  written = 0
  writtenBytes = 0

  constructor(readonly limits: OutboxLimits) {}

  get pendingBytes(): number {
    return this.pendingBytesTotal
  }

  get waitingBytes(): number {
    return this.waitingBytesTotal
  }

  /** Messages buffered or waiting. */
  get queuedMessages(): number {
    return this.pending.length + this.waiting.length
  }

  /** Bytes buffered or waiting. */
  get queuedBytes(): number {
    return this.pendingBytesTotal + this.waitingBytesTotal
  }

  /** Decides what happens to a message of `bytes` offered now. */
  admit(bytes: number): Admission {
    if (!this.blocked && this.pending.length === 0) return WRITE
    if (this.hasRoom(bytes)) return BUFFER
    const limit = this.limits.waitingBytes
    if (limit === 0 || (this.waiting.length > 0 && this.waitingBytesTotal + bytes > limit)) {
      return { _tag: 'Overloaded', waitingBytes: this.waitingBytesTotal }
    }
    return WAIT
  }

  /** Buffers a copy (after `Buffer`, or when a waiting send is let in). */
  buffer(copy: Uint8Array): void {
    this.pending.push(copy)
    this.pendingBytesTotal += copy.byteLength
  }

  /** Queues a waiting send (after `Wait`). */
  wait(copy: Uint8Array, waiter: W): void {
    this.waiting.push({ copy, waiter })
    this.waitingBytesTotal += copy.byteLength
  }

  /** Counts a message the transport took; `accepted` is what its `send` returned. */
  wrote(bytes: number, accepted: boolean): void {
    this.written++
    this.writtenBytes += bytes
    if (!accepted) this.blocked = true
  }

  /** The next buffered copy to hand to the transport, or undefined while blocked or empty. */
  next(): Uint8Array | undefined {
    if (this.blocked) return undefined
    const copy = this.pending.shift()
    if (copy !== undefined) this.pendingBytesTotal -= copy.byteLength
    return copy
  }

  /** The transport drained: it takes more. */
  drained(): void {
    this.blocked = false
  }

  /** Lets waiting sends in while the buffer has room: their copies are buffered; returns whom to tell. */
  admitWaiting(): Array<W> {
    const admitted: Array<W> = []
    while (this.waiting.length > 0 && !this.isFull()) {
      const w = this.waiting.shift()!
      this.waitingBytesTotal -= w.copy.byteLength
      this.buffer(w.copy)
      admitted.push(w.waiter)
    }
    return admitted
  }

  /** Empties the outbox (the peer or the stream is gone). */
  clear(): Cleared<W> {
    const cleared: Cleared<W> = {
      pending: this.pending.splice(0),
      waiting: this.waiting.splice(0),
      written: this.written,
      writtenBytes: this.writtenBytes
    }
    this.pendingBytesTotal = 0
    this.waitingBytesTotal = 0
    return cleared
  }

  /** Room for `bytes` more while under both limits (an empty buffer takes any message). */
  private hasRoom(bytes: number): boolean {
    const n = this.pending.length
    return n === 0 || (n < this.limits.messages && this.pendingBytesTotal + bytes <= this.limits.bytes)
  }

  private isFull(): boolean {
    return this.pending.length >= this.limits.messages || this.pendingBytesTotal >= this.limits.bytes
  }
}
