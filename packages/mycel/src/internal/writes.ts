/**
 * Writes (put and delete) as steps of the engine.
 *
 * A write goes to every owner of its key with one version, applied here when this node owns
 * the key. It succeeds once the owners it waits for stored it: the primary (every owner with
 * writeConcern 'all'; the next owner too when this node is the primary, since this node's copy
 * dies with it).
 *
 * Versions: the writer takes a timestamp after everything it has seen (a hybrid logical clock,
 * integer), above the version it holds when it owns the key. An owner holding a newer version
 * answers AckOlder with it; the write then observes that version and is written again above it.
 * So a write that starts after another write's success gets a larger version than that write
 * whatever the clocks say: the primary acknowledged the earlier write, so it holds that version
 * or a newer one and makes the later write go above it.
 *
 * Once. The first `AckOlder` from an owner waited for shows a version at least as new as every
 * write acknowledged before this one began (they were all stored there: the primary's
 * acknowledgement is awaited by every writer, every owner's with writeConcern 'all', and the
 * primary's own writes go above what it holds), and the rewrite goes above it. An `AckOlder`
 * from the same owner to the rewrite, in the same view of the members and with no keys moving,
 * shows a version that reached that owner since: a write that had not been acknowledged when
 * this one began, and that was under way before this one ended — concurrent with it. This write
 * is then ordered just before that one and completes: on a key that its owners keep writing (a
 * hot key), a rewrite stamped when it leaves would meet a newer write each time it arrives, and
 * fail with Conflict after MAX_REWRITES.
 *
 * When an owner waited for leaves or cannot be sent to, the write is sent again, with the same
 * version, to the owners of the new member set (up to MAX_GONE_ATTEMPTS times).
 */
import { CacheMessage } from '@mycorrizal/wire'
import { MycelError } from '../MycelError.js'
import type { BucketState } from './bucket.js'
import { sentAsUpdate } from './near.js'
import { closedError, type Host as Engine, type NoAnswer, PENDING, type Pending, type Request, type WriteOp } from './host.js'

export type { WriteOp } from './host.js'

/** Sends of a write whose owners went away while it waited. */
export const MAX_GONE_ATTEMPTS = 3
/** Rewrites of a write that lost to newer versions, before it fails with Conflict. */
export const MAX_REWRITES = 8
export const RETRY_DELAY_MS = 50


/** Starts a put (value) or delete (undefined): undefined when done at once, an error, or PENDING. */
export const startWrite = (e: Engine, op: number, name: string, key: string, value: Uint8Array | undefined, ttlMs: number | undefined): undefined | MycelError | Pending => {
  if (e.closed) return closedError()
  const bucket = e.bucket(name)
  if (bucket instanceof MycelError) return bucket
  bucket.writeBegins(key)
  if (value !== undefined) {
    const handoffSize = CacheMessage.handoffBatchOverhead + CacheMessage.handoffEntrySize(key, value.byteLength, e.self)
    const size = Math.max(value.byteLength + CacheMessage.putOverhead(key, e.self), handoffSize)
    if (size > e.options.maxMessageSize) {
      return new MycelError({ reason: 'ValueTooLarge', message: `a value of ${value.byteLength} bytes does not fit in one message (${e.options.maxMessageSize} bytes)` })
    }
  }
  const write: WriteOp = { op, bucket, key, value, ttlMs, version: undefined, generation: 0, goneAttempts: 0, rewrites: 0, waiting: 0, startedAt: e.now, beatenBy: undefined, beatenInView: 0, remote: false, done: false, nearCopy: undefined }
  e.activeWrites.set(write, write)
  const result = issue(e, write)
  if (result !== PENDING) e.activeWrites.delete(write)
  return result
}

