/**
 * Messages of the cache (`SYSTEM-MYCEL`), one bucket per stream (`bucket:<name>`), so no
 * message carries its bucket's name.
 *
 * | type | message | fields |
 * | ---- | ------- | ------ |
 * | 0x01 | Put | id u32, key, value bytes, ts f64, node, ttlMs u32 (0: the bucket's), ack bool |
 * | 0x02 | Delete | id u32, key, ts f64, node, ttlMs u32 (tombstone lifetime; 0: the bucket's), ack bool |
 * | 0x03 | Ack | id u32, status u8 (0 stored, 1 older than what is stored, 2 bucket not found, 3 version refused) |
 * | 0x04 | Get | id u32, key |
 * | 0x05 | GetResponse | id u32, status u8 (0 hit, 1 miss, 2 bucket not found), value bytes, ts f64, node |
 * | 0x06 | Handoff | entries: key, tombstone bool, value bytes, ts f64, node, ttlLeftMs u32 |
 * | 0x07 | HandoffDone | epoch u32 |
 * | 0x08 | BucketInfo | ttlMs f64, maxSize u32, replicas u8 |
 * | 0x09 | HandoffBatch | id u32, entries as in Handoff; answered by an Ack once stored |
 * | 0x0a | AckOlder | id u32, ts f64, node: the write lost to this newer version held by the owner |
 * | 0x0b | SyncDigest | sums: u32 per key range (anti-entropy: the keys both nodes own, by range of their hash) |
 * | 0x0c | SyncVersions | reply bool, ranges: u16 each, entries: key, ts f64, node (every key of those ranges the sender holds) |
 * | 0x0d | Atomic | id u32, op u8 (0 putIfAbsent, 1 compareAndSet, 2 increment), key, origin, seq f64, hasExpected bool, expected bytes, value bytes, delta f64, ttlMs u32 (0: none given) |
 * | 0x0e | AtomicResponse | id u32, status u8 (AtomicStatus), result f64 (the new count; 1 or 0 for true or false) |
 * | 0x0f | AtomicOps (version 2) | key, ops: origin, seq f64, result f64 (atomic operations applied to the key, with their results), final bool (the receiver's Stored Ack of the Put that follows completes them: it answers its own operations among them itself) |
 * | 0x10 | AtomicFetch | id u32, key: answered by AtomicOps (when the owner remembers operations) then a GetResponse with the id |
 * | 0x11 | NearGet | id u32, key, ttlMs u32: a Get from a node that keeps the value in its near cache for at most ttlMs; answered by a GetResponse |
 * | 0x12 | NearInvalidate | key, ts f64, node: the key was written at this version; a near copy older than it is dropped (ts 0: version unknown, dropped anyway) |
 * | 0x13 | Batch | messages: array of byte strings, each one cache message other than a Batch (an envelope: `encodeBatch`, `decodeEach`) |
 * | 0x14 | NearUpdate | key, value bytes, ts f64, node: the key was written at this version with this value; a near copy older than it takes the value (a reader without a copy keeps nothing) |
 *
 * A `Batch` carries the messages one node has for one peer on one bucket's stream in one turn of
 * its event loop, in the order they were written; the receiver handles them in that order, as if
 * they had come one by one. It is an envelope, not a message of its own: it is never nested, and
 * `decode` refuses it (`decodeEach` opens it).
 *
 * Versions are (ts, node): last write wins, ties broken by node id. Request ids correlate
 * answers; every Get gets a GetResponse (a miss too). A write that is older than what an owner
 * holds is answered with AckOlder, carrying the newer version, so the writer can write again
 * above it; a version an owner refuses (not a finite integer, or too far ahead of its clock)
 * is answered with Ack status 3.
 *
 * Atomic operations run at the key's primary: another node sends it an `Atomic` with an
 * operation id (origin node, seq) and gets an `AtomicResponse`. The primary replicates the new
 * value as a `Put` preceded, on the same stream, by an `AtomicOps` carrying the operation's id
 * and result, so the next primary answers a retry of it with that result instead of applying it
 * again. `AtomicOps` also goes ahead of the handoff batches that move such a key.
 *
 * @since 0.1.0
 */
import * as SystemMessage from './SystemMessage.js'
import { WireError } from './WireError.js'

