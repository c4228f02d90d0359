/**
 * The cache engine of one node: a synchronous state machine with no I/O, no Effect and no clock
 * of its own. Inputs are client operations, incoming messages, membership changes, send
 * outcomes and clock ticks, each with the current time; outputs are appended to `out` —
 * messages to send, completions of operations, log lines — and `nextWake()` says when the
 * engine wants its next tick. The Effect shell (`service.ts`) connects it to Streams and the
 * Effect `Clock`; the simulator and the tests drive it directly.
 *
 * The rules live by concern: `requests.ts` (ids and deadlines), `writes.ts`, `reads.ts`,
 * `rebalance.ts` (handoff), `store.ts` (one bucket's entries).
 */
import { CacheMessage } from '@mycorrizal/wire'
import { MycelError } from '../MycelError.js'
import { AntiEntropy } from './antientropy.js'
import { Atomics, atomicError, recordRetainMs, sendRecords } from './atomic.js'
import { BucketState, type BucketConfig } from './bucket.js'
import { ChurnMap } from './churn.js'
import { sentAsUpdate } from './near.js'
import { Placement } from './placement.js'
import { onGetAnswer, startGet } from './reads.js'
import { Rebalance } from './rebalance.js'
import { RequestTable } from './requests.js'
import type { Read, Version } from './store.js'
import type { BucketStats } from './types.js'
import { onWriteAnswer, startWrite } from './writes.js'
import { closedError, type EngineOptions, type Host, LEAVING_EPOCH, type LogLevel, type NoAnswer, type Output, PENDING, type Pending, type Request, TS_PER_MS, type WriteOp } from './host.js'

export { closedError, type EngineOptions, LEAVING_EPOCH, type LogLevel, type NoAnswer, type Output, PENDING, type Pending, type Request, TS_PER_MS } from './host.js'

interface Timer {
  readonly at: number
  readonly run: () => void
}

export class Engine implements Host {
  /**
   * The engine's time (ms since epoch): the first input's time, then advanced by the time that
   * passed between inputs. A clock stepping back holds it still (it never goes back, and its
   * deadlines and timers do not wait for the clock to catch up); a step forward moves it on.
   */
  now: number
  /** The time of the last input, as the shell's clock gave it. */
  private input: number
  private readonly outputs: Array<Output> = []
  readonly buckets = new Map<string, BucketState>()
  readonly requests: RequestTable<Request>
  readonly placement = new Placement()
  members: ReadonlyArray<string>
  readonly rebalance: Rebalance = new Rebalance(this)
  readonly antiEntropy: AntiEntropy = new AntiEntropy(this)
  readonly atomics: Atomics = new Atomics(this)
  /** Writes not yet completed (waiting for answers or for a retry). */
  readonly activeWrites = new ChurnMap<WriteOp, WriteOp>()
  /** Bytes handed to the transport for a peer and not yet taken by its stream buffer. */
  private readonly queued = new Map<string, number>()
  /** What the answer to a peer's Get was read into (a read builds no object). */
  private readonly peerRead: Read = { value: undefined, ts: 0, node: '' }
  private timers: Array<Timer> = []
  /** The newest version timestamp this node has written or seen (a hybrid logical clock). */
  private hlc = 0
  closed = false
  /** A graceful leave is under way (see `leave`). */
  departing = false
  /** Peers that announced their graceful leave: placed as gone while they hand their keys off. */
  private readonly departed = new Set<string>()
  /** Peers that went from the member set without announcing a leave (failed, or cut off), until they are back. */
  private readonly lost = new Set<string>()
  /**
   * A leaving node that holds keys and sees no peer, while peers it lost may come back (a cut
   * that healed, a peer restarting): it is not drained until they are back and took its keys,
   * or its leave timeout ends, since its copies may be the only ones of acknowledged writes.
   */
  private awaitingPeers = false
  /** The member set as last reported by the transport. */
  private reported: ReadonlyArray<string>
  readonly joinedAt: number
  private readyFlag = false
  private membershipChangedAt = -Infinity
  viewChanges = 0

