import type { Nodosum } from '@mycorrizal/nodosum'
import type { Application, Stream } from '@mycorrizal/streams'
import { CacheMessage } from '@mycorrizal/wire'
import { Duration, Effect, Fiber, LogLevel, Runtime, Schedule } from 'effect'
import type { BucketStats, BucketOptions } from '../Mycel.js'
import { MycelError } from '../MycelError.js'
import { Placement } from './placement.js'
import { LatencyHistogram } from './latency.js'
import { BucketStore, type Entry, type Version } from './store.js'

const levels = { Debug: LogLevel.Debug, Info: LogLevel.Info, Warning: LogLevel.Warning, Error: LogLevel.Error } as const

export interface CacheOptions {
  /** How long a remote read or acknowledged write waits for one owner (ms). */
  readonly requestTimeoutMs: number
  /** Entries per handoff message. */
  readonly handoffBatch: number
  /** After joining, how long to wait for peers' handoffs before calling the node ready anyway (ms). */
  readonly readyTimeoutMs: number
  /** A node that still sees no peers after this long (ms) is alone and ready. */
  readonly settleMs: number
  /** After a membership change, local misses at an owner are checked with the other owners for this long (ms). */
  readonly rebalanceWindowMs: number
}

/** A request whose node left, failed or could not be sent to: it is asked again of the current owners. */
const GONE = 'gone' as const

/** How a request ends: an answer, undefined on timeout, or GONE. */
type Answer = CacheMessage.Ack | CacheMessage.GetResponse | undefined | typeof GONE

/** Attempts of a write or a remote get whose owners went away while it waited. */
const MAX_ATTEMPTS = 3
const RETRY_DELAY_MS = 50

interface Pending {
  readonly node: string
  readonly bucket: string
  readonly kind?: 'get'
  readonly resolve: (answer: Answer) => void
  readonly cancel: () => void
}

const streamName = (bucket: string) => `bucket:${bucket}`

/** One bucket on this node: its store, its stream, its counters. */
class Bucket {
  readonly store: BucketStore
  remoteGets = 0
  readonly remoteGetLatency = new LatencyHistogram()
  readonly remoteWriteLatency = new LatencyHistogram()
  handedOff = 0
  received = 0
  timeouts = 0
  /** Peers that have sent HandoffDone since this node joined. */
  readonly handoffFrom = new Set<string>()
  readonly singleflight = new Map<string, Promise<Uint8Array | undefined>>()

  constructor(
    readonly name: string,
    readonly options: Required<BucketOptions> & { readonly ttlMs: number; readonly maxSize: number },
    readonly stream: Stream,
    now: () => number
  ) {
    this.store = new BucketStore({ maxEntries: options.maxSize, maxBytes: options.maxBytes > 0 ? options.maxBytes : undefined, defaultTtlMs: options.ttlMs, now })
  }
}

/** The cache of this node. */
export class Cache {
  readonly buckets = new Map<string, Bucket>()
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private readonly placement = new Placement()
  private members: ReadonlyArray<string>
  private readonly runFork: ReturnType<typeof Runtime.runFork<never>>
  private closed = false
  readonly joinedAt: number
  private readyFlag = false
  private membershipChangedAt = 0
  /** The newest version timestamp this node has written or seen (a hybrid logical clock). */
  private lastTs = 0

  constructor(
    readonly nodosum: Nodosum.Nodosum['Type'],
    readonly app: Application,
    private readonly runtime: Runtime.Runtime<never>,
    readonly now: () => number,
    readonly options: CacheOptions,
    /** Runs background work (rebalancing) in the service's scope. */
    private readonly background: (effect: Effect.Effect<void>) => void
  ) {
    this.runFork = Runtime.runFork(runtime)
    this.members = nodosum.nodes()
    this.placement.setNodes(this.members)
    this.joinedAt = now()
    this.later(options.readyTimeoutMs, () => {
      if (!this.readyFlag) {
        this.readyFlag = true
        this.log('Warning', 'ready without every peer handoff', { waitedMs: options.readyTimeoutMs })
      }
    })
  }

  private get self(): string {
    return this.nodosum.nodeId
  }

  log(level: keyof typeof levels, message: string, annotations: Record<string, unknown> = {}): void {
    Runtime.runSync(this.runtime)(Effect.logWithLevel(levels[level], message).pipe(Effect.annotateLogs({ node: this.self, ...annotations })))
  }

