/**
 * Atomic operations (putIfAbsent, compareAndSet, increment) as steps of the engine.
 *
 * An operation runs at its key's primary (the first rendezvous owner). Another node sends the
 * primary an `Atomic` request and waits for its `AtomicResponse` (a deadline of two request
 * timeouts: the primary may first fetch the key, then replicate). When the primary left, or
 * answers NotPrimary (its view of the members differs), the caller asks the primary of its
 * current view again, with the same operation id, up to MAX_ATOMIC_ATTEMPTS times.
 *
 * At the primary an operation reads the value it holds, computes the new one and stores it with
 * a version above the one it holds; it then replicates it like a put (to every other owner; the
 * next owner's acknowledgement awaited, every owner's with writeConcern 'all'), each `Put`
 * preceded on the same stream by an `AtomicOps` with the operation's id and result, and answers
 * once acknowledged. When one owner's acknowledgement completes the replication (R = 2, or the
 * next owner without writeConcern 'all'), that owner's AtomicOps is `final`: once it stores the
 * Put after it (and acknowledges it Stored) it answers its own operations among the records
 * itself, and the primary sends it no AtomicResponse for them — a caller that is that owner
 * (always with R = 2 on two nodes) is answered after two one-way trips instead of four.
 * Operations on one key are applied one after the other in arrival order; replication of one
 * does not wait for the one before (a stream keeps their order, and the
 * later value contains the earlier one). The operations applied to a key until the engine's
 * outputs are next read (one received payload, the calls of one turn) share one replication:
 * one AtomicOps with every record, one Put of the last value, answered on its acknowledgement. An answer that changes nothing (false, NotInteger,
 * Overflow) waits until the operations applied before it on the key are acknowledged, so no
 * caller sees a state that may still be lost.
 *
 * Increments of one key that a node starts one after the other before the engine's outputs are
 * next read (the calls of one turn) go as one operation with the sum of their deltas
 * (`Gathered`): one request, one record, one id. They are concurrent — none has answered — so
 * taking effect together, in the order they were started, is a linearization of them: each
 * answers the count after its own delta (the combined result less the deltas started after it).
 * Only consecutive deltas of one sign and one lifetime go together, so every count in between is
 * a safe integer when the last one is; an Overflow of the sum sends each increment again alone.
 * The node's operations on a key still start in the order they were called: another operation
 * on the key (atomic, put, delete or get) first starts the increments gathered before it.
 *
 * Each operation carries an id (origin node, seq from the origin's hybrid clock). The primary
 * records the id and result of every operation it applied (`oplog.ts`), the other owners get the
 * records with the value, so a primary — the same or the next one after a failover — answers a
 * retry with the recorded result instead of applying it again.
 *
 * After a membership change (and until this node is ready) a primary fetches the key from the
 * other owners before its first operation on it (`AtomicFetch`), so a node that just became
 * primary continues from the newest value the owners hold and knows the operations they
 * recorded; operations on the key wait meanwhile.
 */
import { CacheMessage } from '@mycorrizal/wire'
import { MycelError } from '../MycelError.js'
import { ChurnMap } from './churn.js'
import type { BucketState } from './bucket.js'
import { closedError, type Host as Engine, type NoAnswer, type Request } from './host.js'
import { newer, type Version } from './store.js'
import { MAX_GONE_ATTEMPTS, RETRY_DELAY_MS } from './writes.js'

const S = CacheMessage.AtomicStatus
type Status = CacheMessage.AtomicStatus

/** Sends of an atomic operation to a primary (after one left or answered NotPrimary). */
export const MAX_ATOMIC_ATTEMPTS = 5
const MAX_CALL_ID = 0xffffffff

/**
 * How long a primary keeps the record of an operation it applied: longer than its caller may
 * ask again (every attempt waits two request timeouts, the delays between them grow by
 * RETRY_DELAY_MS), with a margin for clocks and queues. 2 s requests: 31.25 s.
 */
export const recordRetainMs = (requestTimeoutMs: number): number =>
  MAX_ATOMIC_ATTEMPTS * (2 * requestTimeoutMs + RETRY_DELAY_MS * MAX_ATOMIC_ATTEMPTS) + 10_000
const FETCH_BYTES = 64

/** An atomic operation as the primary runs it. */
export interface AtomicArgs {
  readonly op: CacheMessage.AtomicOp
  readonly key: string
  /** compareAndSet: the expected value; undefined = expected absent. */
  readonly expected: Uint8Array | undefined
  /** putIfAbsent, compareAndSet: the value to store. */
  readonly value: Uint8Array
  readonly delta: number
  readonly ttlMs: number | undefined
  readonly origin: string
  readonly seq: number
}