export interface Put {
  readonly _tag: 'Put'
  readonly id: number
  readonly key: string
  readonly value: Uint8Array
  readonly ts: number
  readonly node: string
  readonly ttlMs: number
  readonly ack: boolean
}

export interface Delete {
  readonly _tag: 'Delete'
  readonly id: number
  readonly key: string
  readonly ts: number
  readonly node: string
  readonly ttlMs: number
  readonly ack: boolean
}

/** Outcome of a write on a replica. */
export const AckStatus = { Stored: 0, Older: 1, BucketNotFound: 2, Refused: 3 } as const
export type AckStatus = (typeof AckStatus)[keyof typeof AckStatus]

export interface Ack {
  readonly _tag: 'Ack'
  readonly id: number
  readonly status: AckStatus
}

export interface Get {
  readonly _tag: 'Get'
  readonly id: number
  readonly key: string
}

/** Outcome of a read. */
export const GetStatus = { Hit: 0, Miss: 1, BucketNotFound: 2 } as const
export type GetStatus = (typeof GetStatus)[keyof typeof GetStatus]

export interface GetResponse {
  readonly _tag: 'GetResponse'
  readonly id: number
  readonly status: GetStatus
  readonly value: Uint8Array
  readonly ts: number
  readonly node: string
}

export interface HandoffEntry {
  readonly key: string
  readonly tombstone: boolean
  readonly value: Uint8Array
  readonly ts: number
  readonly node: string
  /** Time to live left, relative: the nodes' clocks need not agree. */
  readonly ttlLeftMs: number
}

export interface Handoff {
  readonly _tag: 'Handoff'
  readonly entries: ReadonlyArray<HandoffEntry>
}

/** Entries handed to a new owner, which answers `Ack` with the same id once it stored them. */
export interface HandoffBatch {
  readonly _tag: 'HandoffBatch'
  readonly id: number
  readonly entries: ReadonlyArray<HandoffEntry>
}

/** A write lost to a newer version the owner holds. */
export interface AckOlder {
  readonly _tag: 'AckOlder'
  readonly id: number
  readonly ts: number
  readonly node: string
}

/**
 * Anti-entropy between two owners: per key range, a sum of hashes of (key, version) over the
 * keys of the bucket that both nodes own (in the sender's view), tombstones included.
 */
export interface SyncDigest {
  readonly _tag: 'SyncDigest'
  readonly sums: ReadonlyArray<number>
}

export interface SyncVersion {
  readonly key: string
  readonly ts: number
  readonly node: string
}

/**
 * The versions the sender holds of every key in `ranges` that both nodes own: the receiver
 * hands it what it holds newer or what is missing here; with `reply`, it answers with its own
 * versions of those ranges when it holds something older or lacks a key.
 */
export interface SyncVersions {
  readonly _tag: 'SyncVersions'
  readonly reply: boolean
  readonly ranges: ReadonlyArray<number>
  readonly entries: ReadonlyArray<SyncVersion>
}

export interface HandoffDone {
  readonly _tag: 'HandoffDone'
  readonly epoch: number
}

export interface BucketInfo {
  readonly _tag: 'BucketInfo'
  readonly ttlMs: number
  readonly maxSize: number
  readonly replicas: number
}

/** Which atomic operation an `Atomic` asks for. */
export const AtomicOp = { PutIfAbsent: 0, CompareAndSet: 1, Increment: 2 } as const
export type AtomicOp = (typeof AtomicOp)[keyof typeof AtomicOp]

/**
 * An atomic operation asked of the key's primary. `origin` and `seq` identify it across retries;
 * `hasExpected` false means "expected absent" (compareAndSet); `value` is the value to store
 * (putIfAbsent, compareAndSet), `delta` the increment.
 */
export interface Atomic {
  readonly _tag: 'Atomic'
  readonly id: number
  readonly op: AtomicOp
  readonly key: string
  readonly origin: string
  readonly seq: number
  readonly hasExpected: boolean
  readonly expected: Uint8Array
  readonly value: Uint8Array
  readonly delta: number
  readonly ttlMs: number
}

/** Outcome of an atomic operation at the primary. */
export const AtomicStatus = {
  Applied: 0,
  NotApplied: 1,
  NotInteger: 2,
  Overflow: 3,
  NotPrimary: 4,
  BucketNotFound: 5,
  Unavailable: 6,
  Timeout: 7,
  Conflict: 8,
  Overloaded: 9,
  Closed: 10
} as const
export type AtomicStatus = (typeof AtomicStatus)[keyof typeof AtomicStatus]

