/**
 * Rebalancing: the one handoff state of a node, whatever number of membership changes overlap.
 *
 * On each change every entry whose owner set gained nodes is queued for them, by one sender
 * (the best-ranked old owner still alive); a node that no longer owns a key queues it for every
 * new owner, since its copy may be the only one. Queues are per peer and bucket, sets of keys,
 * so overlapping changes merge instead of racing.
 *
 * One batch is in flight per peer at a time, bounded in entries and in bytes (never above the
 * maximum message size). A batch counts as handed off only when the peer acknowledged it; a
 * failed batch (timeout, send failure) is counted and its keys queued again, with backoff. A
 * node drops a key it no longer owns only when every new owner acknowledged the version it holds,
 * and then only if, at that moment, it still does not own the key and still holds that version.
 * Once a peer's queue of a bucket is empty and acknowledged, the peer gets HandoffDone for it.
 */
import { CacheMessage } from '@mycorrizal/wire'
import { sendRecords } from './atomic.js'
import type { BucketState } from './bucket.js'
import type { Host as Engine, NoAnswer, Request } from './host.js'

export type { HandoffBatchState } from './host.js'
import type { Placement } from './placement.js'
import type { Entry, Version } from './store.js'


const MAX_BACKOFF_MS = 2_000
const BASE_BACKOFF_MS = 50

const sameVersion = (a: Version, b: Version) => a.ts === b.ts && a.node === b.node

export class Rebalance {
  /** Keys to send, by peer, then bucket. */
  private readonly outbox = new Map<string, Map<string, Set<string>>>()
  /** The batch in flight to a peer (its request id). */
  private readonly inflight = new Map<string, number>()
  /** Keys this node no longer owns, by bucket: the peers whose acknowledgement is awaited before the drop. */
  private readonly leaving = new Map<string, Map<string, Set<string>>>()
  /** Buckets each peer is owed a HandoffDone for. */
  private readonly doneOwed = new Map<string, Set<string>>()
  /** Failed batches in a row per peer, and when the peer may be sent to again. */
  private readonly failures = new Map<string, { count: number; until: number }>()

  constructor(private readonly e: Engine) {}

  /** Keys queued or in flight, for tests and stats. */
  get backlog(): number {
    let n = 0
    for (const buckets of this.outbox.values()) for (const keys of buckets.values()) n += keys.size
    return n
  }

  get leavingCount(): number {
    let n = 0
    for (const keys of this.leaving.values()) n += keys.size
    return n
  }

  /** Nothing queued and no batch in flight. */
  get idle(): boolean {
    return this.outbox.size === 0 && this.inflight.size === 0
  }

  nextRetry(): number | undefined {
    let at: number | undefined
    if (this.failures.size === 0) return at
    for (const [peer, f] of this.failures) if (this.outbox.has(peer) && !this.inflight.has(peer) && (at === undefined || f.until < at)) at = f.until
    return at
  }

  membershipChanged(old: Placement): void {
    const e = this.e
    const alive = new Set(e.members)
    for (const peer of [...this.outbox.keys()]) if (!alive.has(peer)) this.outbox.delete(peer)
    for (const peer of [...this.doneOwed.keys()]) if (!alive.has(peer)) this.doneOwed.delete(peer)
    for (const peer of [...this.failures.keys()]) if (!alive.has(peer)) this.failures.delete(peer)
    for (const bucket of e.buckets.values()) {
      const replicas = bucket.config.replicas
      let leaving = this.leaving.get(bucket.name)
      for (const [key] of bucket.store.entries()) {
        const oldOwners = old.owners(bucket.name, key, replicas)
        const sender = oldOwners.find((o) => alive.has(o)) ?? e.self
        const newOwners = e.placement.owners(bucket.name, key, replicas)
        const owner = newOwners.includes(e.self)
        for (const target of newOwners) {
          if (target === e.self) continue
          if ((sender === e.self && !oldOwners.includes(target)) || !owner) this.queue(target, bucket.name, key)
        }
        if (owner) {
          leaving?.delete(key)
        } else {
          if (leaving === undefined) {
            leaving = new Map()
            this.leaving.set(bucket.name, leaving)
          }
          leaving.set(key, new Set(newOwners.filter((o) => o !== e.self)))
        }
      }
      for (const peer of e.members) {
        if (peer === e.self) continue
        let owed = this.doneOwed.get(peer)
        if (owed === undefined) this.doneOwed.set(peer, (owed = new Set()))
        owed.add(bucket.name)
      }
    }
    this.pump()
  }