  private later(ms: number, f: () => void): () => void {
    const fiber = this.runFork(Effect.sleep(ms).pipe(Effect.andThen(Effect.sync(f))))
    return () => {
      this.runFork(Fiber.interrupt(fiber))
    }
  }

  // ---- buckets ------------------------------------------------------------------------

  createBucket(name: string, options: Bucket['options']): Effect.Effect<void, MycelError> {
    return Effect.gen(this, function* () {
      if (this.buckets.has(name)) return yield* new MycelError({ reason: 'BucketExists', message: `bucket '${name}' exists` })
      const stream = yield* this.app.createStream(streamName(name)).pipe(
        Effect.mapError((e) => new MycelError({ reason: 'InvalidBucket', message: `bucket '${name}': ${e.message}` }))
      )
      const bucket = new Bucket(name, options, stream, this.now)
      this.buckets.set(name, bucket)
      stream.setReceiveFunc((payload, from) => this.receive(bucket, payload, from))
      stream.setRefusedFunc((node) => this.refused(bucket, node))
      this.log('Info', 'bucket created', { bucket: name, ttlMs: options.ttlMs, maxSize: options.maxSize, replicas: options.replicas })
      // tell the others how this node configured it (a mismatch is logged there)
      this.send(bucket, { _tag: 'BucketInfo', ttlMs: options.ttlMs, maxSize: options.maxSize, replicas: options.replicas }, [])
    })
  }

  deleteBucket(name: string): Effect.Effect<void, MycelError> {
    return Effect.gen(this, function* () {
      const bucket = this.buckets.get(name)
      if (bucket === undefined) return yield* new MycelError({ reason: 'BucketNotFound', message: `no bucket '${name}' on this node` })
      this.buckets.delete(name)
      bucket.store.clear()
      yield* bucket.stream.close
      this.log('Info', 'bucket deleted', { bucket: name })
    })
  }

  private bucket(name: string): Bucket | MycelError {
    return this.buckets.get(name) ?? new MycelError({ reason: 'BucketNotFound', message: `no bucket '${name}' on this node` })
  }

  // ---- operations ---------------------------------------------------------------------

  put(name: string, key: string, value: Uint8Array, ttlMs: number | undefined): Effect.Effect<void, MycelError> {
    return Effect.suspend(() => {
      if (value.byteLength + CacheMessage.putOverhead(key, this.self) > this.nodosum.maxMessageSize) {
        return Effect.fail(
          new MycelError({ reason: 'ValueTooLarge', message: `a value of ${value.byteLength} bytes does not fit in one message (${this.nodosum.maxMessageSize} bytes)` })
        )
      }
      return this.write(name, key, (store, version) => store.put(key, new Uint8Array(value), version, ttlMs), (id, version, ack) => ({
        _tag: 'Put',
        id,
        key,
        value,
        ts: version.ts,
        node: version.node,
        ttlMs: ttlMs ?? 0,
        ack
      }))
    })
  }

  delete(name: string, key: string): Effect.Effect<void, MycelError> {
    return this.write(name, key, (store, version) => store.delete(key, version), (id, version, ack) => ({
      _tag: 'Delete',
      id,
      key,
      ts: version.ts,
      node: version.node,
      ttlMs: 0,
      ack
    }))
  }

  /**
   * A versioned write to every owner: applied here when this node owns the key, sent to the
   * others. When an owner whose acknowledgement is awaited leaves or fails first, the write is
   * sent again, with the same version, to the owners of the new member set.
   */
  private write(
    name: string,
    key: string,
    local: (store: BucketStore, version: Version) => void,
    remote: (id: number, version: Version, ack: boolean) => CacheMessage.Put | CacheMessage.Delete,
    attempt = 1,
    given?: Version
  ): Effect.Effect<void, MycelError> {
    return Effect.suspend(() => {
      const bucket = this.bucket(name)
      if (bucket instanceof MycelError) return Effect.fail(bucket)
      const version = given ?? { ts: this.tick(), node: this.self }
      const owners = this.placement.owners(name, key, bucket.options.replicas)
      const waits: Array<Promise<Answer>> = []
      for (let i = 0; i < owners.length; i++) {
        const owner = owners[i]!
        if (owner === this.self) {
          local(bucket.store, version)
          continue
        }
        const wanted = this.ackWanted(bucket, owners, i)
        const id = wanted ? this.nextId++ : 0
        if (wanted) waits.push(this.expect(bucket, id, owner))
        this.send(bucket, remote(id, version, wanted), [owner])
      }
      return this.awaitAcks(bucket, key, waits).pipe(
        Effect.flatMap((outcome) => {
          if (outcome === 'done') return Effect.void
          if (attempt >= MAX_ATTEMPTS) {
            return Effect.fail(new MycelError({ reason: 'Unavailable', message: `the owners of '${key}' in '${bucket.name}' left or could not be reached before they acknowledged (${attempt} attempts)` }))
          }
          return Effect.sleep(Duration.millis(RETRY_DELAY_MS * attempt)).pipe(Effect.zipRight(this.write(name, key, local, remote, attempt + 1, version)))
        })
      )
    })
  }