export interface AtomicResponse {
  readonly _tag: 'AtomicResponse'
  readonly id: number
  readonly status: AtomicStatus
  /** increment: the new count; putIfAbsent and compareAndSet: 1 (stored) or 0. */
  readonly result: number
}

/** An atomic operation applied at a primary: its id and result. */
export interface AtomicRecord {
  readonly origin: string
  readonly seq: number
  readonly result: number
}

/** Atomic operations applied to a key, sent ahead of the message that carries its value. */
export interface AtomicOps {
  readonly _tag: 'AtomicOps'
  readonly key: string
  readonly ops: ReadonlyArray<AtomicRecord>
  /**
   * Set by a primary on the replication whose `Put` (next on the stream) is the last one it
   * waits for: once the receiver stores that Put (and acknowledges it Stored), these operations
   * are replicated, so the receiver answers its own operations among them at once and the
   * primary sends no `AtomicResponse` for them. Absent: false.
   */
  readonly final?: boolean
}

/** A primary asks an owner for its copy of a key (and the operations it remembers) before applying an atomic operation. */
export interface AtomicFetch {
  readonly _tag: 'AtomicFetch'
  readonly id: number
  readonly key: string
}

/**
 * A get from a node with a near cache: the owner answers with a `GetResponse` as for `Get`, and
 * on a hit remembers the reader for `ttlMs` (the reader's near TTL), to send it a
 * `NearInvalidate` when the key is written.
 */
export interface NearGet {
  readonly _tag: 'NearGet'
  readonly id: number
  readonly key: string
  readonly ttlMs: number
}

/** The key was written at (ts, node) on an owner: a near copy older than that is dropped. ts 0: the version is not known. */
export interface NearInvalidate {
  readonly _tag: 'NearInvalidate'
  readonly key: string
  readonly ts: number
  readonly node: string
}

/**
 * The key was written at (ts, node) on an owner with `value`: a reader holding an older near copy
 * replaces it with this value (its expiry unchanged) instead of dropping it and reading again.
 * Sent instead of a `NearInvalidate` for small values.
 */
export interface NearUpdate {
  readonly _tag: 'NearUpdate'
  readonly key: string
  readonly value: Uint8Array
  readonly ts: number
  readonly node: string
}

export type CacheMessage =
  | Put
  | Delete
  | Ack
  | Get
  | GetResponse
  | Handoff
  | HandoffDone
  | BucketInfo
  | HandoffBatch
  | AckOlder
  | SyncDigest
  | SyncVersions
  | Atomic
  | AtomicResponse
  | AtomicOps
  | AtomicFetch
  | NearGet
  | NearInvalidate
  | NearUpdate

const status = <S extends number>(r: SystemMessage.Reader, max: number, what: string): S => {
  const s = r.u8()
  if (s > max) throw new WireError({ reason: 'InvalidField', message: `${what} status ${s} is unknown` })
  return s as S
}

const writeEntry = (w: SystemMessage.Writer, e: HandoffEntry) => {
  w.string(e.key).bool(e.tombstone).bytes(e.value).f64(e.ts).string(e.node).u32(e.ttlLeftMs)
}
const readEntry = (r: SystemMessage.Reader): HandoffEntry => ({
  key: r.string(),
  tombstone: r.bool(),
  value: r.bytesCopy(),
  ts: r.f64(),
  node: r.string(),
  ttlLeftMs: r.u32()
})

