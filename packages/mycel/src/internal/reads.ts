/**
 * Reads as steps of the engine.
 *
 * A get is served locally when this node owns the key (while keys move after a membership
 * change, a local miss is checked with the other owners). Otherwise the owners are asked in
 * order, primary first, one at a time: a timeout, a node gone or a miss while keys move goes on
 * to the next owner. When every owner asked went away first, the owners of the new member set
 * are asked (up to MAX_GONE_ATTEMPTS rounds). Concurrent gets of one remote key share one
 * request. A hit carrying a version this node refuses is not returned.
 *
 * With the bucket's near cache on, a get of a key this node does not own is answered from its
 * near copy when there is one; otherwise the owners are asked with `NearGet` and the value found
 * is kept as a near copy (`near.ts` says when it is not).
 */
import { CacheMessage } from '@mycorrizal/wire'
import { MycelError } from '../MycelError.js'
import type { BucketState, ReadOp } from './bucket.js'
import { closedError, type Host as Engine, type NoAnswer, PENDING, type Pending, type Request } from './host.js'

export type { ReadOp } from './bucket.js'
import { newer, type Read, type Version } from './store.js'
import { MAX_GONE_ATTEMPTS, RETRY_DELAY_MS } from './writes.js'


const GET_BYTES = 64
/** The local read of a get, filled in place (a read builds no object). */
const LOCAL_READ: Read = { value: undefined, ts: 0, node: '' }

export const startGet = (e: Engine, op: number, name: string, key: string): Uint8Array | undefined | MycelError | Pending => {
  if (e.closed) return closedError()
  const bucket = e.bucket(name)
  if (bucket instanceof MycelError) return bucket
  const placement = e.placement
  const replicas = bucket.config.replicas
  // ownership is checked without building the owners list: most gets need no list (a local read, a near copy)
  if (placement.size === 0 || placement.isOwner(e.self, name, key, replicas)) {
    const store = bucket.store
    const { value: local, ts, node } = store.readCounted(key, LOCAL_READ)
    LOCAL_READ.value = undefined
    if (ts > 0) e.observe(ts)
    if (local !== undefined || Math.min(replicas, placement.size) <= 1 || !e.rebalancing()) return local
    // while keys move (a join, a failure) a new owner may not have a key yet: ask the others
    // (a miss here with a version is this node's tombstone)
    return ask(e, bucket, key, placement.owners(name, key, replicas).filter((o) => o !== e.self), op, ts > 0 ? { ts, node } : undefined, false)
  }
  const near = bucket.near
  if (near !== undefined) {
    const copy = near.get(key, e.now)
    if (copy !== undefined) return copy
  }
  return ask(e, bucket, key, placement.owners(name, key, replicas), op, undefined, near !== undefined)
}

const ask = (e: Engine, bucket: BucketState, key: string, owners: ReadonlyArray<string>, op: number, deleted: Version | undefined, keep: boolean): Pending => {
  const shared = bucket.gets.get(key)
  if (shared !== undefined) {
    shared.ops.push(op)
    return PENDING
  }
  const nearMark = keep && bucket.near !== undefined ? bucket.near.mark() : -1
  const read: ReadOp = { bucket, key, owners, index: 0, attempt: 1, gone: 0, generation: 0, lastError: undefined, deleted, ops: [op], startedAt: e.now, nearMark }
  bucket.gets.set(key, read)
  next(e, read)
  return PENDING
}

/** Asks the next owner, or ends the read when none is left. */
const next = (e: Engine, r: ReadOp): void => {
  const { bucket, key } = r
  while (r.index < r.owners.length) {
    const owner = r.owners[r.index]!
    if (e.overBudget(owner, GET_BYTES)) {
      r.lastError = e.overloaded(bucket, owner)
      r.index++
      continue
    }
    const id = e.requests.allocate()
    r.generation++
    e.requests.add({ id, peer: owner, deadline: e.now + e.options.requestTimeoutMs, bytes: GET_BYTES, kind: 'get', read: r, generation: r.generation })
    e.send(bucket.name, owner, r.nearMark >= 0 ? { _tag: 'NearGet', id, key, ttlMs: bucket.near!.config.ttlMs } : { _tag: 'Get', id, key })
    return
  }
  if (r.gone === r.owners.length && r.attempt < MAX_GONE_ATTEMPTS && !e.closed) {
    e.later(e.now + RETRY_DELAY_MS * r.attempt, () => retry(e, r))
    return
  }
  finish(e, r, r.lastError ?? new MycelError({ reason: 'Unavailable', message: `no owner of '${key}' in '${bucket.name}' is reachable` }))
}