  /**
   * A version timestamp after everything this node has seen: a write that follows a read of a
   * newer value (written on a node whose clock runs ahead, or in the same millisecond by a
   * node with a larger id) still wins over it.
   */
  private tick(): number {
    const ts = Math.max(this.now(), this.lastTs + 0.001)
    this.lastTs = ts
    return ts
  }

  private observe(ts: number): void {
    if (ts > this.lastTs) this.lastTs = ts
  }

  /**
   * Which owners' acknowledgements a write waits for: the primary's (every owner's with
   * writeConcern 'all'). When this node is the primary its own copy dies with it, so the next
   * owner's is awaited too: an acknowledged write then survives the loss of any one node.
   */
  private ackWanted(bucket: Bucket, owners: ReadonlyArray<string>, i: number): boolean {
    if (bucket.options.writeConcern === 'all' || i === 0) return true
    return i === 1 && owners[0] === this.self
  }

  /** 'done' once every awaited owner acknowledged; 'gone' when one left first. */
  private awaitAcks(bucket: Bucket, key: string, waits: ReadonlyArray<Promise<Answer>>): Effect.Effect<'done' | 'gone', MycelError> {
    if (waits.length === 0) return Effect.succeed('done')
    const started = performance.now()
    return Effect.promise(() => Promise.all(waits)).pipe(
      Effect.flatMap((answers) => {
        if (answers.includes(GONE)) return Effect.succeed('gone' as const)
        bucket.remoteWriteLatency.observe((performance.now() - started) * 1000)
        for (const answer of answers) {
          if (answer === undefined) {
            bucket.timeouts++
            return Effect.fail(new MycelError({ reason: 'Timeout', message: `no owner of '${key}' in '${bucket.name}' acknowledged within ${this.options.requestTimeoutMs} ms` }))
          }
          if (answer !== GONE && answer._tag === 'Ack' && answer.status === CacheMessage.AckStatus.BucketNotFound) {
            return Effect.fail(new MycelError({ reason: 'BucketNotFound', message: `an owner of '${key}' has no bucket '${bucket.name}'` }))
          }
        }
        return Effect.succeed('done' as const)
      })
    )
  }

  get(name: string, key: string): Effect.Effect<Uint8Array | undefined, MycelError> {
    return Effect.suspend(() => {
      const bucket = this.bucket(name)
      if (bucket instanceof MycelError) return Effect.fail(bucket)
      const owners = this.placement.owners(name, key, bucket.options.replicas)
      if (owners.length === 0 || owners.includes(this.self)) {
        const entry = bucket.store.peek(key)
        if (entry !== undefined) this.observe(entry.version.ts)
        const local = bucket.store.getValue(key)
        // while keys move (a join, a failure) a new owner may not have a key yet: ask the others
        const others = owners.filter((o) => o !== this.self)
        if (local !== undefined || others.length === 0 || !this.rebalancing()) return Effect.succeed(local)
        return this.sharedGet(bucket, key, others)
      }
      return this.sharedGet(bucket, key, owners)
    })
  }

  /** Concurrent gets of the same remote key share one request. */
  private sharedGet(bucket: Bucket, key: string, owners: ReadonlyArray<string>): Effect.Effect<Uint8Array | undefined, MycelError> {
    return Effect.suspend(() => {
      // concurrent gets of the same remote key share one request
      let shared = bucket.singleflight.get(key)
      if (shared === undefined) {
        shared = this.remoteGet(bucket, key, owners).finally(() => bucket.singleflight.delete(key))
        bucket.singleflight.set(key, shared)
      }
      const request = shared
      return Effect.tryPromise({ try: () => request, catch: (e) => e as MycelError })
    })
  }

