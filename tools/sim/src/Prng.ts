/**
 * A small seeded PRNG (sfc32, seeded through splitmix32): the simulator's only source of
 * randomness, so one seed decides every choice. Plain functions over 32-bit state; fast enough
 * to fill megabyte values.
 */

const splitmix32 = (state: { s: number }): number => {
  state.s = (state.s + 0x9e3779b9) | 0
  let z = state.s
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

/** A deterministic stream of numbers from a seed (any safe integer). */
export class Prng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    const st = { s: (seed | 0) ^ Math.floor(seed / 0x1_0000_0000) }
    this.a = splitmix32(st)
    this.b = splitmix32(st)
    this.c = splitmix32(st)
    this.d = splitmix32(st)
    for (let i = 0; i < 12; i++) this.next()
  }

  /** The next 32-bit unsigned integer. */
  next(): number {
    const a = this.a
    const b = this.b
    const c = this.c
    const d = this.d
    const t = (((a + b) | 0) + d) | 0
    this.d = (d + 1) | 0
    this.a = b ^ (b >>> 9)
    this.b = (c + (c << 3)) | 0
    const r = (c << 21) | (c >>> 11)
    this.c = (r + t) | 0
    return t >>> 0
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next() / 0x1_0000_0000
  }

  /** An integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1))
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[Math.floor(this.float() * items.length)]!
  }

  /** `n` distinct items (fewer if the list is shorter), in list order. */
  sample<A>(items: ReadonlyArray<A>, n: number): Array<A> {
    const idx = items.map((_, i) => i)
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(this.float() * (i + 1))
      ;[idx[i], idx[j]] = [idx[j]!, idx[i]!]
    }
    return idx
      .slice(0, Math.min(n, items.length))
      .sort((x, y) => x - y)
      .map((i) => items[i]!)
  }

  /** A child generator: its draws do not shift this one's beyond the one draw that seeds it. */
  fork(): Prng {
    return new Prng(this.next())
  }
}
