/**
 * The records of atomic operations applied to a bucket's keys: the ids (origin node, seq) and
 * results of the operations applied to each key, so a primary answers a retried operation with
 * its result instead of applying it again. The primary sends each record with the value it
 * replicates (and with handoff), so the next primary of the key has it too.
 *
 * Bounded in time and in count. A caller asks again only while its operation is under way: at
 * most MAX_ATOMIC_ATTEMPTS attempts of two request timeouts each, with short delays between
 * them; a record is kept for `retainMs`, longer than that, so every retry finds it. Past
 * `maxRecords` records in the bucket, the least recently used key's records go first (a key
 * written that often within `retainMs` is the hot one: it keeps its records).
 */
import type { CacheMessage } from '@mycorrizal/wire'

/** Records per bucket at most (about 60 bytes each). */
export const MAX_RECORDS = 262_144

interface Kept {
  readonly record: CacheMessage.AtomicRecord
  /** When this node learned it (ms, the engine's clock). */
  at: number
  /** A record with the same seq from another origin (rare: seqs are hybrid-clock times), learned later. */
  other: Kept | undefined
}

/** One key's records, by seq (in the order learned), and how many. */
interface KeyRecords {
  readonly bySeq: Map<number, Kept>
  n: number
  /**
   * At most the time the first record (the oldest learned) was learned: until `oldest + retainMs`
   * none can have expired, so an add skips the sweep.
   */
  oldest: number
}

export class OpLog {
  /** Records by key (least recently used first), each in the order learned. */
  private readonly byKey = new Map<string, KeyRecords>()
  private count = 0

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number,
    private readonly maxRecords = MAX_RECORDS
  ) {}

  find(key: string, origin: string, seq: number): CacheMessage.AtomicRecord | undefined {
    let kept = this.byKey.get(key)?.bySeq.get(seq)
    while (kept !== undefined && kept.record.origin !== origin) kept = kept.other
    return kept?.record
  }

  add(key: string, record: CacheMessage.AtomicRecord): void {
    const now = this.now()
    let records = this.byKey.get(key)
    if (records === undefined) records = { bySeq: new Map(), n: 0, oldest: now }
    else this.byKey.delete(key)
    this.byKey.set(key, records)
    const bySeq = records.bySeq
    // the oldest first: drop what no caller can still retry
    const cutoff = now - this.retainMs
    if (records.oldest <= cutoff) {
      records.oldest = now
      for (const [seq, first] of bySeq) {
        let kept: Kept | undefined = first
        while (kept !== undefined && kept.at <= cutoff) {
          kept = kept.other
          records.n--
          this.count--
        }
        if (kept === undefined) {
          bySeq.delete(seq)
          continue
        }
        // a younger record of the same seq stays in its place
        if (kept !== first) bySeq.set(seq, kept)
        records.oldest = kept.at
        break
      }
    }
    const head = bySeq.get(record.seq)
    let same = head
    while (same !== undefined && same.record.origin !== record.origin) same = same.other
    if (same !== undefined) {
      same.at = now
    } else {
      const kept: Kept = { record, at: now, other: undefined }
      if (head === undefined) bySeq.set(record.seq, kept)
      else {
        let last = head
        while (last.other !== undefined) last = last.other
        last.other = kept
      }
      records.n++
      this.count++
    }
    while (this.count > this.maxRecords) {
      const [first, oldest] = this.byKey.entries().next().value!
      if (first !== key) {
        this.byKey.delete(first)
        this.count -= oldest.n
        continue
      }
      // this key holds every record: its oldest go
      const [seq, kept] = oldest.bySeq.entries().next().value!
      if (kept.other === undefined) oldest.bySeq.delete(seq)
      else oldest.bySeq.set(seq, kept.other)
      oldest.n--
      this.count--
    }
  }

  merge(key: string, records: ReadonlyArray<CacheMessage.AtomicRecord>): void {
    for (const r of records) if (this.find(key, r.origin, r.seq) === undefined) this.add(key, r)
  }

  /** The records of `key` a caller may still retry, oldest first. */
  list(key: string): Array<CacheMessage.AtomicRecord> | undefined {
    const records = this.byKey.get(key)
    if (records === undefined) return undefined
    const from = this.now() - this.retainMs
    const out: Array<CacheMessage.AtomicRecord> = []
    for (const first of records.bySeq.values()) for (let kept: Kept | undefined = first; kept !== undefined; kept = kept.other) if (kept.at > from) out.push(kept.record)
    return out.length === 0 ? undefined : out
  }

  /** Records held. */
  get size(): number {
    return this.count
  }

  clear(): void {
    this.byKey.clear()
    this.count = 0
  }
}
