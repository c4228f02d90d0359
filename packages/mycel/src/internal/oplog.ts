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
  readonly at: number
}

const id = (origin: string, seq: number) => `${origin}\u0000${seq}`

export class OpLog {
  /** Records by key (least recently used first), each in the order learned. */
  private readonly byKey = new Map<string, Map<string, Kept>>()
  private count = 0

  constructor(
    private readonly retainMs: number,
    private readonly now: () => number,
    private readonly maxRecords = MAX_RECORDS
  ) {}

  find(key: string, origin: string, seq: number): CacheMessage.AtomicRecord | undefined {
    return this.byKey.get(key)?.get(id(origin, seq))?.record
  }

  add(key: string, record: CacheMessage.AtomicRecord): void {
    const now = this.now()
    let records = this.byKey.get(key)
    if (records === undefined) records = new Map()
    else this.byKey.delete(key)
    this.byKey.set(key, records)
    // the oldest first: drop what no caller can still retry
    for (const [k, kept] of records) {
      if (kept.at > now - this.retainMs) break
      records.delete(k)
      this.count--
    }
    const rid = id(record.origin, record.seq)
    if (!records.has(rid)) this.count++
    records.set(rid, { record, at: now })
    while (this.count > this.maxRecords) {
      const [first, oldest] = this.byKey.entries().next().value!
      if (first !== key) {
        this.byKey.delete(first)
        this.count -= oldest.size
        continue
      }
      // this key holds every record: its oldest go
      oldest.delete(oldest.keys().next().value!)
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
    for (const kept of records.values()) if (kept.at > from) out.push(kept.record)
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
