import { copyBytes } from './bytes.js'

/**
 * The outbound side of one transport stream, shared by the QUIC and the memory transport:
 * the bytes written and not yet taken by the medium, with their release callbacks, and the
 * flags of the write half (drain wanted, FIN queued, FIN sent). Plain TypeScript on the hot
 * path: no allocation per write beyond the copy of a chunk the caller keeps.
 *
 * The medium takes bytes from the head (`head`, then `consume(n)`), as much as its flow
 * control allows; a partly taken chunk stays at the head as a view of its rest.
 */
export class Outbox {
  private readonly chunks: Array<Uint8Array> = []
  /** For each chunk, what to call once the medium took all of it (undefined: nothing). */
  private readonly releases: Array<(() => void) | undefined> = []
  /** Bytes queued. */
  bytes = 0
  /** `write` returned false: call `onDrain` once below the high-water mark. */
  private wantDrain = false
  /** `end` was called: FIN goes after the queued bytes. */
  finQueued = false
  finSent = false

  constructor(readonly highWaterMark: number) {}

  isEmpty(): boolean {
    return this.chunks.length === 0
  }

  /**
   * Queues `chunk` from `offset` on. An owned chunk is kept as it is and `onRelease` runs once
   * the medium took all of it; any other is copied and `onRelease` runs at once.
   */
  push(chunk: Uint8Array, offset: number, owned: boolean, onRelease: (() => void) | undefined): void {
    if (owned) {
      this.chunks.push(offset === 0 ? chunk : chunk.subarray(offset))
      this.releases.push(onRelease)
    } else {
      this.chunks.push(copyBytes(chunk, offset))
      this.releases.push(undefined)
      onRelease?.()
    }
    this.bytes += chunk.byteLength - offset
  }

  /** After a write: true while below the high-water mark, else false and a drain is owed. */
  accepts(): boolean {
    if (this.bytes < this.highWaterMark) return true
    this.wantDrain = true
    return false
  }

  /** The chunk at the head; only when not empty. */
  head(): Uint8Array {
    return this.chunks[0]!
  }

  /** The medium took `n` bytes of the head. True when the whole head chunk went (and was released). */
  consume(n: number): boolean {
    const chunk = this.chunks[0]!
    this.bytes -= n
    if (n < chunk.byteLength) {
      this.chunks[0] = chunk.subarray(n)
      return false
    }
    this.chunks.shift()
    this.releases.shift()?.()
    return true
  }

  /** True once, when a drain is owed and the queue fell below the high-water mark. */
  drainDue(): boolean {
    if (!this.wantDrain || this.bytes >= this.highWaterMark) return false
    this.wantDrain = false
    return true
  }

  /** True when FIN is queued, not sent, and nothing is in front of it. */
  finDue(): boolean {
    return this.finQueued && !this.finSent && this.chunks.length === 0
  }

  /** The stream closed: everything queued is dropped and released. */
  clear(): void {
    this.chunks.length = 0
    this.bytes = 0
    const releases = this.releases.splice(0)
    for (let i = 0; i < releases.length; i++) releases[i]?.()
  }
}
