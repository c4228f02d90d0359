/**
 * The near cache's copies of values: small ones carved from shared blocks, with a bound on the
 * blocks they keep alive.
 *
 * Values decoded from a message are views into shared 8 KiB blocks of the wire codec; a near copy
 * lives up to its ttl and must not keep such a block alive. A copy of its own (`slice()`) is, for
 * a typed array over 64 bytes, memory outside V8's heap: an allocation, a `BackingStore`, and a
 * free after the collector found it dead — 1.26 µs for 100 bytes against 0.15 µs carved from a
 * block (measured, Node 20). So copies of 65 bytes to 1 KiB are carved from blocks of this class,
 * bump-allocated and never reused: a carved copy keeps its block alive as long as it lives. To
 * bound that, the class counts the copies alive per block (`release` when a copy is dropped); while
 * `maxBlocks` blocks hold live copies, a new copy that does not fit the current block gets memory
 * of its own instead. Plain TypeScript; the near cache owns one.
 */

/** Copies up to this size live on V8's heap anyway. */
const ON_HEAP_MAX = 64
/** Larger copies get their own memory (few values, and a block would hold few of them). */
export const CARVED_MAX = 1024
export const BLOCK_BYTES = 8 * 1024

export class CopyBlocks {
  private block: ArrayBuffer | undefined = undefined
  private used = 0
  /** Carved copies alive, per block holding any. */
  private readonly live = new Map<ArrayBuffer, number>()

  constructor(readonly maxBlocks: number) {}

  /** Blocks that live copies keep alive. */
  get pinned(): number {
    return this.live.size
  }

  /** A copy of `value`, independent of it. */
  copy(value: Uint8Array): Uint8Array {
    const n = value.byteLength
    if (n <= ON_HEAP_MAX || n > CARVED_MAX) return value.slice()
    let block = this.block
    if (block === undefined || this.used + n > BLOCK_BYTES) {
      if (this.live.size >= this.maxBlocks) return value.slice()
      block = this.block = new ArrayBuffer(BLOCK_BYTES)
      this.used = 0
    }
    const out = new Uint8Array(block, this.used, n)
    out.set(value)
    // 8-byte aligned, as the codec's copies
    this.used += (n + 7) & ~7
    this.live.set(block, (this.live.get(block) ?? 0) + 1)
    return out
  }

  /** A copy `copy` returned is no longer kept (each once); other arrays are ignored. */
  release(copy: Uint8Array): void {
    const buffer = copy.buffer as ArrayBuffer
    const n = this.live.get(buffer)
    if (n === undefined) return
    if (n <= 1) this.live.delete(buffer)
    else this.live.set(buffer, n - 1)
  }

  /** Every copy is dropped. */
  clear(): void {
    this.live.clear()
    this.block = undefined
    this.used = 0
  }
}