  constructor(
    readonly options: EngineOptions,
    members: ReadonlyArray<string>,
    now: number
  ) {
    this.now = now
    this.input = now
    this.joinedAt = now
    this.requests = new RequestTable<Request>(options.firstRequestId ?? 1)
    this.members = [...members]
    this.reported = [...members]
    this.placement.setNodes(this.members)
    this.antiEntropy.schedule(now + options.syncDelayMs, true)
  }

  get self(): string {
    return this.options.self
  }

  // ---- outputs ------------------------------------------------------------------------

  /**
   * The outputs so far; the reader takes them (splices or empties the array). Reading them first
   * sends the atomic operations' replications gathered since the last read (`atomic.ts`): the
   * operations applied to a key between two reads go to its other owners as one value.
   */
  get out(): Array<Output> {
    if (this.atomics.hasPending) this.atomics.sendPending()
    return this.outputs
  }

  send(bucket: string, to: string, message: CacheMessage.CacheMessage): void {
    if (!this.closed) this.outputs.push({ _tag: 'Send', bucket, to, message })
  }

  done(op: number, value: Uint8Array | undefined): void {
    this.outputs.push({ _tag: 'Done', op, value })
  }

  result(op: number, result: number | boolean): void {
    if (Atomics.isGathered(op)) this.atomics.settleGathered(op, undefined, result as number)
    else this.outputs.push({ _tag: 'Result', op, result })
  }

  fail(op: number, error: MycelError): void {
    if (Atomics.isGathered(op)) this.atomics.settleGathered(op, error, 0)
    else this.outputs.push({ _tag: 'Fail', op, error })
  }

  log(level: LogLevel, message: string, annotations: Record<string, unknown> = {}): void {
    if (!this.closed) this.outputs.push({ _tag: 'Log', level, message, annotations })
  }

  /** Runs `run` at the first tick at or after `at`. */
  later(at: number, run: () => void): void {
    this.timers.push({ at, run })
  }

  /** When the engine wants its next tick (ms since epoch), if ever. */
  nextWake(): number | undefined {
    if (this.closed) return undefined
    let at = this.requests.nextDeadline() ?? Infinity
    const timers = this.timers
    for (let i = 0; i < timers.length; i++) if (timers[i]!.at < at) at = timers[i]!.at
    if (!this.readyFlag) at = Math.min(at, this.joinedAt + this.options.readyTimeoutMs, this.members.length <= 1 ? this.joinedAt + this.options.settleMs : Infinity)
    const retry = this.rebalance.nextRetry()
    if (retry !== undefined && retry < at) at = retry
    const call = this.atomics.nextDeadline()
    if (call !== undefined && call < at) at = call
    return at === Infinity ? undefined : at
  }

  // ---- time and versions --------------------------------------------------------------

  private advance(now: number): void {
    if (now > this.input) this.now += now - this.input
    this.input = now
  }

  /** How long from the shell's `now` until the engine wants its next tick (ms), if ever. */
  wakeIn(now: number): number | undefined {
    this.advance(now)
    const at = this.nextWake()
    return at === undefined ? undefined : Math.max(0, at - this.now)
  }

  /**
   * A version timestamp after everything this node has seen, and at least `atLeast`: a hybrid
   * logical clock over the shell's clock as it reads now (`input`), not over the engine's time —
   * that one counts every step forward and none back, so a clock stepping forward and back again
   * would carry the versions ahead by the sum of its steps, past what peers accept
   * (`maxClockAhead`; sim seed 28 at `--gap 2`). The hybrid clock never goes back either way.
   */
  nextTs(atLeast = 0): number {
    const ts = Math.max(Math.floor(this.input) * TS_PER_MS, this.hlc + 1, atLeast)
    this.hlc = ts
    return ts
  }

  observe(ts: number): void {
    if (ts > this.hlc) this.hlc = ts
  }

  /** A version from a peer is a positive safe integer not far ahead of this node's clock (as it reads now). */
  validTs(ts: number): boolean {
    return Number.isSafeInteger(ts) && ts > 0 && ts <= (this.input + this.options.maxClockAheadMs) * TS_PER_MS
  }

  // ---- per-peer byte budget -----------------------------------------------------------