/** Where an outcome goes: a client operation of this node, or a peer's request. */
type Reply = { readonly op: number; readonly kind: CacheMessage.AtomicOp } | { readonly peer: string; readonly id: number }

interface Outcome {
  readonly status: Status
  readonly result: number
}

/** An operation applied at this primary: its record and who waits for its answer. */
export interface AppliedOp {
  readonly record: CacheMessage.AtomicRecord
  readonly replies: Array<Reply>
}

/**
 * One replication of a key at this primary: the operations applied to it since the engine's
 * outputs were last read (one input, or a batch of inputs the shell handles in one go), sent to
 * the other owners as one `AtomicOps` with every record and one `Put` of the last value (which
 * contains the earlier ones). Each operation is answered once that Put is acknowledged.
 */
export interface AtomicExec {
  readonly bucket: BucketState
  readonly key: string
  /** The last operation's value and version (what the replicas store). */
  value: Uint8Array
  version: Version
  /** The lifetime given to the replicas (undefined: the bucket's). */
  ttlMs: number | undefined
  readonly ops: Array<AppliedOp>
  /** Answers that wait for this replication's end. */
  readonly followers: Array<() => void>
  /** Sent once: no operation joins it after. */
  sent: boolean
  /**
   * The one owner whose acknowledgement this replication waits for, when there is one: its
   * AtomicOps goes `final`, so once it stores the Put it answers its own operations among them,
   * and a Stored acknowledgement from it needs no AtomicResponse for them.
   */
  final: string | undefined
  generation: number
  attempts: number
  waiting: number
  done: boolean
}

/** A key's atomic operations at this primary. */
interface KeyState {
  /** AtomicFetch answers awaited. */
  fetching: number
  readonly queue: Array<{ readonly args: AtomicArgs; readonly reply: Reply }>
  /** Replications under way (applied, not yet acknowledged), in order. */
  readonly inflight: ChurnMap<AtomicExec, AtomicExec>
  /** The replication still gathering operations (not sent yet), if any. */
  open: AtomicExec | undefined
}

/** A `final` AtomicOps received: completes this node's operations once the Put after it is stored. */
export interface FinalOps {
  readonly bucket: BucketState
  readonly from: string
  readonly key: string
  readonly ops: ReadonlyArray<CacheMessage.AtomicRecord>
}

/** Consecutive increments of one key, of one sign and lifetime, started in one turn: one operation for all. */
interface Gathered {
  readonly bucket: BucketState
  readonly key: string
  readonly ttlMs: number | undefined
  /** The sum of the deltas: below 0 exactly when they are (they share a sign). */
  delta: number
  readonly parts: Array<{ readonly op: number; readonly delta: number }>
}

/** An operation of this node sent to a primary. */
interface AtomicCall {
  readonly op: number
  readonly bucket: BucketState
  readonly args: AtomicArgs
  attempts: number
  id: number
  peer: string
  deadline: number
}

/** Records per AtomicOps message at most (about 100 KiB with short node ids). */
export const RECORDS_PER_MESSAGE = 4_096

/** Sends a key's records to `to`, in messages of at most RECORDS_PER_MESSAGE. */
export const sendRecords = (e: Engine, bucket: BucketState, to: string, key: string): void => {
  const ops = bucket.records.list(key)
  if (ops === undefined) return
  for (let i = 0; i < ops.length; i += RECORDS_PER_MESSAGE) e.send(bucket.name, to, { _tag: 'AtomicOps', key, ops: ops.slice(i, i + RECORDS_PER_MESSAGE) })
}

export type AtomicRequest = Request & { readonly kind: 'atomic' | 'atomic-fetch' }

const equal = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

const INTEGER = /^-?(0|[1-9][0-9]*)$/
const decoder = new TextDecoder()
const encoder = new TextEncoder()

/** A stored count (decimal ASCII, as Redis keeps it), or undefined when it is not one. */
export const parseCount = (value: Uint8Array): number | undefined => {
  if (value.byteLength === 0 || value.byteLength > 17) return undefined
  const text = decoder.decode(value)
  if (!INTEGER.test(text)) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) ? n : undefined
}

/** The typed error of a failed outcome. */
export const atomicError = (status: Status, bucket: string, key: string, detail = ''): MycelError => {
  const where = `'${key}' in '${bucket}'`
  switch (status) {
    case S.NotInteger:
      return new MycelError({ reason: 'NotInteger', message: `the value of ${where} is not an integer` })
    case S.Overflow:
      return new MycelError({ reason: 'Overflow', message: `incrementing ${where} leaves the safe integers (±2^53 - 1)` })
    case S.BucketNotFound:
      return new MycelError({ reason: 'BucketNotFound', message: `the primary of ${where} has no bucket '${bucket}'` })
    case S.Timeout:
      return new MycelError({ reason: 'Timeout', message: `the atomic operation on ${where} was not acknowledged in time${detail}` })
    case S.Conflict:
      return new MycelError({ reason: 'Conflict', message: `an owner of ${where} holds a newer version than the primary: the operation may not have taken effect` })
    case S.Overloaded:
      return new MycelError({ reason: 'Overloaded', message: `an owner of ${where} has too many bytes in flight${detail}` })
    case S.Closed:
      return closedError()
    default:
      return new MycelError({ reason: 'Unavailable', message: `no primary of ${where} could apply and replicate the operation${detail}` })
  }
}

