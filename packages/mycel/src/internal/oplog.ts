/**
 * The records of atomic operations applied to a bucket's keys: the ids (origin node, seq) and
 * results of the operations applied to each key, so a primary answers a retried operation with
 * its result instead of applying it again. The primary sends each record with the value it
 * replicates (and with handoff), so the next primary of the key has it too.
 *
 * Bounded in time and in count. A caller asks again only while its operation is under way: at
 * most MAX_ATOMIC_ATTEMPTS attempts of two request timeouts each, with short delays between
 * them; a record is kept for `retainMs`, longer than that, so every retry finds it (on the
 * log's own time, which a clock stepping forward moves by at most MAX_CLOCK_STEP_MS). Past
 * `maxRecords` records in the bucket, the least recently used key's records go first (a key
 * written that often within `retainMs` is the hot one: it keeps its records).
 *
 * Stored in columns: per key and origin, the seqs in ascending order with their results and the
 * times they were learned, in three arrays of numbers (about 30 bytes a record, no object or `Map`
 * entry of its own; a record object is built only for the retry that finds it). An origin's
 * operations on a key reach the primary in seq order (one stream, seqs from a monotonic clock),
 * so a record is nearly always appended, and an operation above the origin's last seq — every
 * first attempt — is known to be new without a search; a record learned out of order (handoff,
 * a retry after a failover) is inserted in its place.
 */
import type { CacheMessage } from '@mycorrizal/wire'

/** Records per bucket at most (about 30 bytes each in the columns: 7.5 MiB). */
export const MAX_RECORDS = 262_144

/**
 * The most one reading of the clock advances the records' time (ms). The records must outlive
 * every retry of their operations; a clock that steps forward by minutes (a wall clock set by
 * NTP; Effect's default clock is monotonic, a custom one may not be) would expire them all at
 * once, and a retry still under way would be applied again. Between readings of a busy bucket
 * far less passes; a quiet bucket keeps its records longer than `retainMs` (the count bound
 * still holds).
 */
export const MAX_CLOCK_STEP_MS = 1_000

/** One origin's records of a key, by ascending seq; `head` is the first one kept. */
interface OriginRecords {
  readonly origin: string
  readonly seqs: Array<number>
  readonly results: Array<number>
  /** When this node learned each one (ms, the log's `clock()`). */
  readonly ats: Array<number>
  head: number
}

/** One key's records, per origin (a key has few writers), and how many. */
interface KeyRecords {
  readonly origins: Array<OriginRecords>
  n: number
  /**
   * The earliest time the origins' first records were learned: until `oldest + retainMs` none of
   * them can have expired, so an add skips the sweep. (A record inserted out of order is learned
   * after the ones behind it; it may outlast `retainMs` until the sweep reaches it — a retry
   * finds it longer, the count bound still holds.)
   */
  oldest: number
}

const originOf = (records: KeyRecords, origin: string): OriginRecords | undefined => {
  const origins = records.origins
  for (let i = 0; i < origins.length; i++) if (origins[i]!.origin === origin) return origins[i]
  return undefined
}

/** True when `o` holds no record at or above `seq`: an operation with it is new (every first attempt). */
const above = (o: OriginRecords, seq: number): boolean => o.head === o.seqs.length || seq > o.seqs[o.seqs.length - 1]!