const set = SystemMessage.messageSet<CacheMessage>('cache', [
  SystemMessage.define<Put>({
    tag: 'Put',
    type: 0x01,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).string(m.key).bytes(m.value).f64(m.ts).string(m.node).u32(m.ttlMs).bool(m.ack)
    },
    read: (r) => ({ _tag: 'Put', id: r.u32(), key: r.string(), value: r.bytesCopy(), ts: r.f64(), node: r.string(), ttlMs: r.u32(), ack: r.bool() })
  }),
  SystemMessage.define<Delete>({
    tag: 'Delete',
    type: 0x02,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).string(m.key).f64(m.ts).string(m.node).u32(m.ttlMs).bool(m.ack)
    },
    read: (r) => ({ _tag: 'Delete', id: r.u32(), key: r.string(), ts: r.f64(), node: r.string(), ttlMs: r.u32(), ack: r.bool() })
  }),
  SystemMessage.define<Ack>({
    tag: 'Ack',
    type: 0x03,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).u8(m.status)
    },
    read: (r) => ({ _tag: 'Ack', id: r.u32(), status: status<AckStatus>(r, 3, 'ack') })
  }),
  SystemMessage.define<Get>({
    tag: 'Get',
    type: 0x04,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).string(m.key)
    },
    read: (r) => ({ _tag: 'Get', id: r.u32(), key: r.string() })
  }),
  SystemMessage.define<GetResponse>({
    tag: 'GetResponse',
    type: 0x05,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).u8(m.status).bytes(m.value).f64(m.ts).string(m.node)
    },
    read: (r) => ({ _tag: 'GetResponse', id: r.u32(), status: status<GetStatus>(r, 2, 'get'), value: r.bytesCopy(), ts: r.f64(), node: r.string() })
  }),
  SystemMessage.define<Handoff>({
    tag: 'Handoff',
    type: 0x06,
    version: 1,
    write: (w, m) => {
      w.array(m.entries, (w2, e) => {
        w2.string(e.key).bool(e.tombstone).bytes(e.value).f64(e.ts).string(e.node).u32(e.ttlLeftMs)
      })
    },
    read: (r) => ({
      _tag: 'Handoff',
      entries: r.array(
        (r2) => ({ key: r2.string(), tombstone: r2.bool(), value: r2.bytesCopy(), ts: r2.f64(), node: r2.string(), ttlLeftMs: r2.u32() }),
        23
      )
    })
  }),
  SystemMessage.define<HandoffDone>({
    tag: 'HandoffDone',
    type: 0x07,
    version: 1,
    write: (w, m) => {
      w.u32(m.epoch)
    },
    read: (r) => ({ _tag: 'HandoffDone', epoch: r.u32() })
  }),
  SystemMessage.define<BucketInfo>({
    tag: 'BucketInfo',
    type: 0x08,
    version: 1,
    write: (w, m) => {
      w.f64(m.ttlMs).u32(m.maxSize).u8(m.replicas)
    },
    read: (r) => ({ _tag: 'BucketInfo', ttlMs: r.f64(), maxSize: r.u32(), replicas: r.u8() })
  }),
  SystemMessage.define<HandoffBatch>({
    tag: 'HandoffBatch',
    type: 0x09,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).array(m.entries, writeEntry)
    },
    read: (r) => ({ _tag: 'HandoffBatch', id: r.u32(), entries: r.array(readEntry, 23) })
  }),
  SystemMessage.define<AckOlder>({
    tag: 'AckOlder',
    type: 0x0a,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).f64(m.ts).string(m.node)
    },
    read: (r) => ({ _tag: 'AckOlder', id: r.u32(), ts: r.f64(), node: r.string() })
  }),
  SystemMessage.define<SyncDigest>({
    tag: 'SyncDigest',
    type: 0x0b,
    version: 1,
    write: (w, m) => {
      w.array(m.sums, (w2, s) => {
        w2.u32(s)
      })
    },
    read: (r) => ({ _tag: 'SyncDigest', sums: r.array((r2) => r2.u32(), 4) })
  }),
  SystemMessage.define<SyncVersions>({
    tag: 'SyncVersions',
    type: 0x0c,
    version: 1,
    write: (w, m) => {
      w.bool(m.reply)
        .array(m.ranges, (w2, x) => {
          w2.u16(x)
        })
        .array(m.entries, (w2, e) => {
          w2.string(e.key).f64(e.ts).string(e.node)
        })
    },
    read: (r) => ({
      _tag: 'SyncVersions',
      reply: r.bool(),
      ranges: r.array((r2) => r2.u16(), 2),
      entries: r.array((r2) => ({ key: r2.string(), ts: r2.f64(), node: r2.string() }), 12)
    })
  }),
  SystemMessage.define<Atomic>({
    tag: 'Atomic',
    type: 0x0d,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).u8(m.op).string(m.key).string(m.origin).f64(m.seq).bool(m.hasExpected).bytes(m.expected).bytes(m.value).f64(m.delta).u32(m.ttlMs)
    },
    read: (r) => ({
      _tag: 'Atomic',
      id: r.u32(),
      op: status<AtomicOp>(r, 2, 'atomic operation'),
      key: r.string(),
      origin: r.string(),
      seq: r.f64(),
      hasExpected: r.bool(),
      expected: r.bytesCopy(),
      value: r.bytesCopy(),
      delta: r.f64(),
      ttlMs: r.u32()
    })
  }),
  SystemMessage.define<AtomicResponse>({
    tag: 'AtomicResponse',
    type: 0x0e,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).u8(m.status).f64(m.result)
    },
    read: (r) => ({ _tag: 'AtomicResponse', id: r.u32(), status: status<AtomicStatus>(r, 10, 'atomic'), result: r.f64() })
  }),
  SystemMessage.define<AtomicOps>({
    tag: 'AtomicOps',
    type: 0x0f,
    version: 2,
    write: (w, m) => {
      w.string(m.key)
        .array(m.ops, (w2, o) => {
          w2.string(o.origin).f64(o.seq).f64(o.result)
        })
        .bool(m.final === true)
    },
    read: (r) => ({ _tag: 'AtomicOps', key: r.string(), ops: r.array((r2) => ({ origin: r2.string(), seq: r2.f64(), result: r2.f64() }), 18), final: r.bool() })
  }),
  SystemMessage.define<AtomicFetch>({
    tag: 'AtomicFetch',
    type: 0x10,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).string(m.key)
    },
    read: (r) => ({ _tag: 'AtomicFetch', id: r.u32(), key: r.string() })
  }),
  SystemMessage.define<NearGet>({
    tag: 'NearGet',
    type: 0x11,
    version: 1,
    write: (w, m) => {
      w.u32(m.id).string(m.key).u32(m.ttlMs)
    },
    read: (r) => ({ _tag: 'NearGet', id: r.u32(), key: r.string(), ttlMs: r.u32() })
  }),
  SystemMessage.define<NearInvalidate>({
    tag: 'NearInvalidate',
    type: 0x12,
    version: 1,
    write: (w, m) => {
      w.string(m.key).f64(m.ts).string(m.node)
    },
    read: (r) => ({ _tag: 'NearInvalidate', key: r.string(), ts: r.f64(), node: r.string() })
  }),
  SystemMessage.define<NearUpdate>({
    tag: 'NearUpdate',
    type: 0x14,
    version: 1,
    write: (w, m) => {
      w.string(m.key).bytes(m.value).f64(m.ts).string(m.node)
    },
    read: (r) => ({ _tag: 'NearUpdate', key: r.string(), value: r.bytesCopy(), ts: r.f64(), node: r.string() })
  })
])

