/**
 * Copies of byte ranges for decoded fields that outlive the buffer they were read from.
 *
 * A `Uint8Array` of more than 64 bytes gets its memory outside V8's heap: an allocation and a
 * later free per array, about 1.5-2.5 µs for a 100-byte value on this project's machines, the
 * largest single cost of decoding a `Put` or `GetResponse`. Copies of 65 bytes to 1 KiB are
 * therefore carved from shared 8 KiB blocks, as Node does for `Buffer.allocUnsafe` (0.33 µs for
 * 100 bytes, measured): each is a plain `Uint8Array` with its own bytes at an offset of a block
 * (`byteOffset` not 0, `buffer` shared). A copy kept alive keeps its block alive. Smaller copies
 * live on V8's heap, larger ones get their own memory.
 */

const BLOCK_BYTES = 8 * 1024
const ON_HEAP_MAX = 64
const POOLED_MAX = 1024

let block: ArrayBuffer | undefined
let used = 0

/** A copy of `src[start, start + n)`. */
export const copyRange = (src: Uint8Array, start: number, n: number): Uint8Array => {
  let out: Uint8Array
  if (n <= ON_HEAP_MAX || n > POOLED_MAX) out = new Uint8Array(n)
  else {
    if (block === undefined || used + n > BLOCK_BYTES) {
      block = new ArrayBuffer(BLOCK_BYTES)
      used = 0
    }
    out = new Uint8Array(block, used, n)
    // 8-byte aligned, so a DataView or wider typed array over a copy reads aligned
    used += (n + 7) & ~7
  }
  out.set(src.subarray(start, start + n))
  return out
}
