/**
 * The cache's outgoing messages, gathered per bucket and peer for one turn of the event loop and
 * sent as one payload each (`CacheMessage.encodeBatch`: several messages in a `Batch` envelope,
 * one alone as itself), in the order the engine wrote them. So the gets, acknowledgements and
 * answers that 64 callers cause in one turn cost one stream write, one frame and one receive
 * callback per peer instead of 64, and every payload is encoded into one reused buffer (the
 * stream copies what it keeps before `send` returns).
 *
 * Messages wait at most until the microtasks of the current turn have run (the transport sends
 * once per turn, after them), so batching adds no turn of latency. `flush()` sends at once (before
 * a stream closes, at shutdown). Plain TypeScript; the shell owns one.
 */
import { CacheMessage, SystemMessage } from '@mycorrizal/wire'

/** Where the outbox's payloads go. */
export interface OutboxSink {
  /**
   * Sends `bytes` on `bucket`'s stream to `to`; `carried` are the messages in it, for the engine
   * when the send fails. `bytes` is valid only during the call.
   */
  readonly send: (bucket: string, to: string, bytes: Uint8Array, carried: ReadonlyArray<CacheMessage.CacheMessage>) => void
  /** A message that could not be encoded (a field out of range): it was not sent. */
  readonly unencodable: (bucket: string, to: string, message: CacheMessage.CacheMessage, error: unknown) => void
}

/** The encoding buffer grows with the largest payload; past this it is let go after use. */
const KEEP_BUFFER_BYTES = 256 * 1024

export class Outbox {
  /** bucket -> peer -> messages, in the order written. */
  private pending = new Map<string, Map<string, Array<CacheMessage.CacheMessage | undefined>>>()
  private queued = false
  private writer = new SystemMessage.Writer(4096)

  constructor(
    private readonly sink: OutboxSink,
    /** The largest payload a stream takes. */
    private readonly maxBytes: number
  ) {}

  add(bucket: string, to: string, message: CacheMessage.CacheMessage): void {
    let peers = this.pending.get(bucket)
    if (peers === undefined) {
      peers = new Map()
      this.pending.set(bucket, peers)
    }
    const messages = peers.get(to)
    if (messages === undefined) peers.set(to, [message])
    else messages.push(message)
    if (!this.queued) {
      this.queued = true
      queueMicrotask(this.afterMicrotasks)
    }
  }

  /**
   * Runs `flush` once the microtasks queued so far and every one they queue have run: a tick
   * queued from a microtask waits for the microtask queue to empty. So the acknowledgements an
   * answer causes and the requests its callers then make (a few promise hops later) go as one
   * payload, still in the same turn and before the transport's send.
   */
  private readonly afterMicrotasks = (): void => {
    process.nextTick(this.flush)
  }

  /** Sends everything gathered, now. */
  readonly flush = (): void => {
    this.queued = false
    if (this.pending.size === 0) return
    const pending = this.pending
    // a send that fails makes the engine write again: that goes to the next flush
    this.pending = new Map()
    for (const [bucket, peers] of pending) for (const [to, messages] of peers) this.sendAll(bucket, to, messages)
    if (this.writer.capacity > KEEP_BUFFER_BYTES) this.writer = new SystemMessage.Writer(4096)
  }

  /** Messages waiting for the next flush. */
  get size(): number {
    let n = 0
    for (const peers of this.pending.values()) for (const messages of peers.values()) n += messages.length
    return n
  }

  private sendAll(bucket: string, to: string, messages: Array<CacheMessage.CacheMessage | undefined>): void {
    const w = this.writer
    for (let i = 0; i < messages.length; ) {
      const from = i
      w.reset()
      i = CacheMessage.encodeBatch(w, messages, from, this.maxBytes, (j, error) => {
        const message = messages[j]!
        messages[j] = undefined
        this.sink.unencodable(bucket, to, message, error)
      })
      if (w.length === 0) continue
      const carried: Array<CacheMessage.CacheMessage> = []
      for (let j = from; j < i; j++) if (messages[j] !== undefined) carried.push(messages[j]!)
      this.sink.send(bucket, to, w.finish(), carried)
    }
  }
}
