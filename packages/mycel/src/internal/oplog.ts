/**
 * The records of atomic operations applied to a bucket's keys: per key, the ids (origin node,
 * seq) and results of the last MAX_RECORDS_PER_KEY operations, so a primary answers a retried
 * operation with its result instead of applying it again. The primary sends each record with
 * the value it replicates (and with handoff), so the next primary of the key has it too.
 *
 * Bounded: at most MAX_RECORDS_PER_KEY records per key, the oldest dropped first, and at most
 * `maxKeys` keys per bucket, the least recently used dropped first. A retry is recognised while
 * its record is kept: retries come within a few request timeouts of the first attempt.
 */
import type { CacheMessage } from '@mycorrizal/wire'

/** Records kept per key at most. */
export const MAX_RECORDS_PER_KEY = 256
/** Keys with records per bucket at most (and at most the bucket's maxSize). */
export const MAX_RECORD_KEYS = 100_000

const id = (origin: string, seq: number) => `${origin}\u0000${seq}`

export class OpLog {
  /** Records by key (least recently used first), each in the order applied. */
  private readonly byKey = new Map<string, Map<string, CacheMessage.AtomicRecord>>()

  constructor(private readonly maxKeys: number) {}

  find(key: string, origin: string, seq: number): CacheMessage.AtomicRecord | undefined {
    return this.byKey.get(key)?.get(id(origin, seq))
  }

  add(key: string, record: CacheMessage.AtomicRecord): void {
    let records = this.byKey.get(key)
    if (records === undefined) {
      records = new Map()
      if (this.byKey.size >= this.maxKeys) {
        for (const first of this.byKey.keys()) {
          this.byKey.delete(first)
          break
        }
      }
    } else {
      this.byKey.delete(key)
    }
    this.byKey.set(key, records)
    records.set(id(record.origin, record.seq), record)
    if (records.size > MAX_RECORDS_PER_KEY) {
      for (const first of records.keys()) {
        records.delete(first)
        break
      }
    }
  }

  merge(key: string, records: ReadonlyArray<CacheMessage.AtomicRecord>): void {
    for (const r of records) if (this.find(key, r.origin, r.seq) === undefined) this.add(key, r)
  }

  /** The records of `key`, oldest first. */
  list(key: string): Array<CacheMessage.AtomicRecord> | undefined {
    const records = this.byKey.get(key)
    return records === undefined ? undefined : [...records.values()]
  }

  get keys(): number {
    return this.byKey.size
  }

  clear(): void {
    this.byKey.clear()
  }
}
