/**
 * Ordered delivery of one stream's messages from one peer to the receive function, as plain
 * synchronous state. A message is handed over at once when nothing is ahead of it, no async
 * handler is busy and a receive function is set; else it waits in order. While the queue is
 * full (`messages` or `bytes`) the shell stops reading the transport, so flow control slows
 * the sender.
 */

/** Limits of one inbox (the application's `streamBufferSize` and `streamBufferBytes`). */
export interface InboxLimits {
  readonly messages: number
  readonly bytes: number
}

/** What to do with a message that arrived. */
export type Arrival =
  /** Hand it to the receive function now. */
  | { readonly _tag: 'Deliver' }
  /** Queued behind others; `pause`: the queue is full, stop reading. */
  | { readonly _tag: 'Queued'; readonly pause: boolean }

const DELIVER: Arrival = { _tag: 'Deliver' }
const QUEUED: Arrival = { _tag: 'Queued', pause: false }
const QUEUED_FULL: Arrival = { _tag: 'Queued', pause: true }

export class Inbox {
  private readonly queue: Array<Uint8Array> = []
  private queueBytes = 0
  /** An async receive function has not finished with a message yet. */
  busy = false

  constructor(readonly limits: InboxLimits) {}

  get length(): number {
    return this.queue.length
  }

  /** A message arrived; `ready`: a receive function is set. */
  arrive(payload: Uint8Array, ready: boolean): Arrival {
    if (!this.busy && this.queue.length === 0 && ready) return DELIVER
    this.queue.push(payload)
    this.queueBytes += payload.byteLength
    return this.isFull() ? QUEUED_FULL : QUEUED
  }

  /** The next message to deliver, or undefined while busy, empty or without a receive function. */
  next(ready: boolean): Uint8Array | undefined {
    if (this.busy || !ready) return undefined
    const payload = this.queue.shift()
    if (payload !== undefined) this.queueBytes -= payload.byteLength
    return payload
  }

  /** True while the queue is at a limit (reading stays paused). */
  isFull(): boolean {
    return this.queue.length >= this.limits.messages || this.queueBytes >= this.limits.bytes
  }
}