/** Every owner asked went away: ask the owners of the new member set. */
const retry = (e: Engine, r: ReadOp): void => {
  if (bucketGone(e, r)) return finish(e, r, closedOrGone(e, r))
  const owners = e.placement.owners(r.bucket.name, r.key, r.bucket.config.replicas)
  r.attempt++
  r.gone = 0
  r.index = 0
  if (owners.includes(e.self)) {
    const local = r.bucket.store.getValue(r.key)
    const others = owners.filter((o) => o !== e.self)
    if (local !== undefined || others.length === 0) return finish(e, r, local)
    r.owners = others
  } else {
    r.owners = owners
  }
  next(e, r)
}

const bucketGone = (e: Engine, r: ReadOp) => e.closed || e.buckets.get(r.bucket.name) !== r.bucket
const closedOrGone = (e: Engine, r: ReadOp) => (e.closed ? closedError() : new MycelError({ reason: 'BucketNotFound', message: `no bucket '${r.bucket.name}' on this node` }))

const finish = (e: Engine, r: ReadOp, result: Uint8Array | undefined | MycelError): void => {
  if (r.bucket.gets.get(r.key) === r) r.bucket.gets.delete(r.key)
  for (const op of r.ops) {
    if (result instanceof MycelError) e.fail(op, result)
    else e.done(op, result)
  }
  r.ops.length = 0
}

export const onGetAnswer = (e: Engine, request: Request & { readonly kind: 'get' }, answer: CacheMessage.GetResponse | NoAnswer): void => {
  const r = request.read
  if (request.generation !== r.generation || r.ops.length === 0) return
  const { bucket, key } = r
  const owner = request.peer
  if (answer === 'gone') {
    r.gone++
    r.lastError = new MycelError({ reason: 'Unavailable', message: `'${owner}' left or could not be reached before it answered a get of '${key}' in '${bucket.name}'` })
  } else if (answer === 'timeout') {
    bucket.timeouts++
    r.lastError = new MycelError({ reason: 'Timeout', message: `'${owner}' did not answer a get of '${key}' in '${bucket.name}' within ${e.options.requestTimeoutMs} ms` })
  } else if (answer === 'notFound' || answer.status === CacheMessage.GetStatus.BucketNotFound) {
    r.lastError = new MycelError({ reason: 'BucketNotFound', message: `'${owner}' has no bucket '${bucket.name}'` })
  } else {
    const last = r.index === r.owners.length - 1
    let hit = answer.status === CacheMessage.GetStatus.Hit
    if (!hit && answer.ts > 0 && e.validTs(answer.ts)) {
      // a tombstone: a value older than it, from an owner that missed the delete, is not returned
      const version = { ts: answer.ts, node: answer.node }
      if (r.deleted === undefined || newer(version, r.deleted)) r.deleted = version
    }
    if (hit && r.deleted !== undefined && !newer({ ts: answer.ts, node: answer.node }, r.deleted)) hit = false
    if (hit && !e.validTs(answer.ts)) {
      bucket.refused++
      r.lastError = new MycelError({ reason: 'Refused', message: `'${owner}' answered '${key}' in '${bucket.name}' with a version this node refuses` })
    } else if (hit || last || !e.rebalancing()) {
      // while keys move a new owner may answer a miss for a key another owner still has
      if (hit) {
        e.observe(answer.ts)
        if (r.nearMark >= 0 && bucket.near !== undefined) bucket.near.offer(key, answer.value, { ts: answer.ts, node: answer.node }, r.nearMark, e.now)
      }
      bucket.remoteGets++
      bucket.remoteGetLatency.observe((e.now - r.startedAt) * 1000)
      return finish(e, r, hit ? answer.value : undefined)
    }
  }
  r.index++
  next(e, r)
}