export class Atomics {
  /** This node's operations sent to primaries, by request id, in deadline order. */
  private readonly calls = new ChurnMap<number, AtomicCall>()
  /** The same calls by operation seq (unique per node: the hybrid clock), to answer them from a `final` AtomicOps. */
  private readonly bySeq = new ChurnMap<number, AtomicCall>()
  /** `final` AtomicOps received whose Put has not arrived yet (one per bucket and sender at most). */
  private finals: Array<FinalOps> = []
  private nextId = 1
  private readonly keys = new Map<BucketState, Map<string, KeyState>>()
  /** Replications not sent yet, in the order their keys were first written. */
  private pending: Array<AtomicExec> = []
  /**
   * Increments started since the outputs were last read, by bucket name and key, in the order
   * started (a bucket with none has no entry). Two levels, not one joined string: the caller's
   * key is looked up as it came, with the hash the string already carries.
   */
  private gathering = new Map<string, Map<string, Array<Gathered>>>()
  /** Gathered increments under way, by the (negative) operation number they go as. */
  private readonly gathered = new ChurnMap<number, Gathered>()
  private nextGathered = -1

  constructor(private readonly e: Engine) {}

  // ---- caller side --------------------------------------------------------------------

  /** Starts an operation of a client of this node; it completes through `result`/`fail`. */
  start(op: number, bucket: BucketState, kind: CacheMessage.AtomicOp, key: string, expected: Uint8Array | undefined, value: Uint8Array, delta: number, ttlMs: number | undefined): void {
    if (kind !== CacheMessage.AtomicOp.Increment) {
      this.before(bucket.name, key)
      return this.startNow(op, bucket, kind, key, expected, value, delta, ttlMs)
    }
    let byKey = this.gathering.get(bucket.name)
    if (byKey === undefined) this.gathering.set(bucket.name, (byKey = new Map()))
    let groups = byKey.get(key)
    if (groups === undefined) byKey.set(key, (groups = []))
    let g = groups[groups.length - 1]
    if (g === undefined || (g.delta < 0) !== (delta < 0) || g.ttlMs !== ttlMs || !Number.isSafeInteger(g.delta + delta)) {
      groups.push((g = { bucket, key, ttlMs, delta: 0, parts: [] }))
    }
    g.delta += delta
    g.parts.push({ op, delta })
  }

  /** Another operation on a key starts: the increments gathered on it before start first. */
  before(bucket: string, key: string): void {
    if (this.gathering.size > 0) this.startGatheredOf(bucket, key)
  }

  private startGatheredOf(bucket: string, key: string): void {
    const byKey = this.gathering.get(bucket)
    const groups = byKey?.get(key)
    if (byKey === undefined || groups === undefined) return
    byKey.delete(key)
    if (byKey.size === 0) this.gathering.delete(bucket)
    for (let i = 0; i < groups.length; i++) this.startGathered(groups[i]!)
  }

  private startNow(op: number, bucket: BucketState, kind: CacheMessage.AtomicOp, key: string, expected: Uint8Array | undefined, value: Uint8Array, delta: number, ttlMs: number | undefined): void {
    const e = this.e
    const args: AtomicArgs = { op: kind, key, expected, value, delta, ttlMs, origin: e.self, seq: e.nextTs() }
    this.route({ op, bucket, args, attempts: 0, id: 0, peer: '', deadline: 0 })
  }

  /** Starts gathered increments as one operation (a lone one as itself). */
  private startGathered(g: Gathered): void {
    const increment = CacheMessage.AtomicOp.Increment
    if (g.parts.length === 1) return this.startNow(g.parts[0]!.op, g.bucket, increment, g.key, undefined, EMPTY, g.delta, g.ttlMs)
    let op = this.nextGathered
    while (this.gathered.has(op)) op = op <= -MAX_CALL_ID ? -1 : op - 1
    this.nextGathered = op <= -MAX_CALL_ID ? -1 : op - 1
    this.gathered.set(op, g)
    g.bucket.incrementsGathered += g.parts.length
    this.startNow(op, g.bucket, increment, g.key, undefined, EMPTY, g.delta, g.ttlMs)
  }

  /** True for the number of gathered increments under way (the engine hands their outcome to `settleGathered`). */
  static isGathered(op: number): boolean {
    return op < 0
  }