  /** Queues `key` for `peer` (anti-entropy: the peer owns it and lacks this version); ownership is checked again when its batch is built. */
  push(peer: string, bucket: string, key: string): void {
    this.queue(peer, bucket, key)
  }

  private queue(peer: string, bucket: string, key: string): void {
    let buckets = this.outbox.get(peer)
    if (buckets === undefined) this.outbox.set(peer, (buckets = new Map()))
    let keys = buckets.get(bucket)
    if (keys === undefined) buckets.set(bucket, (keys = new Set()))
    keys.add(key)
  }

  /** Sends the next batch to every peer that has none in flight; then the HandoffDones owed. */
  pump(): void {
    const e = this.e
    if (e.closed) return
    for (const [peer, buckets] of this.outbox) {
      if (this.inflight.has(peer)) continue
      const failed = this.failures.get(peer)
      if (failed !== undefined && failed.until > e.now) continue
      for (const [name, keys] of buckets) {
        const bucket = e.buckets.get(name)
        if (bucket === undefined) {
          buckets.delete(name)
          continue
        }
        if (this.sendBatch(peer, bucket, keys)) break
        if (keys.size === 0) buckets.delete(name)
      }
      if (buckets.size === 0) this.outbox.delete(peer)
    }
    for (const [peer, owed] of this.doneOwed) {
      if (this.inflight.has(peer)) continue
      const buckets = this.outbox.get(peer)
      for (const name of [...owed]) {
        if (buckets?.has(name) === true) continue
        owed.delete(name)
        if (e.buckets.has(name)) e.send(name, peer, { _tag: 'HandoffDone', epoch: e.members.length })
      }
      if (owed.size === 0) this.doneOwed.delete(peer)
    }
  }

  /** Sends one batch of `keys` to `peer` (true) or finds nothing left to send (false). */
  private sendBatch(peer: string, bucket: BucketState, keys: Set<string>): boolean {
    const e = this.e
    const limit = Math.min(e.options.handoffBatchBytes, e.options.maxMessageSize)
    const entries: Array<CacheMessage.HandoffEntry> = []
    const sent: Array<{ key: string; version: Version }> = []
    let bytes = CacheMessage.handoffBatchOverhead
    for (const key of keys) {
      const entry = bucket.store.peek(key)
      // ownership is checked now, not at the change that queued the key
      if (entry === undefined || !e.placement.owners(bucket.name, key, bucket.config.replicas).includes(peer)) {
        keys.delete(key)
        continue
      }
      const size = CacheMessage.handoffEntrySize(key, entry.value?.byteLength ?? 0, entry.version.node)
      if (entries.length > 0 && (bytes + size > limit || entries.length >= e.options.handoffBatch)) break
      keys.delete(key)
      entries.push(toHandoff(key, entry, e.now))
      sent.push({ key, version: entry.version })
      bytes += size
    }
    if (entries.length === 0) return false
    if (e.overBudget(peer, bytes)) {
      // the peer is busy: the batch goes back and waits
      for (const { key } of sent) keys.add(key)
      this.backoff(peer)
      return true
    }
    const id = e.requests.allocate()
    e.requests.add({ id, peer, deadline: e.now + e.options.requestTimeoutMs, bytes, kind: 'handoff', batch: { bucket: bucket.name, entries: sent } })
    this.inflight.set(peer, id)
    // the records of atomic operations ahead of the values, so the new owner answers their retries
    for (const { key } of sent) sendRecords(e, bucket, peer, key)
    e.send(bucket.name, peer, { _tag: 'HandoffBatch', id, entries })
    return true
  }