/** Encodes a cache message. */
export const encode = set.encode
/** Appends a cache message to `w`. */
export const encodeTo = set.encodeTo
/** Decodes a cache message; throws `WireError`. */
export const decode = set.decode
/** `decode` at the Effect edge. */
export const decodeEffect = set.decodeEffect
/** Bytes a Put of this key and value takes besides the value: to refuse values over the message size before sending. */
export const putOverhead = (key: string, node: string): number => 2 + 4 + 2 + Buffer.byteLength(key) + 4 + 8 + 2 + Buffer.byteLength(node) + 4 + 1
/** Bytes a HandoffBatch takes besides its entries. */
export const handoffBatchOverhead = 2 + 4 + 4
/** Bytes a SyncVersions takes besides its ranges (2 bytes each) and entries. */
export const syncVersionsOverhead = 2 + 1 + 4 + 4
/** Bytes one entry of a SyncVersions takes. */
export const syncVersionSize = (key: string, node: string): number => 2 + Buffer.byteLength(key) + 8 + 2 + Buffer.byteLength(node)
/** Bytes an Atomic takes besides its expected value and value. */
export const atomicOverhead = (key: string, origin: string): number => 2 + 4 + 1 + 2 + Buffer.byteLength(key) + 2 + Buffer.byteLength(origin) + 8 + 1 + 4 + 4 + 8 + 4
/** Bytes one record of an AtomicOps takes. */
export const atomicRecordSize = (origin: string): number => 2 + Buffer.byteLength(origin) + 8 + 8
/** Bytes one handoff entry takes in a batch. */
export const handoffEntrySize = (key: string, valueBytes: number, node: string): number =>
  2 + Buffer.byteLength(key) + 1 + 4 + valueBytes + 8 + 2 + Buffer.byteLength(node) + 4