  /**
   * The outcome of gathered increments: each answers the count after its own delta; a failure
   * fails each, except an Overflow of the sum, after which each goes again alone.
   */
  settleGathered(op: number, error: MycelError | undefined, count: number): void {
    const g = this.gathered.get(op)
    if (g === undefined) return
    this.gathered.delete(op)
    const e = this.e
    const { parts } = g
    if (error === undefined) {
      const counts: Array<number> = new Array(parts.length)
      let c = count
      for (let i = parts.length - 1; i >= 0; i--) {
        counts[i] = c
        c -= parts[i]!.delta
      }
      for (let i = 0; i < parts.length; i++) e.result(parts[i]!.op, counts[i]!)
      return
    }
    if (error.reason === 'Overflow' && !e.closed) {
      for (const part of parts) this.startNow(part.op, g.bucket, CacheMessage.AtomicOp.Increment, g.key, undefined, EMPTY, part.delta, g.ttlMs)
      return
    }
    for (const part of parts) e.fail(part.op, error)
  }

  private route(call: AtomicCall): void {
    const e = this.e
    if (e.closed) return e.fail(call.op, closedError())
    if (e.buckets.get(call.bucket.name) !== call.bucket) return e.fail(call.op, new MycelError({ reason: 'BucketNotFound', message: `no bucket '${call.bucket.name}' on this node` }))
    const { bucket, args } = call
    const owners = e.placement.owners(bucket.name, args.key, bucket.config.replicas)
    const primary = owners[0]
    if (primary === undefined || primary === e.self) return this.execute(bucket, args, { op: call.op, kind: args.op })
    const bytes = args.value.byteLength + (args.expected?.byteLength ?? 0) + args.key.length * 3 + 64
    if (e.overBudget(primary, bytes)) return e.fail(call.op, e.overloaded(bucket, primary))
    call.id = this.allocate()
    call.peer = primary
    call.deadline = e.now + 2 * e.options.requestTimeoutMs
    this.calls.set(call.id, call)
    this.bySeq.set(args.seq, call)
    e.send(bucket.name, primary, {
      _tag: 'Atomic',
      id: call.id,
      op: args.op,
      key: args.key,
      origin: args.origin,
      seq: args.seq,
      hasExpected: args.expected !== undefined,
      expected: args.expected ?? EMPTY,
      value: args.value,
      delta: args.delta,
      ttlMs: args.ttlMs ?? 0
    })
  }

  /** Takes the call out of the tables. */
  private take(call: AtomicCall): void {
    this.calls.delete(call.id)
    if (this.bySeq.get(call.args.seq) === call) this.bySeq.delete(call.args.seq)
  }

  private allocate(): number {
    for (;;) {
      const id = this.nextId
      this.nextId = id >= MAX_CALL_ID ? 1 : id + 1
      if (!this.calls.has(id)) return id
    }
  }

  /** Asks again (same operation id) after a delay, or fails once the attempts ran out. */
  private retry(call: AtomicCall, why: string): void {
    const e = this.e
    call.attempts++
    if (call.attempts >= MAX_ATOMIC_ATTEMPTS || e.closed) {
      return e.fail(call.op, e.closed ? closedError() : atomicError(S.Unavailable, call.bucket.name, call.args.key, ` (${call.attempts} attempts, last: ${why})`))
    }
    e.later(e.now + RETRY_DELAY_MS * call.attempts, () => this.route(call))
  }

  onResponse(from: string, m: CacheMessage.AtomicResponse): void {
    const call = this.calls.get(m.id)
    if (call === undefined || call.peer !== from) return
    this.take(call)
    const e = this.e
    switch (m.status) {
      case S.Applied:
      case S.NotApplied:
        return e.result(call.op, call.args.op === CacheMessage.AtomicOp.Increment ? m.result : m.status === S.Applied)
      case S.NotPrimary:
        return this.retry(call, `'${from}' is not the primary`)
      default:
        return e.fail(call.op, atomicError(m.status, call.bucket.name, call.args.key))
    }
  }

  /** The request could not be sent, or its peer left: ask the primary of the new view. */
  callGone(id: number, peer: string): void {
    const call = this.calls.get(id)
    if (call === undefined || call.peer !== peer) return
    this.take(call)
    this.retry(call, `'${peer}' left or could not be reached`)
  }

  /** Members changed: calls to nodes that left go again; keys are fetched again before their next operation. */
  membershipChanged(): void {
    const alive = new Set(this.e.members)
    for (const call of [...this.calls.values()]) if (!alive.has(call.peer)) this.callGone(call.id, call.peer)
    for (const bucket of this.e.buckets.values()) bucket.fetched.clear()
  }