  /** Bytes in flight to `peer`: requests awaiting its answer and messages waiting for its buffer. */
  peerBytes(peer: string): number {
    return this.requests.bytesFor(peer) + (this.queued.get(peer) ?? 0)
  }

  /** True when `bytes` more would pass the peer's budget (one request always fits an idle peer). */
  overBudget(peer: string, bytes: number): boolean {
    const inFlight = this.peerBytes(peer)
    return inFlight > 0 && inFlight + bytes > this.options.maxPeerBytes
  }

  /** The shell reports bytes waiting for a peer's stream buffer (+) and taken or failed (-). */
  queuedChanged(peer: string, delta: number): void {
    const left = (this.queued.get(peer) ?? 0) + delta
    if (left <= 0) this.queued.delete(peer)
    else this.queued.set(peer, left)
  }

  overloaded(bucket: BucketState, peer: string): MycelError {
    bucket.overloaded++
    return new MycelError({
      reason: 'Overloaded',
      message: `${this.peerBytes(peer)} bytes are in flight to '${peer}' for the cache (limit ${this.options.maxPeerBytes}); '${bucket.name}' refused the operation`
    })
  }

  // ---- buckets ------------------------------------------------------------------------

  bucket(name: string): BucketState | MycelError {
    return this.buckets.get(name) ?? new MycelError({ reason: 'BucketNotFound', message: `no bucket '${name}' on this node` })
  }

  addBucket(name: string, config: BucketConfig, now: number): BucketState | MycelError {
    this.advance(now)
    if (this.buckets.has(name)) return new MycelError({ reason: 'BucketExists', message: `bucket '${name}' exists` })
    const bucket = new BucketState(name, config, () => this.now, recordRetainMs(this.options.requestTimeoutMs))
    bucket.store.onWrite = (key, version, value) => this.invalidateReaders(bucket, key, version, value)
    this.buckets.set(name, bucket)
    this.log('Info', 'bucket created', { bucket: name, ttlMs: config.ttlMs, maxSize: config.maxSize, replicas: config.replicas })
    // tell the others how this node configured it (a mismatch is logged there)
    for (const peer of this.members) {
      if (peer !== this.self) this.send(name, peer, { _tag: 'BucketInfo', ttlMs: config.ttlMs, maxSize: config.maxSize, replicas: config.replicas })
    }
    return bucket
  }

  /**
   * `key` changed in this node's store (to `value`; undefined: deleted): the nodes that read it
   * near are sent the new value when it is small, else told to drop their copy (see `near.ts`).
   */
  private invalidateReaders(bucket: BucketState, key: string, version: Version, value: Uint8Array | undefined): void {
    const readers = bucket.readers
    if (readers.idle(this.now) || this.closed) return
    const update = sentAsUpdate(value)
    const targets = readers.written(key, this.now, update)
    if (targets === undefined) return
    const message: CacheMessage.NearInvalidate | CacheMessage.NearUpdate =
      update && targets !== 'all'
        ? { _tag: 'NearUpdate', key, value, ts: version.ts, node: version.node }
        : { _tag: 'NearInvalidate', key, ts: version.ts, node: version.node }
    for (const peer of targets === 'all' ? this.members : targets) {
      if (peer === this.self) continue
      readers.sent++
      this.send(bucket.name, peer, message)
    }
  }

  removeBucket(name: string): boolean {
    const bucket = this.buckets.get(name)
    if (bucket === undefined) return false
    this.buckets.delete(name)
    bucket.store.clear()
    this.rebalance.forgetBucket(name)
    this.log('Info', 'bucket deleted', { bucket: name })
    return true
  }

  stats(name: string): BucketStats | undefined {
    return this.buckets.get(name)?.stats()
  }

  // ---- client operations --------------------------------------------------------------

  put(op: number, bucket: string, key: string, value: Uint8Array, ttlMs: number | undefined, now: number): undefined | MycelError | Pending {
    this.advance(now)
    this.atomics.before(bucket, key)
    return startWrite(this, op, bucket, key, new Uint8Array(value), ttlMs)
  }

  delete(op: number, bucket: string, key: string, now: number): undefined | MycelError | Pending {
    this.advance(now)
    this.atomics.before(bucket, key)
    return startWrite(this, op, bucket, key, undefined, undefined)
  }

