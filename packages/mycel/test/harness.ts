/**
 * A deterministic test network of cache engines: messages go through the wire codec, in order
 * per (from, to), delivered when the test says; each node has its own clock offset; sends over
 * the maximum message size fail as they do on the real transport.
 */
import { CacheMessage } from '@mycorrizal/wire'
import { Engine, type EngineOptions, PENDING } from '../src/internal/engine.js'
import type { BucketConfig } from '../src/internal/bucket.js'
import type { MycelError } from '../src/MycelError.js'

export type Result =
  | { readonly ok: true; readonly value: Uint8Array | undefined; readonly result?: number | boolean }
  | { readonly ok: false; readonly error: MycelError }

interface InFlight {
  readonly from: string
  readonly to: string
  readonly bucket: string
  readonly bytes: Uint8Array
}

export const T0 = 1_760_000_000_000

export class Net {
  now = T0
  readonly engines = new Map<string, Engine>()
  readonly skew = new Map<string, number>()
  readonly results = new Map<number, Result>()
  readonly logs: Array<{ node: string; level: string; message: string }> = []
  private queue: Array<InFlight> = []
  private nextOp = 1
  /** Return true to drop a message. */
  drop: (m: { from: string; to: string; message: CacheMessage.CacheMessage }) => boolean = () => false
  /** Return true to hold a message back (it stays queued, in order). */
  hold: ((m: { from: string; to: string; message: CacheMessage.CacheMessage }) => boolean) | undefined = undefined
  sent = 0
  oversized = 0

  constructor(readonly defaults: Partial<EngineOptions> = {}) {}

  clock(node: string): number {
    return this.now + (this.skew.get(node) ?? 0)
  }

  add(id: string, options: Partial<EngineOptions> = {}): Engine {
    const engine = new Engine(
      {
        self: id,
        maxMessageSize: 16 * 1024 * 1024,
        requestTimeoutMs: 2_000,
        readyTimeoutMs: 10_000,
        settleMs: 1_000,
        rebalanceWindowMs: 10_000,
        handoffBatch: 256,
        handoffBatchBytes: 1024 * 1024,
        maxPeerBytes: 32 * 1024 * 1024,
        maxClockAheadMs: 3_600_000,
        syncIntervalMs: 5_000,
        syncDelayMs: 1_000,
        ...this.defaults,
        ...options
      },
      [...this.engines.keys(), id],
      this.clock(id)
    )
    this.engines.set(id, engine)
    return engine
  }

  node(id: string): Engine {
    return this.engines.get(id)!
  }

  /** Every engine learns the member set `ids`; an engine not in it is stopped (it left or crashed). */
  members(ids: ReadonlyArray<string>): void {
    for (const [id, e] of this.engines) {
      if (ids.includes(id)) e.membership(ids, this.clock(id))
      else e.close()
    }
    this.run()
  }

  createBucket(name: string, config: Partial<BucketConfig> = {}, on: ReadonlyArray<string> = [...this.engines.keys()]): void {
    for (const id of on) this.node(id).addBucket(name, { ttlMs: 60_000, maxSize: 100_000, replicas: 2, maxBytes: 0, writeConcern: 'primary', ...config }, this.clock(id))
    this.run()
  }

  private collect(): void {
    for (const [id, e] of this.engines) {
      const out = e.out.splice(0, e.out.length)
      for (const o of out) {
        if (o._tag === 'Done') this.results.set(o.op, { ok: true, value: o.value })
        else if (o._tag === 'Result') this.results.set(o.op, { ok: true, value: undefined, result: o.result })
        else if (o._tag === 'Fail') this.results.set(o.op, { ok: false, error: o.error })
        else if (o._tag === 'Log') this.logs.push({ node: id, level: o.level, message: o.message })
        else {
          const bytes = CacheMessage.encode(o.message).slice()
          if (bytes.length > e.options.maxMessageSize) {
            this.oversized++
            e.sendFailed(o.bucket, o.to, o.message, 'message too large', this.clock(id))
            continue
          }
          this.queue.push({ from: id, to: o.to, bucket: o.bucket, bytes })
        }
      }
    }
  }