  /** A node has no such bucket. */
  refused(bucket: string, node: string): void {
    for (const call of [...this.calls.values()]) {
      if (call.peer !== node || call.bucket.name !== bucket) continue
      this.take(call)
      this.e.fail(call.op, atomicError(S.BucketNotFound, bucket, call.args.key))
    }
  }

  nextDeadline(): number | undefined {
    if (this.calls.size === 0) return undefined
    for (const call of this.calls.values()) return call.deadline
    return undefined
  }

  expire(now: number): void {
    const due: Array<AtomicCall> = []
    for (const call of this.calls.values()) {
      if (call.deadline > now) break
      due.push(call)
    }
    for (const call of due) {
      this.take(call)
      call.bucket.timeouts++
      this.e.fail(call.op, atomicError(S.Timeout, call.bucket.name, call.args.key, ` (no answer from '${call.peer}' within ${2 * this.e.options.requestTimeoutMs} ms)`))
    }
  }

  /** An AtomicOps arrived (its records are merged): a `final` one waits for the Put after it. */
  onOps(bucket: BucketState, from: string, m: CacheMessage.AtomicOps): void {
    if (m.final !== true) return
    const finals = this.finals
    for (let i = 0; i < finals.length; i++) {
      if (finals[i]!.bucket === bucket && finals[i]!.from === from) {
        finals[i] = { bucket, from, key: m.key, ops: m.ops }
        return
      }
    }
    finals.push({ bucket, from, key: m.key, ops: m.ops })
  }

  /** True when a `final` AtomicOps waits for its Put. */
  get hasFinals(): boolean {
    return this.finals.length > 0
  }

  /** A Put or Delete from `from` arrived: the `final` AtomicOps ahead of it, if any (taken: it applies to that message only). */
  takeFinal(bucket: BucketState, from: string): FinalOps | undefined {
    const finals = this.finals
    for (let i = 0; i < finals.length; i++) {
      const f = finals[i]!
      if (f.bucket !== bucket || f.from !== from) continue
      finals.splice(i, 1)
      return f
    }
    return undefined
  }

  /**
   * The Put after a `final` AtomicOps is stored here and acknowledged Stored: every owner the
   * primary waited for holds the value, so this node's operations among the records are done
   * (with their recorded results), whichever primary they were last sent to.
   */
  replicated(final: FinalOps): void {
    const e = this.e
    for (const r of final.ops) {
      if (r.origin !== e.self) continue
      const call = this.bySeq.get(r.seq)
      if (call === undefined || call.bucket !== final.bucket || call.args.key !== final.key) continue
      this.take(call)
      e.result(call.op, call.args.op === CacheMessage.AtomicOp.Increment ? r.result : true)
    }
  }

  // ---- primary side -------------------------------------------------------------------

  onRequest(bucket: BucketState, from: string, m: CacheMessage.Atomic): void {
    const args: AtomicArgs = {
      op: m.op,
      key: m.key,
      expected: m.hasExpected ? m.expected : undefined,
      value: m.value,
      delta: m.delta,
      ttlMs: m.ttlMs === 0 ? undefined : m.ttlMs,
      origin: m.origin,
      seq: m.seq
    }
    this.execute(bucket, args, { peer: from, id: m.id })
  }

  private reply(bucket: BucketState, key: string, r: Reply, outcome: Outcome): void {
    const e = this.e
    if ('peer' in r) {
      e.send(bucket.name, r.peer, { _tag: 'AtomicResponse', id: r.id, status: outcome.status, result: outcome.result })
      return
    }
    if (outcome.status === S.Applied || outcome.status === S.NotApplied) {
      e.result(r.op, r.kind === CacheMessage.AtomicOp.Increment ? outcome.result : outcome.status === S.Applied)
    } else {
      e.fail(r.op, atomicError(outcome.status, bucket.name, key))
    }
  }

  private keyState(bucket: BucketState, key: string): KeyState {
    let byKey = this.keys.get(bucket)
    if (byKey === undefined) this.keys.set(bucket, (byKey = new Map()))
    let ks = byKey.get(key)
    if (ks === undefined) byKey.set(key, (ks = { fetching: 0, queue: [], inflight: new ChurnMap(), open: undefined }))
    return ks
  }

  private release(bucket: BucketState, key: string, ks: KeyState): void {
    if (ks.fetching > 0 || ks.queue.length > 0 || ks.inflight.size > 0) return
    const byKey = this.keys.get(bucket)
    byKey?.delete(key)
    if (byKey?.size === 0) this.keys.delete(bucket)
  }

