/**
 * Reusable buffers for the copies a stream keeps of large outgoing messages.
 *
 * A stream copies a message it cannot hand to the transport at once (the caller may reuse its
 * buffer as soon as `send` resolves). Without reuse, every such copy of a bulk message is a new
 * ArrayBuffer that lives long enough to be promoted, and V8 frees promoted ArrayBuffers only in
 * full collections: at 10 MiB per message that is a full collection every few tens of
 * milliseconds, each pausing every other stream of the process. A copy taken here goes back to
 * the pool once the transport has handed all of it to QUIC, and the next message reuses it.
 *
 * Buffers come in size classes of a quarter of a power of two (at most 25 % unused); the pool
 * keeps at most `maxRetainedBytes` of free buffers and drops them all after `idleMs` without use.
 */

export interface BufferPoolOptions {
  /** Smaller copies are plain allocations (they die young, which costs V8 little). */
  readonly minBytes: number
  /** Free buffers kept at most, in bytes. */
  readonly maxRetainedBytes: number
  /** Free buffers are dropped after this long without a copy (ms). */
  readonly idleMs: number
  /** Runs `f` after `ms`; returns a cancel. */
  readonly schedule: (ms: number, f: () => void) => () => void
}

/** The capacity of the size class holding `n` bytes. */
export const sizeClass = (n: number): number => {
  if (n <= 4) return 4
  const step = 2 ** (Math.floor(Math.log2(n)) - 2)
  return Math.ceil(n / step) * step
}

export class BufferPool {
  private readonly free = new Map<number, Array<ArrayBuffer>>()
  /** Buffers out on loan: only these are taken back, and each only once. */
  private readonly leased = new WeakSet<ArrayBuffer>()
  private freeBytes = 0
  private uses = 0
  private usesAtLastTrim = 0
  private cancelTrim: (() => void) | undefined
  /** Copies served from a free buffer, and new buffers allocated (for tests and stats). */
  reused = 0
  allocated = 0

  constructor(readonly options: BufferPoolOptions) {}

  /** Free bytes held right now. */
  get retainedBytes(): number {
    return this.freeBytes
  }

  /** A copy of `payload`; from the pool when it is at least `minBytes`. */
  copy(payload: Uint8Array): Uint8Array {
    const n = payload.byteLength
    if (n < this.options.minBytes) return new Uint8Array(payload)
    this.uses++
    const capacity = sizeClass(n)
    const list = this.free.get(capacity)
    let buffer = list?.pop()
    if (buffer === undefined) {
      buffer = new ArrayBuffer(capacity)
      this.allocated++
    } else {
      this.freeBytes -= capacity
      this.reused++
    }
    this.leased.add(buffer)
    const bytes = new Uint8Array(buffer, 0, n)
    bytes.set(payload)
    return bytes
  }

  /** True for a copy of this pool that is out on loan (release will take it back). */
  isLeased(bytes: Uint8Array): boolean {
    return this.leased.has(bytes.buffer as ArrayBuffer)
  }

  /**
   * Takes back a copy nothing refers to any more. Anything else (a small copy, a buffer not
   * from this pool, one already released) is ignored.
   */
  release(bytes: Uint8Array): void {
    const buffer = bytes.buffer as ArrayBuffer
    if (!this.leased.delete(buffer)) return
    const capacity = buffer.byteLength
    if (this.freeBytes + capacity > this.options.maxRetainedBytes) return
    let list = this.free.get(capacity)
    if (list === undefined) {
      list = []
      this.free.set(capacity, list)
    }
    list.push(buffer)
    this.freeBytes += capacity
    if (this.cancelTrim === undefined) this.cancelTrim = this.options.schedule(this.options.idleMs, this.trim)
  }

  /** A release for `bytes` to hand to the transport, or undefined for a copy that is not pooled. */
  releaser(bytes: Uint8Array): (() => void) | undefined {
    return this.isLeased(bytes) ? () => this.release(bytes) : undefined
  }

  /** Drops the free buffers when nothing was copied since the last look; else looks again later. */
  private readonly trim = (): void => {
    this.cancelTrim = undefined
    if (this.uses !== this.usesAtLastTrim) {
      this.usesAtLastTrim = this.uses
      if (this.freeBytes > 0) this.cancelTrim = this.options.schedule(this.options.idleMs, this.trim)
      return
    }
    this.clear()
  }

  /** Drops every free buffer and the pending trim. */
  clear(): void {
    this.cancelTrim?.()
    this.cancelTrim = undefined
    this.free.clear()
    this.freeBytes = 0
  }
}