  get(op: number, bucket: string, key: string, now: number): Uint8Array | undefined | MycelError | Pending {
    this.advance(now)
    this.atomics.before(bucket, key)
    return startGet(this, op, bucket, key)
  }

  /**
   * An atomic operation (`atomic.ts`), run at the key's primary: PENDING, or an error found
   * before anything was sent. It completes with a `Result` output (or `Fail`).
   */
  atomic(
    op: number,
    bucket: string,
    args: { readonly op: CacheMessage.AtomicOp; readonly key: string; readonly expected: Uint8Array | undefined; readonly value: Uint8Array; readonly delta: number; readonly ttlMs: number | undefined },
    now: number
  ): MycelError | Pending {
    this.advance(now)
    if (this.closed) return closedError()
    const state = this.bucket(bucket)
    if (state instanceof MycelError) return state
    if (args.op === CacheMessage.AtomicOp.Increment) {
      if (!Number.isInteger(args.delta)) return new MycelError({ reason: 'NotInteger', message: `an increment is an integer, got ${args.delta}` })
      if (!Number.isSafeInteger(args.delta)) return atomicError(CacheMessage.AtomicStatus.Overflow, bucket, args.key)
    } else {
      const bytes = args.value.byteLength + (args.expected?.byteLength ?? 0)
      const size = Math.max(bytes + CacheMessage.atomicOverhead(args.key, this.self), args.value.byteLength + CacheMessage.putOverhead(args.key, this.self), CacheMessage.handoffBatchOverhead + CacheMessage.handoffEntrySize(args.key, args.value.byteLength, this.self))
      if (size > this.options.maxMessageSize) {
        return new MycelError({ reason: 'ValueTooLarge', message: `a value of ${args.value.byteLength} bytes does not fit in one message (${this.options.maxMessageSize} bytes)` })
      }
    }
    // a write through this node: its near copy goes now, and no read begun before keeps one or is shared
    state.near?.written(args.key, undefined)
    state.writeBegins(args.key)
    // the caller's bytes are copied (it may reuse them); an increment has none
    const value = args.value.byteLength === 0 ? EMPTY : new Uint8Array(args.value)
    const expected = args.expected === undefined ? undefined : new Uint8Array(args.expected)
    this.atomics.start(op, state, args.op, args.key, expected, value, args.delta, args.ttlMs)
    return PENDING
  }

  // ---- requests -----------------------------------------------------------------------

  private answer(request: Request, answer: CacheMessage.Ack | CacheMessage.AckOlder | CacheMessage.GetResponse | NoAnswer): void {
    switch (request.kind) {
      case 'write':
        if (typeof answer === 'string' || answer._tag !== 'GetResponse') onWriteAnswer(this, request, answer)
        return
      case 'get':
        if (typeof answer === 'string' || answer._tag === 'GetResponse') onGetAnswer(this, request, answer)
        return
      case 'handoff':
        if (typeof answer === 'string' || answer._tag === 'Ack') this.rebalance.onAnswer(request, answer)
        return
      case 'atomic':
        if (typeof answer === 'string' || answer._tag !== 'GetResponse') this.atomics.onReplicaAnswer(request, answer)
        return
      case 'atomic-fetch':
        if (typeof answer === 'string' || answer._tag === 'GetResponse') this.atomics.onFetchAnswer(request, answer)
        return
    }
  }

  /** A message the shell could not send: what waits on it is asked again now, not at its timeout. */
  sendFailed(bucket: string, to: string, message: CacheMessage.CacheMessage, reason: string, now: number): void {
    this.advance(now)
    const id = 'id' in message ? message.id : 0
    if (message._tag === 'Atomic') this.atomics.callGone(message.id, to)
    const waiting = message._tag === 'Put' || message._tag === 'Delete' || message._tag === 'Get' || message._tag === 'NearGet' || message._tag === 'HandoffBatch' || message._tag === 'AtomicFetch'
    if (waiting && id !== 0) {
      const request = this.requests.get(id)
      if (request !== undefined && request.peer === to) {
        this.requests.take(id)
        this.answer(request, 'gone')
      }
    }
    this.log('Debug', 'cache send failed', { bucket, peer: to, error: reason })
  }