  private execute(bucket: BucketState, args: AtomicArgs, reply: Reply): void {
    const e = this.e
    const { key } = args
    if (e.closed) return this.reply(bucket, key, reply, { status: S.Closed, result: 0 })
    const owners = e.placement.owners(bucket.name, key, bucket.config.replicas)
    if (owners.length > 0 && owners[0] !== e.self) {
      // the members changed while the operation waited here: a caller of this node asks the new primary
      if ('peer' in reply) return this.reply(bucket, key, reply, { status: S.NotPrimary, result: 0 })
      return this.route({ op: reply.op, bucket, args, attempts: 1, id: 0, peer: '', deadline: 0 })
    }
    const ks = this.keyState(bucket, key)
    // a retry of an operation applied already: its recorded result (once replicated)
    const record = bucket.records.find(key, args.origin, args.seq)
    if (record !== undefined) {
      bucket.atomicReplays++
      for (const exec of ks.inflight.values()) {
        for (const applied of exec.ops) {
          if (applied.record.origin === args.origin && applied.record.seq === args.seq) {
            applied.replies.push(reply)
            return
          }
        }
      }
      this.release(bucket, key, ks)
      return this.reply(bucket, key, reply, { status: S.Applied, result: record.result })
    }
    if (ks.fetching > 0 || ks.queue.length > 0) {
      ks.queue.push({ args, reply })
      return
    }
    if (owners.length > 1 && e.rebalancing() && !bucket.fetched.has(key)) {
      ks.queue.push({ args, reply })
      this.fetch(bucket, key, ks, owners)
      return
    }
    this.apply(bucket, ks, args, reply)
  }

  /** Asks the other owners for their copy of the key; the key's operations wait for the answers. */
  private fetch(bucket: BucketState, key: string, ks: KeyState, owners: ReadonlyArray<string>): void {
    const e = this.e
    for (const owner of owners) {
      if (owner === e.self || e.overBudget(owner, FETCH_BYTES)) continue
      const id = e.requests.allocate()
      e.requests.add({ id, peer: owner, deadline: e.now + e.options.requestTimeoutMs, bytes: FETCH_BYTES, kind: 'atomic-fetch', bucket, key })
      ks.fetching++
      e.send(bucket.name, owner, { _tag: 'AtomicFetch', id, key })
    }
    if (ks.fetching === 0) this.fetched(bucket, key, ks)
  }

  onFetchAnswer(request: Request & { readonly kind: 'atomic-fetch' }, answer: CacheMessage.GetResponse | NoAnswer): void {
    const e = this.e
    const { bucket, key } = request
    if (typeof answer !== 'string' && answer.status !== CacheMessage.GetStatus.BucketNotFound && answer.ts > 0) {
      if (e.validTs(answer.ts)) {
        e.observe(answer.ts)
        const hit = answer.status === CacheMessage.GetStatus.Hit
        bucket.store.merge(key, { value: hit ? answer.value : undefined, version: { ts: answer.ts, node: answer.node }, expiresAt: e.now + bucket.config.ttlMs })
      } else {
        bucket.refused++
      }
    }
    const ks = this.keys.get(bucket)?.get(key)
    if (ks === undefined || ks.fetching === 0) return
    ks.fetching--
    if (ks.fetching === 0) this.fetched(bucket, key, ks)
  }

  private fetched(bucket: BucketState, key: string, ks: KeyState): void {
    if (this.e.buckets.get(bucket.name) === bucket) bucket.fetched.add(key)
    const queued = ks.queue.splice(0, ks.queue.length)
    for (let i = 0; i < queued.length; i++) {
      const { args, reply } = queued[i]!
      if (ks.fetching > 0 || ks.queue.length > 0) ks.queue.push({ args, reply })
      else this.execute(bucket, args, reply)
    }
    this.release(bucket, key, ks)
  }