  /** Delivers messages until none is left that is not held (bounded). */
  run(limit = 1_000_000): void {
    for (let i = 0; i < limit; i++) {
      this.collect()
      const blocked = new Set<string>()
      const hold = this.hold
      const index = hold === undefined ? (this.queue.length > 0 ? 0 : -1) : this.queue.findIndex((m) => {
        const link = `${m.from}>${m.to}`
        if (blocked.has(link)) return false
        if (hold!({ from: m.from, to: m.to, message: CacheMessage.decode(m.bytes) })) {
          blocked.add(link) // keep each link's order
          return false
        }
        return true
      })
      if (index === -1) return
      const [m] = this.queue.splice(index, 1)
      const to = this.engines.get(m!.to)
      if (to === undefined || to.closed) continue
      const message = CacheMessage.decode(m!.bytes)
      if (this.drop({ from: m!.from, to: m!.to, message })) continue
      this.sent++
      to.receive(m!.bucket, m!.from, message, this.clock(m!.to))
    }
    throw new Error('the network did not settle')
  }

  /** Advances every clock by `ms` in steps, ticking each engine and delivering after each. */
  advance(ms: number, step = 50): void {
    for (let t = 0; t < ms; t += step) {
      this.now += Math.min(step, ms - t)
      for (const [id, e] of this.engines) e.tick(this.clock(id))
      this.run()
    }
  }

  private op(start: (op: number) => unknown): number {
    const op = this.nextOp++
    const r = start(op)
    if (r !== PENDING) this.results.set(op, r instanceof Error ? { ok: false, error: r as MycelError } : { ok: true, value: r as Uint8Array | undefined })
    this.run()
    return op
  }

  put(node: string, bucket: string, key: string, value: Uint8Array, ttlMs?: number): number {
    return this.op((op) => this.node(node).put(op, bucket, key, value, ttlMs, this.clock(node)))
  }

  del(node: string, bucket: string, key: string): number {
    return this.op((op) => this.node(node).delete(op, bucket, key, this.clock(node)))
  }

  get(node: string, bucket: string, key: string): number {
    return this.op((op) => this.node(node).get(op, bucket, key, this.clock(node)))
  }

  increment(node: string, bucket: string, key: string, delta = 1, ttlMs?: number): number {
    return this.op((op) => this.node(node).atomic(op, bucket, { op: CacheMessage.AtomicOp.Increment, key, expected: undefined, value: new Uint8Array(0), delta, ttlMs }, this.clock(node)))
  }

  putIfAbsent(node: string, bucket: string, key: string, value: Uint8Array, ttlMs?: number): number {
    return this.op((op) => this.node(node).atomic(op, bucket, { op: CacheMessage.AtomicOp.PutIfAbsent, key, expected: undefined, value, delta: 0, ttlMs }, this.clock(node)))
  }

  compareAndSet(node: string, bucket: string, key: string, expected: Uint8Array | undefined, value: Uint8Array, ttlMs?: number): number {
    return this.op((op) => this.node(node).atomic(op, bucket, { op: CacheMessage.AtomicOp.CompareAndSet, key, expected, value, delta: 0, ttlMs }, this.clock(node)))
  }

  /** Runs an atomic operation to its end; its answer (throws on failure). */
  atomic(op: number): number | boolean {
    const r = this.await(op)
    if (!r.ok) throw r.error
    return r.result!
  }

  /** The result of `op`, waiting up to `ms` of simulated time. */
  await(op: number, ms = 10_000): Result {
    for (let t = 0; t < ms && !this.results.has(op); t += 10) this.advance(10, 10)
    const r = this.results.get(op)
    if (r === undefined) throw new Error(`operation ${op} did not complete within ${ms} ms`)
    return r
  }

  /** Runs a put/delete/get to its end; throws on failure. */
  must(op: number): Uint8Array | undefined {
    const r = this.await(op)
    if (!r.ok) throw r.error
    return r.value
  }

  /** The version (ts, node) a node holds for a key, or undefined. */
  held(node: string, bucket: string, key: string) {
    return this.node(node).buckets.get(bucket)?.store.peek(key)
  }
}

export const bytes = (s: string) => new TextEncoder().encode(s)
export const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))