  /** A node refused a bucket's stream: it has no such bucket. What waits on it gets that answer now. */
  refused(bucket: string, node: string, now: number): void {
    this.advance(now)
    for (const request of this.requests.takeWhere((r) => r.peer === node && requestBucket(r) === bucket)) this.answer(request, 'notFound')
    this.atomics.refused(bucket, node)
    this.rebalance.forgetPeerBucket(node, bucket)
    this.log('Warning', 'a node has no such bucket', { bucket, peer: node })
  }

  // ---- incoming -----------------------------------------------------------------------

  receive(name: string, from: string, message: CacheMessage.CacheMessage, now: number): void {
    this.advance(now)
    if (this.closed) return
    switch (message._tag) {
      case 'Ack':
      case 'AckOlder':
      case 'GetResponse': {
        const request = this.requests.get(message.id)
        if (request === undefined || request.peer !== from) return
        this.requests.take(message.id)
        this.answer(request, message)
        return
      }
      case 'AtomicResponse':
        this.atomics.onResponse(from, message)
        return
      default:
        break
    }
    const bucket = this.buckets.get(name)
    if (bucket === undefined) return
    const store = bucket.store
    switch (message._tag) {
      case 'Put':
      case 'Delete': {
        // a `final` AtomicOps ahead of this message: this node's operations in it are done once it is stored
        const final = this.atomics.hasFinals ? this.atomics.takeFinal(bucket, from) : undefined
        if (!this.validTs(message.ts)) {
          bucket.refused++
          this.log('Warning', 'refused a write with an invalid version', { bucket: name, from, ts: message.ts })
          if (message.ack) this.send(name, from, { _tag: 'Ack', id: message.id, status: CacheMessage.AckStatus.Refused })
          return
        }
        this.observe(message.ts)
        const version = { ts: message.ts, node: message.node }
        const ttl = message.ttlMs === 0 ? undefined : message.ttlMs
        const stored = message._tag === 'Put' ? store.put(message.key, message.value, version, ttl) : store.delete(message.key, version, ttl)
        if (stored) {
          this.rebalance.strayed(bucket, message.key)
          this.rebalance.pump()
        }
        if (!message.ack) return
        const held = stored ? undefined : store.peek(message.key)
        if (held === undefined || (held.version.ts === version.ts && held.version.node === version.node)) {
          this.send(name, from, { _tag: 'Ack', id: message.id, status: CacheMessage.AckStatus.Stored })
          if (final !== undefined && message._tag === 'Put' && final.key === message.key) this.atomics.replicated(final)
        } else {
          this.send(name, from, { _tag: 'AckOlder', id: message.id, ts: held.version.ts, node: held.version.node })
        }
        return
      }
      case 'Atomic':
        this.atomics.onRequest(bucket, from, message)
        return
      case 'AtomicOps':
        bucket.records.merge(message.key, message.ops)
        this.atomics.onOps(bucket, from, message)
        return
      case 'NearInvalidate':
      case 'NearUpdate': {
        const near = bucket.near
        if (near === undefined) return
        // a version this node refuses says nothing of the order: the copy goes all the same
        const version = message.ts > 0 && this.validTs(message.ts) ? { ts: message.ts, node: message.node } : undefined
        if (message._tag === 'NearUpdate' && version !== undefined) near.update(message.key, message.value, version, now)
        else near.invalidate(message.key, version)
        return
      }
      case 'AtomicFetch':
      case 'NearGet':
      case 'Get': {
        if (message._tag === 'AtomicFetch') {
          // the records first, on the same stream, so they are there when the answer is
          sendRecords(this, bucket, from, message.key)
        }
        const { value, ts, node } = store.read(message.key, this.peerRead)
        this.peerRead.value = undefined
        const hit = value !== undefined
        // a peer that does not take what it is sent gets no more answers past its budget
        if (hit && this.overBudget(from, value.byteLength)) {
          bucket.overloaded++
          return
        }
        this.send(name, from, { _tag: 'GetResponse', id: message.id, status: hit ? CacheMessage.GetStatus.Hit : CacheMessage.GetStatus.Miss, value: hit ? value : EMPTY, ts, node })
        if (hit && message._tag === 'NearGet') bucket.readers.register(message.key, from, message.ttlMs, this.now)
        return
      }
      case 'Handoff':
      case 'HandoffBatch': {
        for (const e of message.entries) {
          if (!this.validTs(e.ts)) {
            bucket.refused++
            continue
          }
          this.observe(e.ts)
          if (store.merge(e.key, { value: e.tombstone ? undefined : e.value, version: { ts: e.ts, node: e.node }, expiresAt: this.now + e.ttlLeftMs })) {
            bucket.received++
            this.rebalance.strayed(bucket, e.key)
          }
        }
        this.rebalance.pump()
        if (message._tag === 'HandoffBatch') this.send(name, from, { _tag: 'Ack', id: message.id, status: CacheMessage.AckStatus.Stored })
        return
      }
      case 'HandoffDone': {
        if (message.epoch === LEAVING_EPOCH) {
          // the peer is leaving gracefully: keys are placed without it from now on
          if (!this.departed.has(from) && from !== this.self) {
            this.departed.add(from)
            this.log('Info', 'a node is leaving', { peer: from })
            this.membership(this.reported, this.now)
          }
          return
        }
        bucket.handoffFrom.add(from)
        this.checkReady()
        return
      }
      case 'SyncDigest':
        this.antiEntropy.onDigest(bucket, from, message)
        return
      case 'SyncVersions':
        this.antiEntropy.onVersions(bucket, from, message)
        return
      case 'BucketInfo': {
        const o = bucket.config
        if (message.ttlMs !== o.ttlMs || message.maxSize !== o.maxSize || message.replicas !== o.replicas) {
          this.log('Warning', 'bucket configured differently on another node', {
            bucket: name,
            from,
            theirs: { ttlMs: message.ttlMs, maxSize: message.maxSize, replicas: message.replicas },
            ours: { ttlMs: o.ttlMs, maxSize: o.maxSize, replicas: o.replicas }
          })
        }
        return
      }
    }
  }