  /** Computes and stores the new value, then replicates it; or answers at once when nothing changes. */
  private apply(bucket: BucketState, ks: KeyState, args: AtomicArgs, reply: Reply): void {
    const e = this.e
    const { key } = args
    const held = bucket.store.peek(key)
    const current = held?.value
    let next: Uint8Array
    let result: number
    let ttlMs = args.ttlMs
    switch (args.op) {
      case CacheMessage.AtomicOp.PutIfAbsent:
        if (current !== undefined) return this.unchanged(bucket, key, ks, reply, { status: S.NotApplied, result: 0 })
        next = new Uint8Array(args.value)
        result = 1
        break
      case CacheMessage.AtomicOp.CompareAndSet: {
        const match = args.expected === undefined ? current === undefined : current !== undefined && equal(current, args.expected)
        if (!match) return this.unchanged(bucket, key, ks, reply, { status: S.NotApplied, result: 0 })
        next = new Uint8Array(args.value)
        result = 1
        break
      }
      default: {
        const base = current === undefined ? 0 : parseCount(current)
        if (base === undefined) return this.unchanged(bucket, key, ks, reply, { status: S.NotInteger, result: 0 })
        const sum = base + args.delta
        if (!Number.isSafeInteger(args.delta) || !Number.isSafeInteger(sum)) return this.unchanged(bucket, key, ks, reply, { status: S.Overflow, result: 0 })
        next = encoder.encode(String(sum))
        result = sum
        // a count keeps its lifetime unless one is given
        if (ttlMs === undefined && current !== undefined) ttlMs = Math.max(1, Math.ceil(held!.expiresAt - e.now))
      }
    }
    const version: Version = { ts: e.nextTs(held === undefined ? 0 : held.version.ts + 1), node: e.self }
    bucket.store.put(key, next, version, ttlMs)
    const record: CacheMessage.AtomicRecord = { origin: args.origin, seq: args.seq, result }
    bucket.records.add(key, record)
    bucket.atomics++
    const applied: AppliedOp = { record, replies: [reply] }
    const open = ks.open
    if (open !== undefined) {
      // a later value contains the earlier one: the key's replication carries this one too
      open.value = next
      open.version = version
      open.ttlMs = ttlMs
      open.ops.push(applied)
      return
    }
    const exec: AtomicExec = { bucket, key, value: next, version, ttlMs, ops: [applied], followers: [], sent: false, final: undefined, generation: 0, attempts: 0, waiting: 0, done: false }
    ks.inflight.set(exec, exec)
    ks.open = exec
    this.pending.push(exec)
  }

  /** True when applied operations wait for `sendPending`. */
  get hasPending(): boolean {
    return this.pending.length > 0 || this.gathering.size > 0
  }

  /** Starts the increments gathered since the outputs were last read, then sends the replications: one per key. */
  sendPending(): void {
    if (this.gathering.size > 0) {
      const gathering = this.gathering
      this.gathering = new Map()
      for (const byKey of gathering.values()) for (const groups of byKey.values()) for (let i = 0; i < groups.length; i++) this.startGathered(groups[i]!)
    }
    const pending = this.pending
    if (pending.length === 0) return
    this.pending = []
    for (let i = 0; i < pending.length; i++) {
      const exec = pending[i]!
      exec.sent = true
      const ks = this.keys.get(exec.bucket)?.get(exec.key)
      if (ks !== undefined && ks.open === exec) ks.open = undefined
      if (!exec.done) this.replicate(exec)
    }
  }

  /** An answer that changes nothing: given once the operations applied before it are acknowledged. */
  private unchanged(bucket: BucketState, key: string, ks: KeyState, reply: Reply, outcome: Outcome): void {
    let left = ks.inflight.size
    if (left === 0) {
      this.release(bucket, key, ks)
      return this.reply(bucket, key, reply, outcome)
    }
    for (const exec of ks.inflight.values()) {
      exec.followers.push(() => {
        if (--left === 0) this.reply(bucket, key, reply, outcome)
      })
    }
  }

  /** Sends the value, with the operation's record ahead of it, to the other owners. */
  private replicate(exec: AtomicExec): void {
    const e = this.e
    const { bucket, key } = exec
    if (e.closed) return this.finish(exec, { status: S.Closed, result: 0 })
    const others = e.placement.owners(bucket.name, key, bucket.config.replicas).filter((o) => o !== e.self)
    const bytes = exec.value.byteLength + key.length * 3 + 64
    const all = bucket.config.writeConcern === 'all'
    exec.generation++
    exec.waiting = 0
    // the one owner whose acknowledgement completes the replication answers its own operations
    exec.final = others.length > 0 && (!all || others.length === 1) ? others[0] : undefined
    for (let i = 0; i < others.length; i++) {
      const owner = others[i]!
      // the next owner (the new primary, when this node is no longer it), or every owner with 'all'
      const needed = all || i === 0
      if (e.overBudget(owner, bytes)) {
        if (needed) return this.finish(exec, { status: S.Overloaded, result: 0 }, e.overloaded(bucket, owner))
        continue
      }
      sendOps(e, bucket.name, owner, key, exec.ops, owner === exec.final)
      const id = e.requests.allocate()
      e.requests.add({ id, peer: owner, deadline: e.now + e.options.requestTimeoutMs, bytes, kind: 'atomic', exec, generation: exec.generation, needed })
      if (needed) exec.waiting++
      e.send(bucket.name, owner, { _tag: 'Put', id, key, value: exec.value, ts: exec.version.ts, node: exec.version.node, ttlMs: exec.ttlMs ?? 0, ack: true })
    }
    if (exec.waiting === 0) this.finish(exec, APPLIED)
  }

