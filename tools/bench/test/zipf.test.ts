import { describe, expect, it } from 'vitest'
import { fnvhash64, ScrambledZipfian, zeta, ZIPFIAN_CONSTANT, ZipfianGenerator, zipfProbability } from '../src/zipf.js'

/** mulberry32: a small seeded PRNG, so the draws are the same every run. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const N = 100_000
const DRAWS = 400_000

describe('ZipfianGenerator', () => {
  it('draws ranks with the Zipfian shares of YCSB constant 0.99', () => {
    const gen = new ZipfianGenerator(N, seeded(17))
    const counts = new Uint32Array(N)
    let outside = 0
    for (let i = 0; i < DRAWS; i++) {
      const r = gen.next()
      if (r >= 0 && r < N) counts[r]!++
      else outside++
    }
    expect(outside).toBe(0)
    const zetan = zeta(N, ZIPFIAN_CONSTANT)
    expect(gen.zetaN).toBeCloseTo(zetan, 9)
    // the top rank's share is exact in Gray's method (u * zetan < 1); the others are approximated
    expect(counts[0]! / DRAWS).toBeCloseTo(zipfProbability(0, N), 2)
    expect(zipfProbability(0, N)).toBeGreaterThan(0.07)
    expect(zipfProbability(0, N)).toBeLessThan(0.09)
    for (const [rank, tolerance] of [
      [1, 0.15],
      [2, 0.25],
      [9, 0.35]
    ] as const) {
      const expected = zipfProbability(rank, N) * DRAWS
      expect(Math.abs(counts[rank]! - expected) / expected).toBeLessThan(tolerance)
    }
    // the 100 most popular ranks take about their share (sum of the formula), within 10 %
    let top = 0
    let expectedTop = 0
    for (let r = 0; r < 100; r++) {
      top += counts[r]!
      expectedTop += zipfProbability(r, N)
    }
    expect(Math.abs(top / DRAWS - expectedTop) / expectedTop).toBeLessThan(0.1)
    // and the tail is reached
    let tail = 0
    for (let r = N / 2; r < N; r++) tail += counts[r]!
    expect(tail).toBeGreaterThan(0)
  })

  it('refuses fewer than two items', () => {
    expect(() => new ZipfianGenerator(1)).toThrow(/at least 2 items/)
  })
})

describe('ScrambledZipfian', () => {
  it("hashes ranks with YCSB's fnvhash64", () => {
    // FNV-1a 64 of eight zero bytes is 0xa8c7f832281a39c5, negative as a Java long
    expect(fnvhash64(0)).toBe(6284781860667377211n)
    expect(fnvhash64(1)).not.toBe(fnvhash64(0))
  })

  it('spreads the popular keys over the key space, keeping the top share', () => {
    const gen = new ScrambledZipfian(N, seeded(5))
    const hot = Array.from({ length: 10 }, (_, r) => gen.scramble[r]!)
    expect(new Set(hot).size).toBe(10)
    // not clustered at the start of the key space
    expect(hot.filter((k) => k < 1000).length).toBeLessThan(3)
    let top = 0
    for (let i = 0; i < DRAWS; i++) if (gen.next() === gen.scramble[0]) top++
    expect(top / DRAWS).toBeGreaterThanOrEqual(zipfProbability(0, N) * 0.9)
  })
})