  // ---- membership ---------------------------------------------------------------------

  /**
   * The member set changed: placement follows at once; requests to nodes that went away are
   * asked again of the new owners; the one rebalance state learns the change.
   */
  membership(nodes: ReadonlyArray<string>, now: number): void {
    this.advance(now)
    if (this.closed) return
    // a departing node places keys as if it had gone already
    for (const id of this.reported) if (id !== this.self && !nodes.includes(id) && !this.departed.has(id)) this.lost.add(id)
    for (const id of nodes) this.lost.delete(id)
    this.reported = [...nodes]
    for (const id of this.departed) if (!nodes.includes(id)) this.departed.delete(id)
    const after = [...new Set(nodes)].filter((n) => !(this.departing && n === this.self) && !this.departed.has(n)).sort()
    if (after.join('\u0000') === [...this.members].sort().join('\u0000')) return
    if (this.departing) {
      // a node that joined while this one leaves learns it first, or it would take the handoff for strays
      for (const peer of after) if (!this.members.includes(peer)) this.announceLeave(peer)
    }
    const old = new Placement()
    old.setNodes(this.members)
    this.members = after
    this.placement.setNodes(after)
    this.membershipChangedAt = this.now
    this.viewChanges++
    // owners may have changed: every near copy goes (simplest; reads in flight keep none either)
    for (const bucket of this.buckets.values()) bucket.near?.clear()
    const alive = new Set(after)
    for (const request of this.requests.takeWhere((r) => !alive.has(r.peer))) this.answer(request, 'gone')
    this.atomics.membershipChanged()
    this.rebalance.membershipChanged(old)
    this.antiEntropy.membershipChanged()
  }