  onReplicaAnswer(request: Request & { readonly kind: 'atomic' }, answer: CacheMessage.Ack | CacheMessage.AckOlder | NoAnswer): void {
    const exec = request.exec
    if (exec.done || request.generation !== exec.generation || !request.needed) return
    const e = this.e
    const { bucket } = exec
    if (answer === 'timeout') {
      bucket.timeouts++
      return this.finish(exec, { status: S.Timeout, result: 0 })
    }
    if (answer === 'notFound') return this.finish(exec, { status: S.BucketNotFound, result: 0 })
    if (answer === 'gone') {
      exec.generation++
      exec.attempts++
      if (exec.attempts >= MAX_GONE_ATTEMPTS || e.closed) return this.finish(exec, { status: e.closed ? S.Closed : S.Unavailable, result: 0 })
      e.later(e.now + RETRY_DELAY_MS * exec.attempts, () => {
        if (!exec.done) this.replicate(exec)
      })
      return
    }
    if (answer._tag === 'AckOlder') {
      // the owner holds a newer version: fine when this node holds it too (a later operation
      // built on this one); otherwise a write this primary has not seen supersedes it there
      const held = bucket.store.peek(exec.key)
      const version = { ts: answer.ts, node: answer.node }
      if (held !== undefined && !newer(version, held.version)) return this.stored(exec)
      return this.finish(exec, { status: S.Conflict, result: 0 })
    }
    switch (answer.status) {
      case CacheMessage.AckStatus.Stored:
        return this.stored(exec, request.peer)
      case CacheMessage.AckStatus.BucketNotFound:
        return this.finish(exec, { status: S.BucketNotFound, result: 0 })
      case CacheMessage.AckStatus.Refused:
        bucket.refused++
        return this.finish(exec, { status: S.Unavailable, result: 0 })
      default:
        return this.finish(exec, { status: S.Conflict, result: 0 })
    }
  }

  /** An owner stored the value; `peer` when it acknowledged Stored (a `final` owner then answered its own operations). */
  private stored(exec: AtomicExec, peer?: string): void {
    exec.waiting--
    if (exec.waiting === 0) this.finish(exec, APPLIED, undefined, peer !== undefined && peer === exec.final ? peer : undefined)
  }

  /** Answers every operation of the replication; `answered`: a peer that answered its own operations (no AtomicResponse to it). */
  private finish(exec: AtomicExec, outcome: Outcome, error?: MycelError, answered?: string): void {
    if (exec.done) return
    exec.done = true
    const { bucket, key } = exec
    const ks = this.keys.get(bucket)?.get(key)
    ks?.inflight.delete(exec)
    if (ks !== undefined && ks.open === exec) ks.open = undefined
    for (const applied of exec.ops) {
      // each operation's own result when applied; the failure for every one otherwise
      const own = outcome === APPLIED ? { status: S.Applied, result: applied.record.result } : outcome
      for (const r of applied.replies) {
        if (answered !== undefined && 'peer' in r && r.peer === answered) continue
        if (error !== undefined && !('peer' in r)) this.e.fail(r.op, error)
        else this.reply(bucket, key, r, own)
      }
    }
    for (const f of exec.followers) f()
    if (ks !== undefined) this.release(bucket, key, ks)
  }

  /** Stops: every waiting operation fails with Closed. */
  close(): void {
    const e = this.e
    for (const call of this.calls.values()) e.fail(call.op, closedError())
    this.calls.clear()
    this.bySeq.clear()
    this.finals = []
    for (const byKey of this.keys.values()) {
      for (const ks of byKey.values()) {
        for (const { reply } of ks.queue) if (!('peer' in reply)) e.fail(reply.op, closedError())
        ks.queue.length = 0
        for (const exec of [...ks.inflight.values()]) this.finish(exec, { status: S.Closed, result: 0 })
      }
    }
    this.keys.clear()
    this.pending = []
    const gathering = [...this.gathering.values()]
    this.gathering = new Map()
    for (const byKey of gathering) for (const groups of byKey.values()) for (const g of groups) for (const part of g.parts) e.fail(part.op, closedError())
  }
}

const EMPTY = new Uint8Array(0)
/** The outcome of a replication every owner needed acknowledged (each operation answers its own result). */
const APPLIED: Outcome = { status: S.Applied, result: 0 }

/** Sends the records of `ops` to `to`, in messages of at most RECORDS_PER_MESSAGE; the last one `final` when asked. */
const sendOps = (e: Engine, bucket: string, to: string, key: string, ops: ReadonlyArray<AppliedOp>, final: boolean): void => {
  for (let i = 0; i < ops.length; i += RECORDS_PER_MESSAGE) {
    const n = Math.min(RECORDS_PER_MESSAGE, ops.length - i)
    const records: Array<CacheMessage.AtomicRecord> = new Array(n)
    for (let j = 0; j < n; j++) records[j] = ops[i + j]!.record
    e.send(bucket, to, { _tag: 'AtomicOps', key, ops: records, final: final && i + n >= ops.length })
  }
}