/** Sends one generation of the write to the current owners. */
const issue = (e: Engine, w: WriteOp): undefined | MycelError | Pending => {
  const { bucket, key } = w
  const owners = e.placement.owners(bucket.name, key, bucket.config.replicas)
  const bytes = requestBytes(w)
  for (const owner of owners) if (owner !== e.self && e.overBudget(owner, bytes)) return e.overloaded(bucket, owner)
  if (w.version === undefined) {
    // above what this node holds when it owns the key; the clock does the rest
    const held = owners.includes(e.self) ? bucket.store.peek(key) : undefined
    w.version = { ts: e.nextTs(held === undefined ? 0 : held.version.ts + 1), node: e.self }
  }
  const version = w.version
  // a write through this node: its near copy goes now, and nothing older than this write is kept after
  const near = bucket.near
  if (near !== undefined) {
    const until = near.written(key, version)
    if (until !== undefined && w.nearCopy === undefined) w.nearCopy = { until, mark: near.mark() }
  }
  w.generation++
  w.waiting = 0
  for (let i = 0; i < owners.length; i++) {
    const owner = owners[i]!
    if (owner !== e.self) continue
    const stored = w.value === undefined ? bucket.store.delete(key, version) : bucket.store.put(key, w.value, version, w.ttlMs)
    if (!stored) {
      const held = bucket.store.peek(key)
      if (held !== undefined && (held.version.ts !== version.ts || held.version.node !== version.node)) {
        // a newer version arrived here meanwhile (a write sent again after its owners changed)
        return rewrite(e, w, held.version.ts)
      }
    }
  }
  for (let i = 0; i < owners.length; i++) {
    const owner = owners[i]!
    if (owner === e.self) continue
    const needed = bucket.config.writeConcern === 'all' || i === 0 || (i === 1 && owners[0] === e.self)
    const id = e.requests.allocate()
    e.requests.add({ id, peer: owner, deadline: e.now + e.options.requestTimeoutMs, bytes, kind: 'write', write: w, generation: w.generation, needed })
    if (needed) {
      w.waiting++
      w.remote = true
    }
    // every owner acknowledges: its request's bytes count against its budget until then
    const message: CacheMessage.Put | CacheMessage.Delete =
      w.value === undefined
        ? { _tag: 'Delete', id, key, ts: version.ts, node: version.node, ttlMs: 0, ack: true }
        : { _tag: 'Put', id, key, value: w.value, ts: version.ts, node: version.node, ttlMs: w.ttlMs ?? 0, ack: true }
    e.send(bucket.name, owner, message)
  }
  if (w.waiting === 0) {
    w.done = true
    return undefined
  }
  return PENDING
}

const requestBytes = (w: WriteOp) => (w.value?.byteLength ?? 0) + w.key.length * 3 + 64

/** The write lost to a version with timestamp `ts`: written again above it. */
const rewrite = (e: Engine, w: WriteOp, ts: number): undefined | MycelError | Pending => {
  w.rewrites++
  w.bucket.rewrites++
  if (w.rewrites > MAX_REWRITES) {
    return new MycelError({ reason: 'Conflict', message: `'${w.key}' in '${w.bucket.name}' was written ${MAX_REWRITES} times by others while this write was under way` })
  }
  e.observe(ts)
  w.version = { ts: e.nextTs(ts + 1), node: e.self }
  return issue(e, w)
}

/**
 * A put of a small value that dropped this node's near copy puts its own value back, until the
 * dropped copy would have expired: the owner that counted this node among the key's readers
 * still does (it sends updates for such values and keeps its readers), so later writes reach
 * this copy as they would have reached the old one. Not kept when anything newer was seen
 * meanwhile, or the near cache was cleared (the mark).
 */
const keepOwnWrite = (e: Engine, w: WriteOp): void => {
  const copy = w.nearCopy
  const near = w.bucket.near
  if (copy === undefined || near === undefined || !sentAsUpdate(w.value) || w.version === undefined || copy.until <= e.now) return
  near.offer(w.key, new Uint8Array(w.value), w.version, copy.mark, e.now, copy.until)
}

/** A write that a concurrent one overtook on an owner it waited for: ordered before it, done (see above). */
const OVERTAKEN = 'overtaken'

const finish = (e: Engine, w: WriteOp, result: undefined | typeof OVERTAKEN | MycelError | Pending): void => {
  if (result === PENDING) return
  w.done = true
  e.activeWrites.delete(w)
  if (result === undefined || result === OVERTAKEN) {
    if (w.remote) w.bucket.remoteWriteLatency.observe((e.now - w.startedAt) * 1000)
    // an overtaken write's value is older than one an owner holds: no near copy of it
    if (result === undefined) keepOwnWrite(e, w)
    e.done(w.op, undefined)
  } else {
    e.fail(w.op, result)
  }
}