  private backoff(peer: string): void {
    const e = this.e
    const f = this.failures.get(peer) ?? { count: 0, until: 0 }
    f.count++
    f.until = e.now + Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** Math.min(f.count - 1, 10))
    this.failures.set(peer, f)
  }

  onAnswer(request: Request & { readonly kind: 'handoff' }, answer: CacheMessage.Ack | NoAnswer): void {
    const e = this.e
    const peer = request.peer
    if (this.inflight.get(peer) === request.id) this.inflight.delete(peer)
    const bucket = e.buckets.get(request.batch.bucket)
    if (bucket === undefined) return this.pump()
    if (typeof answer !== 'string' && answer.status === CacheMessage.AckStatus.Stored) {
      this.failures.delete(peer)
      for (const { key, version } of request.batch.entries) {
        bucket.handedOff++
        this.acknowledged(bucket, peer, key, version)
      }
      return this.pump()
    }
    bucket.handoffFailures++
    e.log('Debug', 'handoff batch failed', { bucket: bucket.name, peer, entries: request.batch.entries.length, reason: typeof answer === 'string' ? answer : `status ${answer.status}` })
    if (answer === 'notFound' || (typeof answer !== 'string' && answer.status === CacheMessage.AckStatus.BucketNotFound)) {
      this.forgetPeerBucket(peer, bucket.name)
      return this.pump()
    }
    if (e.members.includes(peer)) {
      for (const { key } of request.batch.entries) this.queue(peer, bucket.name, key)
      this.backoff(peer)
    }
    this.pump()
  }

  /** `peer` stored `version` of `key`: when every new owner has the version held here, a key this node no longer owns goes. */
  private acknowledged(bucket: BucketState, peer: string, key: string, version: Version): void {
    const leaving = this.leaving.get(bucket.name)
    const waiting = leaving?.get(key)
    if (leaving === undefined || waiting === undefined) return
    const e = this.e
    const current = bucket.store.peek(key)
    const owners = e.placement.owners(bucket.name, key, bucket.config.replicas)
    if (owners.includes(e.self)) {
      leaving.delete(key)
      return
    }
    if (current === undefined) {
      leaving.delete(key)
      return
    }
    if (!sameVersion(current.version, version)) {
      // a newer version arrived since the batch left: the owners get it too
      for (const o of owners) if (o !== e.self) this.queue(o, bucket.name, key)
      leaving.set(key, new Set(owners.filter((o) => o !== e.self)))
      return
    }
    waiting.delete(peer)
    if (waiting.size > 0) return
    leaving.delete(key)
    // a departing node keeps its copies until it closes: it may still be asked for them
    if (!e.departing) bucket.store.drop(key)
  }

  /**
   * This node stored a copy of a key it does not own (a handoff or write from a node whose view
   * of the members differs): the copy goes to the key's owners and is dropped once they all
   * acknowledged it, as at a membership change.
   */
  strayed(bucket: BucketState, key: string): void {
    const e = this.e
    const owners = e.placement.owners(bucket.name, key, bucket.config.replicas)
    if (owners.includes(e.self)) return
    let leaving = this.leaving.get(bucket.name)
    if (leaving === undefined) this.leaving.set(bucket.name, (leaving = new Map()))
    leaving.set(key, new Set(owners))
    for (const o of owners) this.queue(o, bucket.name, key)
  }

  forgetBucket(name: string): void {
    this.leaving.delete(name)
    for (const buckets of this.outbox.values()) buckets.delete(name)
    for (const owed of this.doneOwed.values()) owed.delete(name)
  }

  /** The peer has no such bucket: nothing more is sent to it for the bucket. */
  forgetPeerBucket(peer: string, name: string): void {
    this.outbox.get(peer)?.delete(name)
    this.doneOwed.get(peer)?.delete(name)
    const leaving = this.leaving.get(name)
    if (leaving !== undefined) for (const waiting of leaving.values()) waiting.delete(peer)
  }
}

const toHandoff = (key: string, entry: Entry, now: number): CacheMessage.HandoffEntry => ({
  key,
  tombstone: entry.value === undefined,
  value: entry.value ?? new Uint8Array(0),
  ts: entry.version.ts,
  node: entry.version.node,
  ttlLeftMs: Math.max(1, Math.min(0xffffffff, Math.round(entry.expiresAt - now)))
})
