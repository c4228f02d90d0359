/**
 * The rules of locks with fencing tokens, as functions over plain data (no Effect, no I/O): the
 * record a lock name holds in the cache and its encoding, the next record for an acquire, an
 * extend and a release, lease arithmetic, retry backoff. The shell (`lockCore.ts`) reads a
 * record, asks these functions for the next one and writes it with `compareAndSet` on the exact
 * bytes it read, so every transition is one atomic step at the key's primary.
 *
 * Record layout (17 bytes + the holder's id):
 *   byte 0      format (high nibble, 1) | flags (bit 0: released)
 *   bytes 1-8   token, unsigned 64-bit big-endian
 *   bytes 9-16  leaseUntil, the holder's wall-clock ms when its lease ends (float64, an integer)
 *   bytes 17-   the holder's node id, UTF-8
 */

/** What a lock name holds. Records are never deleted: a release keeps the token for the next holder. */
export interface LockRecord {
  /** Node id of the holder (of the last holder, once released). */
  readonly holder: string
  /** Fencing token of the hold: 1 for the first, +1 for each acquire after it. */
  readonly token: bigint
  /** Wall-clock ms (the holder's clock) at which the lease ends. */
  readonly leaseUntil: number
  readonly released: boolean
}

const FORMAT = 0x10
const RELEASED = 0x01
const HEADER = 17
/** Largest token (unsigned 64-bit). */
export const MAX_TOKEN = 0xffff_ffff_ffff_ffffn
/** Longest lock or election name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 200
/** Shortest and longest lease, in ms. */
export const MIN_TTL_MS = 10
export const MAX_TTL_MS = 24 * 60 * 60 * 1000

const encoder = new TextEncoder()
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const decoder = new TextDecoder('utf-8', { fatal: true })

/** The holder id encoded last: a node writes records with its own id, so it encodes it once. */
let lastHolder = ''
let lastHolderBytes = new Uint8Array(0)

export const encodeRecord = (record: LockRecord): Uint8Array => {
  if (record.holder !== lastHolder) {
    lastHolderBytes = encoder.encode(record.holder)
    lastHolder = record.holder
  }
  const holder = lastHolderBytes
  const out = new Uint8Array(HEADER + holder.byteLength)
  const view = new DataView(out.buffer)
  out[0] = FORMAT | (record.released ? RELEASED : 0)
  view.setBigUint64(1, record.token)
  view.setFloat64(9, record.leaseUntil)
  out.set(holder, HEADER)
  return out
}

/** The record in `bytes`, or undefined when they are not one (another format, truncated). */
export const decodeRecord = (bytes: Uint8Array): LockRecord | undefined => {
  if (bytes.byteLength < HEADER || (bytes[0]! & 0xf0) !== FORMAT) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const leaseUntil = view.getFloat64(9)
  if (!Number.isFinite(leaseUntil)) return undefined
  let holder: string
  try {
    holder = decoder.decode(bytes.subarray(HEADER))
  } catch {
    return undefined
  }
  return { holder, token: view.getBigUint64(1), leaseUntil, released: (bytes[0]! & RELEASED) !== 0 }
}

/** Why a name is not a valid lock name, if it is not. */
export const invalidName = (name: string): string | undefined => {
  if (typeof name !== 'string' || name.length === 0) return 'a lock name is not empty'
  if (LONE_SURROGATE.test(name)) return 'a lock name is well-formed Unicode'
  // a UTF-16 unit is at most 3 bytes of UTF-8: only a long name is encoded to be measured
  if (name.length * 3 > MAX_NAME_BYTES && encoder.encode(name).byteLength > MAX_NAME_BYTES) return `a lock name is at most ${MAX_NAME_BYTES} bytes of UTF-8`
  return undefined
}

/** Why a lease length is not valid, if it is not. */
export const invalidTtl = (ttlMs: number): string | undefined =>
  Number.isInteger(ttlMs) && ttlMs >= MIN_TTL_MS && ttlMs <= MAX_TTL_MS ? undefined : `a lease (ttlMs) is an integer from ${MIN_TTL_MS} ms to 24 hours, got ${ttlMs}`

/**
 * Whether another node may take the lock at wall-clock `now` (this node's clock): the name has
 * no record, it was released, or its lease ended more than `maxClockSkewMs` ago by this clock.
 * The skew allowance makes the rule safe while no two clocks differ by more than it.
 */
export const isFree = (record: LockRecord | undefined, now: number, maxClockSkewMs: number): boolean =>
  record === undefined || record.released || now > record.leaseUntil + maxClockSkewMs

/** The holder at wall-clock `now`, or undefined when the lock is free. */
export const holderAt = (record: LockRecord | undefined, now: number, maxClockSkewMs: number): string | undefined =>
  record === undefined || isFree(record, now, maxClockSkewMs) ? undefined : record.holder

/** When (this node's wall clock) a held record becomes free unless its holder extends it. */
export const freeAt = (record: LockRecord, maxClockSkewMs: number): number => (record.released ? -Infinity : record.leaseUntil + maxClockSkewMs + 1)

/**
 * The record that makes `self` the holder, or undefined when the lock is held (by anyone, this
 * node included: locks are not re-entrant). The token is one above the last one granted.
 */
export const acquireNext = (current: LockRecord | undefined, self: string, now: number, ttlMs: number, maxClockSkewMs: number): LockRecord | undefined => {
  if (!isFree(current, now, maxClockSkewMs)) return undefined
  const token = current === undefined ? 1n : current.token + 1n
  if (token > MAX_TOKEN) return undefined
  return { holder: self, token, leaseUntil: now + ttlMs, released: false }
}

/** The record that extends `held` (the exact record this holder wrote) to `now + ttlMs`; same token. */
export const extendNext = (held: LockRecord, now: number, ttlMs: number): LockRecord => ({ ...held, leaseUntil: Math.max(held.leaseUntil, now + ttlMs) })

/** The record that releases `held`: the token stays for the next holder. */
export const releaseNext = (held: LockRecord): LockRecord => ({ ...held, released: true })

/**
 * Lease on the holder's own monotonic clock: it starts when the holder SENT the operation (taken
 * before the wall-clock time written in the record), so the holder believes it holds for no
 * longer than others wait.
 */
export const leaseDeadline = (sentAtMonotonicMs: number, ttlMs: number): number => sentAtMonotonicMs + ttlMs

/** Wait before retry `attempt` (0-based): exponential from `baseMs` to `maxMs`, with jitter in [½, 1] from `random` ∈ [0, 1). */
export const backoffMs = (attempt: number, random: number, baseMs = 5, maxMs = 250): number => {
  const full = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20))
  return Math.max(1, Math.round(full / 2 + (full / 2) * random))
}

/**
 * How long a waiting acquire sleeps before its next attempt: the backoff, shortened to the
 * moment the seen record becomes free (when that is sooner) and to the time left to wait.
 */
export const retryDelayMs = (attempt: number, random: number, seen: LockRecord | undefined, wallNow: number, maxClockSkewMs: number, leftMs: number): number => {
  let delay = backoffMs(attempt, random)
  if (seen !== undefined) {
    const untilFree = freeAt(seen, maxClockSkewMs) - wallNow
    if (untilFree > 0 && untilFree < delay) delay = Math.ceil(untilFree)
  }
  return Math.max(0, Math.min(delay, leftMs))
}

/** Whether two encoded records are the same bytes. */
export const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean => {
  if (a === undefined || b === undefined) return a === b
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}