  /**
   * Asks the owners in order (primary first) until one answers a hit or a miss. When every
   * owner asked went away first, asks the owners of the new member set.
   */
  private async remoteGet(bucket: Bucket, key: string, owners: ReadonlyArray<string>, attempt = 1): Promise<Uint8Array | undefined> {
    const started = performance.now()
    let lastError: MycelError | undefined
    let gone = 0
    for (const owner of owners) {
      const id = this.nextId++
      const answer = this.expect(bucket, id, owner)
      this.markGet(id)
      this.send(bucket, { _tag: 'Get', id, key }, [owner])
      const response = await answer
      if (response === GONE) {
        gone++
        lastError = new MycelError({ reason: 'Unavailable', message: `'${owner}' left or could not be reached before it answered a get of '${key}' in '${bucket.name}'` })
        continue
      }
      if (response === undefined) {
        bucket.timeouts++
        lastError = new MycelError({ reason: 'Timeout', message: `'${owner}' did not answer a get of '${key}' in '${bucket.name}' within ${this.options.requestTimeoutMs} ms` })
        continue
      }
      if (response._tag !== 'GetResponse') continue
      if (response.status === CacheMessage.GetStatus.BucketNotFound) {
        lastError = new MycelError({ reason: 'BucketNotFound', message: `'${owner}' has no bucket '${bucket.name}'` })
        continue
      }
      // while keys move a new owner may answer a miss for a key another owner still has
      if (response.status === CacheMessage.GetStatus.Miss && owner !== owners[owners.length - 1] && this.rebalancing()) continue
      bucket.remoteGets++
      bucket.remoteGetLatency.observe((performance.now() - started) * 1000)
      return response.status === CacheMessage.GetStatus.Hit ? response.value : undefined
    }
    if (gone === owners.length && attempt < MAX_ATTEMPTS && !this.closed) {
      await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS * attempt))
      const now = this.placement.owners(bucket.name, key, bucket.options.replicas)
      if (now.includes(this.self)) {
        const local = bucket.store.getValue(key)
        const others = now.filter((o) => o !== this.self)
        if (local !== undefined || others.length === 0) return local
        return this.remoteGet(bucket, key, others, attempt + 1)
      }
      return this.remoteGet(bucket, key, now, attempt + 1)
    }
    throw lastError ?? new MycelError({ reason: 'Unavailable', message: `no owner of '${key}' in '${bucket.name}' is reachable` })
  }

  /** A promise for the answer to request `id`: undefined on timeout or when the bucket goes away. */
  private expect(bucket: Bucket, id: number, node: string): Promise<Answer> {
    return new Promise((resolve) => {
      // a plain timer: one per request on the hot path, no fiber
      const timer = setTimeout(() => {
        if (this.pending.delete(id)) resolve(undefined)
      }, this.options.requestTimeoutMs)
      this.pending.set(id, { node, bucket: bucket.name, resolve, cancel: () => clearTimeout(timer) })
    })
  }

  private markGet(id: number): void {
    const p = this.pending.get(id)
    if (p !== undefined) this.pending.set(id, { ...p, kind: 'get' })
  }

  /** A node refused a bucket's stream: it has no such bucket. What waits on it gets that answer now. */
  private refused(bucket: Bucket, node: string): void {
    for (const [id, p] of [...this.pending]) {
      if (p.node !== node || p.bucket !== bucket.name) continue
      this.pending.delete(id)
      p.cancel()
      p.resolve(p.kind === 'get' ? notFoundGet(id) : { _tag: 'Ack', id, status: CacheMessage.AckStatus.BucketNotFound })
    }
    this.log('Warning', 'a node has no such bucket', { bucket: bucket.name, peer: node })
  }

  private send(bucket: Bucket, message: CacheMessage.CacheMessage, to: ReadonlyArray<string>): void {
    if (this.closed) return
    const failed = (e: { readonly message: string }) => {
      // the message did not leave: what waits on it is asked again now, not at its timeout
      if ('id' in message && message.id !== 0) {
        const p = this.pending.get(message.id)
        if (p !== undefined) {
          this.pending.delete(message.id)
          p.cancel()
          p.resolve(GONE)
        }
      }
      this.log('Debug', 'cache send failed', { bucket: bucket.name, error: e.message })
    }
    try {
      bucket.stream.offer(CacheMessage.encode(message), to)?.catch(failed)
    } catch (e) {
      failed(e as Error)
    }
  }

  // ---- incoming -----------------------------------------------------------------------

  private receive(bucket: Bucket, payload: Uint8Array, from: string): void {
    let message: CacheMessage.CacheMessage
    try {
      message = CacheMessage.decode(payload)
    } catch (e) {
      this.log('Warning', 'malformed cache message', { bucket: bucket.name, from, error: (e as Error).message })
      return
    }
    const store = bucket.store
    if ('ts' in message) this.observe(message.ts)
    switch (message._tag) {
      case 'Put': {
        const stored = store.put(message.key, message.value, { ts: message.ts, node: message.node }, message.ttlMs === 0 ? undefined : message.ttlMs)
        if (message.ack) this.send(bucket, { _tag: 'Ack', id: message.id, status: stored ? CacheMessage.AckStatus.Stored : CacheMessage.AckStatus.Older }, [from])
        break
      }
      case 'Delete': {
        const stored = store.delete(message.key, { ts: message.ts, node: message.node }, message.ttlMs === 0 ? undefined : message.ttlMs)
        if (message.ack) this.send(bucket, { _tag: 'Ack', id: message.id, status: stored ? CacheMessage.AckStatus.Stored : CacheMessage.AckStatus.Older }, [from])
        break
      }
      case 'Get': {
        const entry = store.get(message.key)
        const hit = entry !== undefined && entry.value !== undefined
        this.send(
          bucket,
          {
            _tag: 'GetResponse',
            id: message.id,
            status: hit ? CacheMessage.GetStatus.Hit : CacheMessage.GetStatus.Miss,
            value: hit ? entry.value! : new Uint8Array(0),
            ts: entry?.version.ts ?? 0,
            node: entry?.version.node ?? ''
          },
          [from]
        )
        break
      }
      case 'Ack':
      case 'GetResponse': {
        const p = this.pending.get(message.id)
        if (p !== undefined) {
          this.pending.delete(message.id)
          p.cancel()
          p.resolve(message)
        }
        break
      }
      case 'Handoff': {
        const now = this.now()
        for (const e of message.entries) {
          this.observe(e.ts)
          if (store.merge(e.key, { value: e.tombstone ? undefined : e.value, version: { ts: e.ts, node: e.node }, expiresAt: now + e.ttlLeftMs })) bucket.received++
        }
        break
      }
      case 'HandoffDone': {
        bucket.handoffFrom.add(from)
        this.checkReady()
        break
      }
      case 'BucketInfo': {
        const o = bucket.options
        if (message.ttlMs !== o.ttlMs || message.maxSize !== o.maxSize || message.replicas !== o.replicas) {
          this.log('Warning', 'bucket configured differently on another node', {
            bucket: bucket.name,
            from,
            theirs: { ttlMs: message.ttlMs, maxSize: message.maxSize, replicas: message.replicas },
            ours: { ttlMs: o.ttlMs, maxSize: o.maxSize, replicas: o.replicas }
          })
        }
        break
      }
    }
  }

  // ---- membership and rebalancing -----------------------------------------------------

  /**
   * The member set changed: every entry whose owner set gained nodes is sent to them by one
   * sender (the best-ranked old owner still alive), in batches; entries this node no longer
   * owns are dropped once sent. Then every peer gets HandoffDone per bucket.
   */
  membershipChanged(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const before = this.members
      const after = this.nodosum.nodes()
      if (before.join() === after.join()) return Effect.void
      // placement follows membership at once; the moving of keys runs in the background
      this.members = after
      this.membershipChangedAt = this.now()
      // requests to nodes that went away are asked again of the new owners, not left to time out
      const alive = new Set(after)
      for (const [id, p] of [...this.pending]) {
        if (alive.has(p.node)) continue
        this.pending.delete(id)
        p.cancel()
        p.resolve(GONE)
      }
      const old = new Placement()
      old.setNodes(before)
      this.placement.setNodes(after)
      return Effect.sync(() => {
        this.background(this.rebalance(old, after))
      })
    })
  }

  private rebalance(old: Placement, after: ReadonlyArray<string>): Effect.Effect<void> {
    return Effect.gen(this, function* () {
      const alive = new Set(after)
      for (const bucket of [...this.buckets.values()]) {
        const batches = new Map<string, Array<CacheMessage.HandoffEntry>>()
        const drop: Array<string> = []
        const now = this.now()
        for (const [key, entry] of bucket.store.entries()) {
          const oldOwners = old.owners(bucket.name, key, bucket.options.replicas)
          const sender = oldOwners.find((o) => alive.has(o)) ?? this.self
          const newOwners = this.placement.owners(bucket.name, key, bucket.options.replicas)
          const owner = newOwners.includes(this.self)
          for (const target of newOwners) {
            if (target === this.self) continue
            // the designated sender gives new owners their copy; a node about to drop its copy
            // gives it to every owner, since a copy it holds may be the only one (a replica
            // write lost with a node that left, a put that arrived after the sender moved on)
            if ((sender === this.self && !oldOwners.includes(target)) || !owner) {
              const list = batches.get(target) ?? []
              list.push(toHandoff(key, entry, now))
              batches.set(target, list)
            }
          }
          if (!owner) drop.push(key)
        }
        for (const [owner, entries] of batches) {
          for (let i = 0; i < entries.length; i += this.options.handoffBatch) {
            const slice = entries.slice(i, i + this.options.handoffBatch)
            yield* this.reliably(bucket, CacheMessage.encode({ _tag: 'Handoff', entries: slice }), owner)
            bucket.handedOff += slice.length
            // bounded rate: other buckets and normal operations go between batches
            yield* Effect.yieldNow()
          }
        }
        for (const key of drop) bucket.store.drop(key)
        const done = CacheMessage.encode({ _tag: 'HandoffDone', epoch: after.length })
        yield* Effect.forEach(
          after.filter((id) => id !== this.self),
          (peer) => this.reliably(bucket, done, peer),
          { concurrency: 'unbounded', discard: true }
        )
      }
    })
  }

  /**
   * Sends a rebalancing message, retrying with backoff while the peer is a member: right after a
   * join the connection to it may still be settling (two nodes dialed each other at once).
   */
  private reliably(bucket: Bucket, bytes: Uint8Array, peer: string): Effect.Effect<void> {
    return Effect.suspend(() => (this.nodosum.nodes().includes(peer) && !this.closed ? bucket.stream.send(bytes, [peer]) : Effect.void)).pipe(
      Effect.retry(Schedule.exponential(Duration.millis(50)).pipe(Schedule.intersect(Schedule.recurs(8)))),
      Effect.catchAll((e) => Effect.sync(() => this.log('Warning', 'handoff to a peer failed', { bucket: bucket.name, peer, error: e.message })))
    )
  }

  private checkReady(): void {
    if (this.readyFlag) return
    const peers = this.nodosum.nodes().filter((id) => id !== this.self)
    // before the first discovery settles an empty peer list proves nothing
    if (peers.length === 0 && this.now() - this.joinedAt < this.options.settleMs) return
    for (const bucket of this.buckets.values()) for (const peer of peers) if (!bucket.handoffFrom.has(peer)) return
    this.readyFlag = true
    this.log('Info', 'cache ready', { afterMs: this.now() - this.joinedAt })
  }

  ready(): boolean {
    if (!this.readyFlag) this.checkReady()
    return this.readyFlag
  }

  /** True while keys may still be on their way to new owners. */
  private rebalancing(): boolean {
    return !this.readyFlag || this.now() - this.membershipChangedAt < this.options.rebalanceWindowMs
  }

  stats(name: string): BucketStats | undefined {
    const bucket = this.buckets.get(name)
    if (bucket === undefined) return undefined
    const s = bucket.store.stats()
    return {
      ...s,
      remoteGets: bucket.remoteGets,
      remoteGetLatency: bucket.remoteGetLatency.snapshot(),
      remoteWriteLatency: bucket.remoteWriteLatency.snapshot(),
      timeouts: bucket.timeouts,
      handedOff: bucket.handedOff,
      received: bucket.received,
      replicas: bucket.options.replicas,
      ttlMs: bucket.options.ttlMs,
      maxSize: bucket.options.maxSize
    }
  }

  close(): void {
    this.closed = true
    for (const p of this.pending.values()) {
      p.cancel()
      p.resolve(undefined)
    }
    this.pending.clear()
  }
}

const notFoundGet = (id: number): CacheMessage.GetResponse => ({
  _tag: 'GetResponse',
  id,
  status: CacheMessage.GetStatus.BucketNotFound,
  value: new Uint8Array(0),
  ts: 0,
  node: ''
})

const toHandoff = (key: string, entry: Entry, now: number): CacheMessage.HandoffEntry => ({
  key,
  tombstone: entry.value === undefined,
  value: entry.value ?? new Uint8Array(0),
  ts: entry.version.ts,
  node: entry.version.node,
  ttlLeftMs: Math.max(1, Math.min(0xffffffff, Math.round(entry.expiresAt - now)))
})
