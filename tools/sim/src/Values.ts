/**
 * Values the clients write: their bytes follow from (seed, write id), so a run never keeps
 * them, and a content hash identifies each one; a torn, mixed or invented value has a hash no
 * put wrote.
 */
import { Prng } from './Prng.js'

/** Sizes: mostly small, some medium, a few large (up to 1 MiB). */
export const drawSize = (prng: Prng): number => {
  const x = prng.float()
  if (x < 0.7) return prng.int(1, 64)
  if (x < 0.92) return prng.int(65, 16 * 1024)
  if (x < 0.99) return prng.int(16 * 1024 + 1, 512 * 1024)
  return prng.int(512 * 1024 + 1, 1024 * 1024)
}

/** The bytes of write `writeId` in run `seed`. */
export const valueBytes = (seed: number, writeId: number, size: number): Uint8Array => {
  const prng = new Prng(seed * 1_000_003 + writeId)
  const out = new Uint8Array(size)
  const words = new Uint32Array(out.buffer, 0, size >>> 2)
  for (let i = 0; i < words.length; i++) words[i] = prng.next()
  for (let i = words.length * 4; i < size; i++) out[i] = prng.next() & 0xff
  return out
}

/** A 64-bit content hash with the length, as text: `<size>:<hex>`. */
export const hashBytes = (bytes: Uint8Array): string => {
  let h1 = 0x811c9dc5
  let h2 = 0x9747b28c
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!
    h1 = Math.imul(h1 ^ b, 0x01000193)
    h2 = Math.imul(h2 ^ b, 0x5bd1e995)
    h2 ^= h2 >>> 15
  }
  return `${bytes.length}:${(h1 >>> 0).toString(16).padStart(8, '0')}${(h2 >>> 0).toString(16).padStart(8, '0')}`
}