  /**
   * A graceful leave begins: from now on this node places keys as if it had gone (the owners
   * after its departure), so every key it holds is queued to those owners, and what it is sent
   * meanwhile is passed on to them. It keeps its copies until it closes (it may still be asked
   * for them) and answers everything as before. `drained()` tells when every owner acknowledged.
   */
  leave(now: number): void {
    this.advance(now)
    if (this.closed || this.departing) return
    this.departing = true
    const others = this.members.filter((n) => n !== this.self)
    this.log('Info', 'leaving: handing every key to its owners after this node', { peers: others.length })
    if (others.length === 0) {
      this.awaitingPeers = this.lost.size > 0 && this.holdsKeys()
      if (this.awaitingPeers) this.log('Info', 'leaving with keys and no peer in view: waiting for lost peers to come back', { lost: [...this.lost] })
      return
    }
    // the others place keys without this node from now on, so what it hands them is theirs (not a
    // stray to give back); each bucket's announcement goes ahead of its batches on the same stream
    for (const peer of others) this.announceLeave(peer)
    this.membership(this.reported, this.now)
  }

  private announceLeave(peer: string): void {
    for (const name of this.buckets.keys()) this.send(name, peer, { _tag: 'HandoffDone', epoch: LEAVING_EPOCH })
  }

  /** True when a leaving node has nothing left to hand off: every batch sent and acknowledged (or no peer is left). */
  drained(): boolean {
    if (this.closed) return true
    if (!this.departing) return false
    const alone = this.members.every((n) => n === this.self)
    return alone ? !this.awaitingPeers : this.rebalance.idle
  }

  /** Some bucket holds a value or a tombstone. */
  private holdsKeys(): boolean {
    for (const bucket of this.buckets.values()) if (bucket.store.size > 0 || bucket.store.tombstoneCount > 0) return true
    return false
  }

  /** True while keys may still be on their way to new owners. */
  rebalancing(): boolean {
    return !this.readyFlag || this.now - this.membershipChangedAt < this.options.rebalanceWindowMs
  }

  // ---- time ---------------------------------------------------------------------------

  tick(now: number): void {
    this.advance(now)
    if (this.closed) return
    for (const request of this.requests.expire(this.now)) this.answer(request, 'timeout')
    this.atomics.expire(this.now)
    if (this.timers.length > 0) {
      const due = this.timers.filter((t) => t.at <= this.now)
      if (due.length > 0) {
        this.timers = this.timers.filter((t) => t.at > this.now)
        for (const t of due) t.run()
      }
    }
    this.rebalance.pump()
    if (!this.readyFlag) {
      this.checkReady()
      if (!this.readyFlag && this.now >= this.joinedAt + this.options.readyTimeoutMs) {
        this.readyFlag = true
        this.log('Warning', 'ready without every peer handoff', { waitedMs: this.options.readyTimeoutMs })
      }
    }
  }

  private checkReady(): void {
    if (this.readyFlag) return
    const peers = this.members.filter((id) => id !== this.self)
    // before the first discovery settles an empty peer list proves nothing
    if (peers.length === 0 && this.now - this.joinedAt < this.options.settleMs) return
    for (const bucket of this.buckets.values()) for (const peer of peers) if (!bucket.handoffFrom.has(peer)) return
    this.readyFlag = true
    this.log('Info', 'cache ready', { afterMs: this.now - this.joinedAt })
  }

  ready(now: number): boolean {
    this.advance(now)
    if (!this.readyFlag) this.checkReady()
    return this.readyFlag
  }

  /** Stops: every waiting operation fails with Closed; nothing is sent or logged after. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.timers = []
    this.antiEntropy.close()
    this.requests.takeWhere(() => true)
    this.atomics.close()
    for (const write of this.activeWrites.values()) {
      if (write.done) continue
      write.done = true
      this.fail(write.op, closedError())
    }
    this.activeWrites.clear()
    for (const bucket of this.buckets.values()) {
      for (const read of bucket.gets.values()) for (const op of read.ops) this.fail(op, closedError())
      bucket.gets.clear()
    }
    this.outputs.splice(0, this.outputs.length, ...this.outputs.filter((o) => o._tag === 'Done' || o._tag === 'Result' || o._tag === 'Fail'))
  }
}

const EMPTY = new Uint8Array(0)


const requestBucket = (r: Request): string => {
  switch (r.kind) {
    case 'write':
      return r.write.bucket.name
    case 'get':
      return r.read.bucket.name
    case 'handoff':
      return r.batch.bucket
    case 'atomic':
      return r.exec.bucket.name
    case 'atomic-fetch':
      return r.bucket.name
  }
}