export const onWriteAnswer = (e: Engine, request: Request & { readonly kind: 'write' }, answer: CacheMessage.Ack | CacheMessage.AckOlder | NoAnswer): void => {
  const w = request.write
  if (answer === 'gone' && !request.needed && request.generation === w.generation && !e.closed) {
    // an owner not waited for went away before it stored the write: its new owners get it
    resendToNewOwners(e, w, request.peer)
    return
  }
  if (w.done || request.generation !== w.generation || !request.needed) return
  const { bucket, key } = w
  if (answer === 'timeout') {
    bucket.timeouts++
    return finish(e, w, new MycelError({ reason: 'Timeout', message: `no owner of '${key}' in '${bucket.name}' acknowledged within ${e.options.requestTimeoutMs} ms` }))
  }
  if (answer === 'notFound') return finish(e, w, notFound(bucket, key))
  if (answer === 'gone') {
    w.generation++ // answers to this generation no longer count
    if (e.closed) return finish(e, w, closedError())
    w.goneAttempts++
    if (w.goneAttempts >= MAX_GONE_ATTEMPTS) {
      return finish(
        e,
        w,
        new MycelError({ reason: 'Unavailable', message: `the owners of '${key}' in '${bucket.name}' left or could not be reached before they acknowledged (${w.goneAttempts} attempts)` })
      )
    }
    e.later(e.now + RETRY_DELAY_MS * w.goneAttempts, () => {
      if (!w.done) finish(e, w, issue(e, w))
    })
    return
  }
  if (answer._tag === 'AckOlder') {
    if (!e.validTs(answer.ts)) {
      bucket.refused++
      return finish(e, w, refusedError(bucket, key))
    }
    const settled = !e.rebalancing()
    if (settled && w.beatenBy === request.peer && w.beatenInView === e.viewChanges) return finish(e, w, OVERTAKEN)
    w.beatenBy = settled ? request.peer : undefined
    w.beatenInView = e.viewChanges
    return finish(e, w, rewrite(e, w, answer.ts))
  }
  switch (answer.status) {
    case CacheMessage.AckStatus.Stored:
      w.waiting--
      if (w.waiting === 0) finish(e, w, undefined)
      return
    case CacheMessage.AckStatus.Older:
      // an owner that does not say which version it holds: go above everything seen
      return finish(e, w, rewrite(e, w, 0))
    case CacheMessage.AckStatus.BucketNotFound:
      return finish(e, w, notFound(bucket, key))
    default:
      return finish(e, w, refusedError(bucket, key))
  }
}

/**
 * The write, with its version, to the current owners (no acknowledgement awaited): an owner
 * that left before it stored a write took its copy with it, and a handoff planned before the
 * write arrived does not carry it.
 */
const resendToNewOwners = (e: Engine, w: WriteOp, gone: string): void => {
  const { bucket, key, version } = w
  if (version === undefined) return
  for (const owner of e.placement.owners(bucket.name, key, bucket.config.replicas)) {
    if (owner === gone) continue
    if (owner === e.self) {
      if (w.value === undefined) bucket.store.delete(key, version)
      else bucket.store.put(key, w.value, version, w.ttlMs)
      continue
    }
    if (e.overBudget(owner, requestBytes(w))) continue
    e.send(
      bucket.name,
      owner,
      w.value === undefined
        ? { _tag: 'Delete', id: 0, key, ts: version.ts, node: version.node, ttlMs: 0, ack: false }
        : { _tag: 'Put', id: 0, key, value: w.value, ts: version.ts, node: version.node, ttlMs: w.ttlMs ?? 0, ack: false }
    )
  }
}

const notFound = (bucket: BucketState, key: string) => new MycelError({ reason: 'BucketNotFound', message: `an owner of '${key}' has no bucket '${bucket.name}'` })
const refusedError = (bucket: BucketState, key: string) =>
  new MycelError({ reason: 'Refused', message: `an owner of '${key}' in '${bucket.name}' refused the write's version (clocks too far apart)` })
