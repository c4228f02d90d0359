/**
 * YCSB's key choosers for a skewed workload: `ZipfianGenerator` (Gray et al., "Quickly
 * Generating Billion-Record Synthetic Databases", SIGMOD 1994, as YCSB implements it) and
 * `ScrambledZipfian`, which hashes each rank (FNV-1a 64) so the popular keys are spread over
 * the key space (and so over the cache's owners) instead of being keys 0, 1, 2...
 *
 * Rank r (0-based) of n items has probability (1 / (r + 1)^θ) / ζ(n, θ), with YCSB's θ = 0.99.
 */

/** YCSB's Zipfian constant. */
export const ZIPFIAN_CONSTANT = 0.99

/** ζ(n, θ) = Σ_{i=1..n} 1 / i^θ. */
export const zeta = (n: number, theta: number): number => {
  let sum = 0
  for (let i = 1; i <= n; i++) sum += 1 / Math.pow(i, theta)
  return sum
}

/** The probability of rank `r` (0-based) among `n` items. */
export const zipfProbability = (r: number, n: number, theta = ZIPFIAN_CONSTANT, zetan = zeta(n, theta)): number => 1 / Math.pow(r + 1, theta) / zetan

/** Ranks 0..n-1 drawn with Zipfian popularity (rank 0 the most popular). `random` returns [0, 1). */
export class ZipfianGenerator {
  private readonly alpha: number
  private readonly eta: number
  private readonly zetan: number
  private readonly half: number

  constructor(
    readonly items: number,
    private readonly random: () => number = Math.random,
    readonly theta = ZIPFIAN_CONSTANT
  ) {
    if (!Number.isInteger(items) || items < 2) throw new Error(`a Zipfian generator needs at least 2 items, got ${items}`)
    const zeta2 = zeta(2, theta)
    this.zetan = zeta(items, theta)
    this.alpha = 1 / (1 - theta)
    this.eta = (1 - Math.pow(2 / items, 1 - theta)) / (1 - zeta2 / this.zetan)
    this.half = 1 + Math.pow(0.5, theta)
  }

  /** ζ(n, θ) of this generator. */
  get zetaN(): number {
    return this.zetan
  }

  next(): number {
    const u = this.random()
    const uz = u * this.zetan
    if (uz < 1) return 0
    if (uz < this.half) return 1
    const r = Math.floor(this.items * Math.pow(this.eta * u - this.eta + 1, this.alpha))
    return r >= this.items ? this.items - 1 : r
  }
}

const FNV_OFFSET = 0xcbf29ce484222325n
const FNV_PRIME = 0x100000001b3n
const MASK64 = 0xffffffffffffffffn

/** YCSB's `Utils.fnvhash64`: FNV-1a over the 8 bytes of a long, low byte first; the absolute value of the signed result. */
export const fnvhash64 = (value: number): bigint => {
  let v = BigInt(value)
  let hash = FNV_OFFSET
  for (let i = 0; i < 8; i++) {
    hash ^= v & 0xffn
    hash = (hash * FNV_PRIME) & MASK64
    v >>= 8n
  }
  const signed = BigInt.asIntN(64, hash)
  return signed < 0n ? -signed : signed
}

/**
 * Keys 0..n-1 with Zipfian popularity, hashed so the popular ones are scattered: key =
 * fnvhash64(rank) mod n, as YCSB's ScrambledZipfianGenerator. YCSB draws the rank over 10^10
 * items before the modulo, which flattens the popularity; here it is drawn over the n keys, so
 * the workload has the Zipfian shape over the keys (a few ranks collide on one key).
 * `scramble[r]` is the key of rank r, precomputed (the hash is BigInt arithmetic).
 */
export class ScrambledZipfian {
  private readonly zipf: ZipfianGenerator
  readonly scramble: Uint32Array

  constructor(
    readonly items: number,
    random: () => number = Math.random,
    theta = ZIPFIAN_CONSTANT
  ) {
    this.zipf = new ZipfianGenerator(items, random, theta)
    this.scramble = new Uint32Array(items)
    const n = BigInt(items)
    for (let r = 0; r < items; r++) this.scramble[r] = Number(fnvhash64(r) % n)
  }

  /** The rank drawn and its key. */
  nextRank(): number {
    return this.zipf.next()
  }

  next(): number {
    return this.scramble[this.zipf.next()]!
  }
}