/** The type byte of the `Batch` envelope. */
export const BATCH_TYPE = 0x13
const BATCH_VERSION = 1
/** Bytes a Batch takes besides its messages: type, version, count. */
export const batchOverhead = 2 + 4
/** Bytes each message adds to a Batch besides its own: its length. */
export const batchEntryOverhead = 4

/**
 * Encodes `messages[from]` and as many after it as fit in `maxBytes` into `w` (which it expects
 * empty): one message alone as itself, several as a `Batch`. Returns the index of the first
 * message not written. A message that cannot be encoded (a field out of range) is left out and
 * passed to `failed`; when nothing could be encoded `w` stays empty. The first message is written
 * even when it alone is larger than `maxBytes` (the stream refuses it with a clear error).
 */
export const encodeBatch = (
  w: SystemMessage.Writer,
  messages: ReadonlyArray<CacheMessage | undefined>,
  from: number,
  maxBytes: number,
  failed: (index: number, error: unknown) => void
): number => {
  const start = w.length
  w.u8(BATCH_TYPE).u8(BATCH_VERSION).u32(0)
  let count = 0
  let only = -1
  let i = from
  for (; i < messages.length; i++) {
    const message = messages[i]
    if (message === undefined) continue
    const at = w.length
    try {
      w.u32(0)
      encodeTo(w, message)
    } catch (e) {
      w.truncate(at)
      failed(i, e)
      continue
    }
    if (count > 0 && w.length - start > maxBytes) {
      w.truncate(at)
      break
    }
    w.setU32(at, w.length - at - batchEntryOverhead)
    if (count === 0) only = i
    count++
  }
  if (count === 0) {
    w.truncate(start)
  } else if (count === 1) {
    // one message alone goes as itself, without the envelope
    w.truncate(start)
    encodeTo(w, messages[only]!)
  } else {
    w.setU32(start + 2, count)
  }
  return i
}

/** One message to `each`, or its fault to `malformed` (what `each` throws is not a fault of the bytes). */
const decodeOne = (bytes: Uint8Array, start: number, end: number, each: (message: CacheMessage) => void, malformed: (error: WireError) => void): void => {
  let message: CacheMessage
  try {
    message = set.decodeRange(bytes, start, end)
  } catch (e) {
    malformed(e as WireError)
    return
  }
  each(message)
}

/**
 * Decodes a payload of a bucket's stream — one message, or a `Batch` of them — and hands each
 * message to `each` in order. A malformed message is passed to `malformed` and the others are
 * still handed over; a malformed envelope (a version or count that does not fit, trailing bytes,
 * a Batch inside a Batch) is passed to `malformed` once, after the messages before the fault.
 */
export const decodeEach = (bytes: Uint8Array, each: (message: CacheMessage) => void, malformed: (error: WireError) => void): void => {
  if (bytes.length === 0 || bytes[0] !== BATCH_TYPE) return decodeOne(bytes, 0, bytes.length, each, malformed)
  const r = new SystemMessage.Reader(bytes)
  let n: number
  try {
    r.u8()
    const version = r.u8()
    if (version !== BATCH_VERSION) throw new WireError({ reason: 'UnsupportedVersion', message: `cache: Batch version ${version} is not ${BATCH_VERSION}` })
    n = r.u32()
    if (n * (batchEntryOverhead + 2) > r.remaining) throw new WireError({ reason: 'UnexpectedEof', message: `cache: a Batch of ${n} messages in ${r.remaining} bytes` })
  } catch (e) {
    malformed(e as WireError)
    return
  }
  for (let i = 0; i < n; i++) {
    let start: number
    try {
      start = r.skipBytesField()
      if (start < r.offset && bytes[start] === BATCH_TYPE) throw new WireError({ reason: 'InvalidField', message: 'cache: a Batch inside a Batch' })
    } catch (e) {
      malformed(e as WireError)
      return
    }
    decodeOne(bytes, start, r.offset, each, malformed)
  }
  if (r.remaining !== 0) malformed(new WireError({ reason: 'TrailingBytes', message: `cache: ${r.remaining} bytes left after a Batch` }))
}