/** The index in `o` of the first seq ≥ `seq` (the end when none). */
const lowerBound = (o: OriginRecords, seq: number): number => {
  const seqs = o.seqs
  let lo = o.head
  let hi = seqs.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (seqs[mid]! < seq) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Cuts off the dropped front of `o`'s columns once it is half of them or more: a key keeps at
 * most as many dropped slots as records, and every record is moved a bounded number of times.
 */
const compact = (o: OriginRecords): void => {
  if (o.head === 0 || o.head * 2 < o.seqs.length) return
  o.seqs.splice(0, o.head)
  o.results.splice(0, o.head)
  o.ats.splice(0, o.head)
  o.head = 0
}

export class OpLog {
  /** Records by key (least recently used first). */
  private readonly byKey = new Map<string, KeyRecords>()
  private count = 0

  /** The records' time: the clock's advance, at most MAX_CLOCK_STEP_MS a reading, never back. */
  private time = 0
  private lastReading: number | undefined

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number,
    private readonly maxRecords = MAX_RECORDS
  ) {}

  private clock(): number {
    const now = this.now()
    const last = this.lastReading
    if (last !== undefined && now > last) this.time += Math.min(now - last, MAX_CLOCK_STEP_MS)
    this.lastReading = now
    return this.time
  }

  find(key: string, origin: string, seq: number): CacheMessage.AtomicRecord | undefined {
    const records = this.byKey.get(key)
    if (records === undefined) return undefined
    const o = originOf(records, origin)
    if (o === undefined || above(o, seq)) return undefined
    const i = lowerBound(o, seq)
    return i < o.seqs.length && o.seqs[i] === seq ? { origin, seq, result: o.results[i]! } : undefined
  }

  add(key: string, record: CacheMessage.AtomicRecord): void {
    const now = this.clock()
    let records = this.byKey.get(key)
    if (records === undefined) records = { origins: [], n: 0, oldest: now }
    else this.byKey.delete(key)
    this.byKey.set(key, records)
    // the oldest first: drop what no caller can still retry
    if (records.oldest <= now - this.retainMs) this.sweep(records, now - this.retainMs, now)
    let o = originOf(records, record.origin)
    if (o === undefined) {
      o = { origin: record.origin, seqs: [], results: [], ats: [], head: 0 }
      records.origins.push(o)
    }
    const { seqs, results, ats } = o
    const seq = record.seq
    if (above(o, seq)) {
      seqs.push(seq)
      results.push(record.result)
      ats.push(now)
    } else {
      const i = lowerBound(o, seq)
      if (i < seqs.length && seqs[i] === seq) {
        // learned again: kept from now on
        ats[i] = now
        return
      }
      seqs.splice(i, 0, seq)
      results.splice(i, 0, record.result)
      ats.splice(i, 0, now)
    }
    records.n++
    this.count++
    this.evict(key)
  }

  merge(key: string, records: ReadonlyArray<CacheMessage.AtomicRecord>): void {
    for (const r of records) if (this.find(key, r.origin, r.seq) === undefined) this.add(key, r)
  }

  /** The records of `key` a caller may still retry, oldest first (by when they were learned, then seq). */
  list(key: string): Array<CacheMessage.AtomicRecord> | undefined {
    const records = this.byKey.get(key)
    if (records === undefined) return undefined
    const from = this.clock() - this.retainMs
    const kept: Array<{ readonly record: CacheMessage.AtomicRecord; readonly at: number }> = []
    for (const o of records.origins) {
      for (let i = o.head; i < o.seqs.length; i++) if (o.ats[i]! > from) kept.push({ record: { origin: o.origin, seq: o.seqs[i]!, result: o.results[i]! }, at: o.ats[i]! })
    }
    if (kept.length === 0) return undefined
    kept.sort((x, y) => x.at - y.at || x.record.seq - y.record.seq || (x.record.origin < y.record.origin ? -1 : x.record.origin > y.record.origin ? 1 : 0))
    return kept.map((k) => k.record)
  }

  /** Records held. */
  get size(): number {
    return this.count
  }

  /** Slots of the columns, records and dropped ones not yet cut off (for tests of the bound). */
  get slots(): number {
    let n = 0
    for (const records of this.byKey.values()) for (const o of records.origins) n += o.seqs.length
    return n
  }

  clear(): void {
    this.byKey.clear()
    this.count = 0
  }

  /** Drops each origin's records from the front while they were learned at `cutoff` or before. */
  private sweep(records: KeyRecords, cutoff: number, now: number): void {
    let oldest = now
    for (const o of records.origins) {
      const ats = o.ats
      while (o.head < ats.length && ats[o.head]! <= cutoff) {
        o.head++
        records.n--
        this.count--
      }
      compact(o)
      if (o.head < ats.length && ats[o.head]! < oldest) oldest = ats[o.head]!
    }
    records.oldest = oldest
    // an origin with nothing left goes (its columns were cut to nothing)
    for (let i = records.origins.length - 1; i >= 0; i--) if (records.origins[i]!.seqs.length === 0) records.origins.splice(i, 1)
  }

  /** Past maxRecords: the least recently used key's records go, or, when `key` holds them all, its oldest. */
  private evict(key: string): void {
    while (this.count > this.maxRecords) {
      const [first, oldest] = this.byKey.entries().next().value!
      if (first !== key) {
        this.byKey.delete(first)
        this.count -= oldest.n
        continue
      }
      // this key holds every record: the one learned first goes
      let pick: OriginRecords | undefined
      for (const o of oldest.origins) if (o.head < o.seqs.length && (pick === undefined || o.ats[o.head]! < pick.ats[pick.head]!)) pick = o
      pick!.head++
      compact(pick!)
      oldest.n--
      this.count--
    }
  }
}
