/**
 * Locks and elections over MemoryTransport on the TestClock: nodes, streams, the cache and the
 * coordination services as in production, time moved by the test.
 */
import { describe, expect, it } from '@effect/vitest'
import * as Testing from '@mycorrizal/testing'
import { Mycel } from '@mycorrizal/mycel'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Clock, Context, Duration, Effect, Either, Fiber, Layer, Logger, LogLevel, type Scope, TestClock } from 'effect'
import * as Elections from '../src/Elections.js'
import * as Locks from '../src/Locks.js'

const secret = 'locks-test-secret-of-at-least-32-characters'
const SKEW = 100
const FAILURE_TIMEOUT = 300

type Node = {
  readonly id: string
  readonly locks: Locks.Locks['Type']
  readonly elections: Elections.Elections['Type']
  readonly mycel: Mycel.Mycel['Type']
  readonly nodosum: Nodosum.Nodosum['Type']
}

const node = (id: string, seeds: ReadonlyArray<string>, options: Locks.LocksOptions) =>
  Layer.build(
    Layer.merge(Locks.layer(options), Elections.layer(options)).pipe(
      Layer.provideMerge(Mycel.layer({ requestTimeout: '300 millis', readyTimeout: '2 seconds', leaveTimeout: 0 })),
      Layer.provideMerge(Streams.layer()),
      Layer.provideMerge(
        Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], heartbeatInterval: 50, failureTimeout: FAILURE_TIMEOUT })
      )
    )
  ).pipe(
    Effect.map(
      (ctx): Node => ({
        id,
        locks: Context.get(ctx, Locks.Locks),
        elections: Context.get(ctx, Elections.Elections),
        mycel: Context.get(ctx, Mycel.Mycel),
        nodosum: Context.get(ctx, Nodosum.Nodosum)
      })
    )
  )

/** The TestClock moves 10 ms at a time, with 10 event-loop turns after each step. */
const advanceUntil = (condition: () => boolean, what: string, maxMs = 20_000) => Testing.advanceUntil(condition, what, maxMs, 10, 10)
/** Runs `effect` to its end while the TestClock moves. */
const drive = <A, E>(effect: Effect.Effect<A, E>, what: string, maxMs = 20_000) => Testing.advanceWhile(effect, what, maxMs, 10, 10)

const cluster = (ids: ReadonlyArray<string>, options: Locks.LocksOptions = {}) =>
  Effect.gen(function* () {
    const nodes: Array<Node> = []
    for (const id of ids) nodes.push(yield* node(id, nodes.length === 0 ? [] : [`${ids[0]}:7001`], { maxClockSkewMs: SKEW, ...options }))
    yield* advanceUntil(() => nodes.every((n) => n.nodosum.nodes().length === ids.length), 'mesh')
    yield* advanceUntil(() => nodes.every((n) => n.mycel.ready()), 'ready')
    return nodes
  })

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Error))

describe('locks over MemoryTransport (TestClock)', () => {
  it.effect('mutual exclusion under contention from three nodes; tokens strictly increase in grant order', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        let inside = 0
        let overlaps = 0
        const grants: Array<bigint> = []
        const client = (n: Node) =>
          Effect.gen(function* () {
            for (let i = 0; i < 10; i++) {
              const lock = yield* n.locks.acquire('invoice-42', { ttlMs: 5_000, waitMs: 60_000 })
              if (++inside > 1) overlaps++
              grants.push(lock.token)
              expect(lock.isHeld()).toBe(true)
              yield* Effect.sleep(Duration.millis(5))
              inside--
              yield* lock.release
              expect(lock.isHeld()).toBe(false)
            }
          })
        yield* drive(Effect.all(nodes.map(client), { concurrency: 'unbounded' }), 'contended acquires', 120_000)
        expect(overlaps).toBe(0)
        expect(grants).toEqual(Array.from({ length: 30 }, (_, i) => BigInt(i + 1)))
        const stats = nodes.map((n) => n.locks.stats())
        expect(stats.reduce((s, x) => s + x.acquires, 0)).toBe(30)
        expect(stats.reduce((s, x) => s + x.releases, 0)).toBe(30)
        expect(stats.reduce((s, x) => s + x.contended, 0)).toBeGreaterThan(0)
        expect(stats.every((s) => s.held.length === 0)).toBe(true)
        const view = yield* drive(nodes[0]!.locks.inspect('invoice-42'), 'inspect')
        expect(view).toEqual(expect.objectContaining({ holder: undefined, token: 30n, released: true }))
      })
    )
  )

  it.effect("the owners of a held lock's record are killed one after the other: the record survives, the next token is higher", () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const nodes = yield* cluster(['a', 'b', 'c', 'd', 'e'])
        const a = nodes[0]
        // a name whose record the holder does not own, so the kills leave the holder in the cluster
        const keys = () => nodes.map((n) => n.mycel.stats(Locks.BUCKET)?.keys ?? 0)
        const atomics = () => nodes.map((n) => n.mycel.stats(Locks.BUCKET)?.atomics ?? 0)
        let lock: Locks.Lock | undefined
        let owners: Array<string> = []
        let primary = ''
        let name = ''
        for (let i = 0; lock === undefined && i < 20; i++) {
          name = `job-${i}`
          const [k0, a0] = [keys(), atomics()]
          const l = yield* drive(a!.locks.acquire(name, { ttlMs: 60_000 }), 'acquire')
          const [k1, a1] = [keys(), atomics()]
          owners = nodes.filter((_, j) => k1[j]! > k0[j]!).map((n) => n.id)
          primary = nodes.find((_, j) => a1[j]! > a0[j]!)!.id
          if (owners.includes('a')) yield* drive(l.release, 'release')
          else lock = l
        }
        expect(lock!.token).toBe(1n)
        expect(owners).toHaveLength(2)
        expect(owners).toContain(primary)
        // kill the primary first, then (once the cluster moved the copies) the other original owner
        const order = [primary, ...owners.filter((o) => o !== primary)]
        let alive = [...nodes]
        for (const victim of order) {
          network.kill(`${victim}:7001`)
          alive = alive.filter((n) => n.id !== victim)
          yield* advanceUntil(() => alive.every((n) => n.nodosum.nodes().length === alive.length), `${victim} dropped`)
          yield* advanceUntil(() => alive.every((n) => n.mycel.ready()), 'ready')
          yield* TestClock.adjust(Duration.seconds(2))
          yield* Testing.turns(20)
          yield* drive(lock!.extend(60_000), 'extend after a kill')
          expect(lock!.isHeld()).toBe(true)
        }
        const other = alive.find((n) => n.id !== 'a')!
        expect(yield* drive(other.locks.tryAcquire(name, { ttlMs: 1_000 }), 'try while held')).toBeUndefined()
        yield* drive(lock!.release, 'release')
        const next = yield* drive(other.locks.acquire(name, { ttlMs: 1_000 }), 'acquire after')
        expect(next.token).toBe(2n)
      })
    )
  )

  it.effect('the holder node is killed: another node takes the lock only after the lease (plus the skew allowance)', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const [a, b] = yield* cluster(['a', 'b', 'c'])
        const ttlMs = 2_000
        const lock = yield* drive(a!.locks.acquire('cron', { ttlMs }), 'acquire')
        const grantedAt = yield* Clock.currentTimeMillis
        network.kill('a:7001')
        const next = yield* drive(b!.locks.acquire('cron', { ttlMs, waitMs: 20_000 }), 'takeover')
        const takenAt = yield* Clock.currentTimeMillis
        expect(next.token).toBe(lock.token + 1n)
        expect(takenAt - grantedAt).toBeGreaterThanOrEqual(ttlMs + SKEW)
        expect(takenAt - grantedAt).toBeLessThan(ttlMs + SKEW + 2 * FAILURE_TIMEOUT + 1_000)
      })
    )
  )

  it.effect('acquire gives up after waitMs with a typed LockTimeout naming the holder; tryAcquire answers undefined', () =>
    run(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(['a', 'b', 'c'])
        const lock = yield* drive(a!.locks.acquire('report', { ttlMs: 30_000 }), 'acquire')
        const start = yield* Clock.currentTimeMillis
        const failed = yield* drive(Effect.either(b!.locks.acquire('report', { ttlMs: 1_000, waitMs: 1_500 })), 'timeout')
        const end = yield* Clock.currentTimeMillis
        expect(Either.isLeft(failed) && failed.left._tag === 'LockTimeout' ? failed.left : undefined).toEqual(
          expect.objectContaining({ _tag: 'LockTimeout', name: 'report', holder: 'a' })
        )
        expect(end - start).toBeGreaterThanOrEqual(1_500)
        expect(b!.locks.stats().timeouts).toBe(1)
        expect(yield* drive(b!.locks.tryAcquire('report', { ttlMs: 1_000 }), 'try')).toBeUndefined()
        // the holder is not re-entrant either
        expect(yield* drive(a!.locks.tryAcquire('report', { ttlMs: 1_000 }), 'try again')).toBeUndefined()
        // a release on this node wakes its waiter at once, well before the backoff's bound
        const waiter = yield* Effect.fork(a!.locks.acquire('report', { ttlMs: 1_000, waitMs: 60_000 }))
        yield* advanceUntil(() => a!.locks.stats().contended >= 2, 'waiter contended')
        yield* TestClock.adjust(Duration.seconds(5))
        yield* Testing.turns(20)
        yield* drive(lock.release, 'release')
        const releasedAt = yield* Clock.currentTimeMillis
        let got: Locks.Lock | undefined
        yield* Effect.fork(Effect.map(Fiber.join(waiter), (l) => (got = l)))
        yield* advanceUntil(() => got !== undefined, 'waiter woken')
        expect((yield* Clock.currentTimeMillis) - releasedAt).toBeLessThan(100)
        expect(got!.token).toBe(2n)
      })
    )
  )

  it.effect('minMembers: a node that sees too few members refuses to grant and to extend', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const [a, b] = yield* cluster(['a', 'b', 'c'], { minMembers: 3 })
        const lock = yield* drive(a!.locks.acquire('quota', { ttlMs: 60_000 }), 'acquire')
        network.kill('c:7001')
        yield* advanceUntil(() => a!.nodosum.nodes().length === 2 && b!.nodosum.nodes().length === 2, 'c dropped')
        const refused = yield* drive(Effect.either(b!.locks.tryAcquire('other', { ttlMs: 1_000 })), 'refused')
        expect(Either.isLeft(refused) ? refused.left : undefined).toEqual(expect.objectContaining({ _tag: 'CoordinationError', reason: 'NotEnoughMembers' }))
        const extend = yield* drive(Effect.either(lock.extend(60_000)), 'extend refused')
        expect(Either.isLeft(extend) ? extend.left : undefined).toEqual(expect.objectContaining({ reason: 'NotEnoughMembers' }))
        // a per-call minMembers overrides the service's
        expect((yield* drive(b!.locks.tryAcquire('other', { ttlMs: 1_000, minMembers: 2 }), 'granted'))?.token).toBe(1n)
        expect(b!.locks.stats().refused).toBe(1)
      })
    )
  )

  it.effect('a node taking a lock again after its own release skips the read; a stale guess falls back to reading', () =>
    run(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(['a', 'b', 'c'])
        const gets = () => {
          const s = a!.mycel.stats(Locks.BUCKET)!
          return s.hits + s.misses + s.remoteGets
        }
        const first = yield* drive(a!.locks.acquire('batch', { ttlMs: 5_000 }), 'acquire')
        yield* drive(first.release, 'release')
        const before = gets()
        for (let i = 0; i < 5; i++) {
          const lock = yield* drive(a!.locks.acquire('batch', { ttlMs: 5_000 }), 'acquire again')
          expect(lock.token).toBe(BigInt(i + 2))
          yield* drive(lock.release, 'release again')
        }
        expect(gets()).toBe(before)
        // another node took it meanwhile: the guess fails, a reads the record and waits for it
        const other = yield* drive(b!.locks.acquire('batch', { ttlMs: 5_000 }), 'b acquires')
        expect(yield* drive(a!.locks.tryAcquire('batch', { ttlMs: 5_000 }), 'a tries')).toBeUndefined()
        expect(gets()).toBeGreaterThan(before)
        yield* drive(other.release, 'b releases')
        expect((yield* drive(a!.locks.acquire('batch', { ttlMs: 5_000 }), 'a acquires'))?.token).toBe(8n)
      })
    )
  )

  it.effect('the Promise entry points (the facade\'s): mutual exclusion from three nodes, increasing tokens, a waiter woken by a release, typed rejections', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        let inside = 0
        let overlaps = 0
        const grants: Array<bigint> = []
        const client = async (n: Node) => {
          for (let i = 0; i < 10; i++) {
            const lock = await n.locks.unsafeAcquire('invoice-7', { ttlMs: 5_000, waitMs: 60_000 })
            if (++inside > 1) overlaps++
            grants.push(lock.token)
            expect(lock.isHeld()).toBe(true)
            await Promise.resolve()
            inside--
            await lock.unsafeRelease!()
            expect(lock.isHeld()).toBe(false)
          }
        }
        yield* drive(Effect.promise(() => Promise.all(nodes.map(client))), 'contended Promise acquires', 120_000)
        expect(overlaps).toBe(0)
        expect(grants).toEqual(Array.from({ length: 30 }, (_, i) => BigInt(i + 1)))
        const stats = nodes.map((n) => n.locks.stats())
        expect(stats.reduce((s, x) => s + x.acquires, 0)).toBe(30)
        expect(stats.reduce((s, x) => s + x.releases, 0)).toBe(30)
        expect(stats.every((s) => s.held.length === 0)).toBe(true)
        const [a, b] = nodes
        // tryAcquire, extend, and the typed rejections
        const held = yield* drive(Effect.promise(() => a!.locks.unsafeAcquire('report', { ttlMs: 30_000 })), 'acquire')
        expect(yield* drive(Effect.promise(() => b!.locks.unsafeTryAcquire('report', { ttlMs: 1_000 })), 'try')).toBeUndefined()
        const timeout = yield* drive(Effect.promise(() => b!.locks.unsafeAcquire('report', { ttlMs: 1_000, waitMs: 200 }).then(() => undefined, (e: unknown) => e)), 'timeout')
        expect(timeout).toEqual(expect.objectContaining({ _tag: 'LockTimeout', name: 'report', holder: 'a' }))
        const invalid = yield* drive(Effect.promise(() => b!.locks.unsafeTryAcquire('', { ttlMs: 1_000 }).then(() => undefined, (e: unknown) => e)), 'invalid')
        expect(invalid).toEqual(expect.objectContaining({ _tag: 'CoordinationError', reason: 'InvalidLock' }))
        yield* drive(Effect.promise(() => held.unsafeExtend!(60_000)), 'extend')
        expect(held.remainingMs()).toBeGreaterThan(30_000)
        // a waiter on this node is woken by its release
        let got: Locks.Lock | undefined
        void a!.locks.unsafeAcquire('report', { ttlMs: 1_000, waitMs: 60_000 }).then((l) => (got = l))
        yield* advanceUntil(() => a!.locks.stats().contended >= 1, 'waiter contended')
        yield* drive(Effect.promise(() => held.unsafeRelease!()), 'release')
        yield* advanceUntil(() => got !== undefined, 'waiter woken', 1_000)
        expect(got!.token).toBe(2n)
        const lost = yield* drive(Effect.promise(() => held.unsafeExtend!(1_000).then(() => undefined, (e: unknown) => e)), 'extend after release')
        expect(lost).toEqual(expect.objectContaining({ reason: 'LockLost' }))
      })
    )
  )

  it.effect('invalid names and leases fail with InvalidLock', () =>
    run(
      Effect.gen(function* () {
        const [a] = yield* cluster(['a'])
        for (const [name, ttlMs] of [['', 1_000], ['x'.repeat(201), 1_000], ['ok', 0], ['ok', 1.5]] as const) {
          const r = yield* drive(Effect.either(a!.locks.tryAcquire(name, { ttlMs })), 'invalid')
          expect(Either.isLeft(r) ? r.left : undefined).toEqual(expect.objectContaining({ reason: 'InvalidLock' }))
        }
      })
    )
  )
})

describe('elections over MemoryTransport (TestClock)', () => {
  const TTL = 1_000

  const candidates = (nodes: ReadonlyArray<Node>, name: string, options: Elections.ElectOptions = {}) =>
    Effect.gen(function* () {
      const log: Array<string> = []
      const elections: Array<Elections.Election> = []
      for (const n of nodes) {
        elections.push(
          yield* drive(
            n.elections.elect(name, {
              ttlMs: TTL,
              ...options,
              onElected: (token) => void log.push(`${n.id}+${token}`),
              onRevoked: () => void log.push(`${n.id}-`)
            }),
            'elect'
          )
        )
      }
      const leaders = () => elections.filter((e) => e.isLeader())
      return { log, elections, leaders }
    })

  it.effect('one leader; every candidate learns it; the leader keeps its term across many renewals', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const { log, elections, leaders } = yield* candidates(nodes, 'nightly-report')
        yield* advanceUntil(() => leaders().length === 1 && elections.every((e) => e.leader() === leaders()[0]!.leader()), 'a leader known to all')
        const leader = leaders()[0]!
        const at = elections.indexOf(leader)
        for (let i = 0; i < 100; i++) {
          yield* TestClock.adjust(Duration.millis(50))
          yield* Testing.turns(5)
          expect(leaders()).toEqual([leader])
        }
        expect(log).toEqual([`${nodes[at]!.id}+1`])
        expect(leader.token()).toBe(1n)
        expect(nodes[at]!.elections.stats()).toEqual(
          expect.objectContaining({ led: 1, revoked: 0, elections: [expect.objectContaining({ name: 'nightly-report', isLeader: true, leader: nodes[at]!.id, token: 1n, terms: 1 })] })
        )
      })
    )
  )

  it.effect('the leader is killed: a new leader within failure timeout + lease, with a higher token', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const nodes = yield* cluster(['a', 'b', 'c'])
        const { log, elections, leaders } = yield* candidates(nodes, 'scheduler')
        yield* advanceUntil(() => leaders().length === 1, 'a leader')
        const first = elections.indexOf(leaders()[0]!)
        const firstToken = leaders()[0]!.token()!
        network.kill(`${nodes[first]!.id}:7001`)
        const killedAt = yield* Clock.currentTimeMillis
        const survivors = elections.filter((_, i) => i !== first)
        yield* advanceUntil(() => survivors.some((e) => e.isLeader()), 'a new leader')
        const after = (yield* Clock.currentTimeMillis) - killedAt
        // the dead leader's last renewal left at most a full lease; the retry interval is a third of it
        expect(after).toBeLessThanOrEqual(FAILURE_TIMEOUT + TTL + SKEW + TTL / 3 + 100)
        const next = survivors.find((e) => e.isLeader())!
        expect(next.token()! > firstToken).toBe(true)
        yield* advanceUntil(() => survivors.every((e) => e.leader() === next.leader()), 'survivors know the new leader')
        expect(survivors.filter((e) => e.isLeader())).toHaveLength(1)
        expect(log.filter((l) => l.includes('+'))).toHaveLength(2)
      })
    )
  )

  it.effect('resign hands over: onRevoked at once, another candidate leads soon after', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        const { log, elections, leaders } = yield* candidates(nodes, 'exporter')
        yield* advanceUntil(() => leaders().length === 1, 'a leader')
        const first = leaders()[0]!
        const firstId = nodes[elections.indexOf(first)]!.id
        yield* drive(first.resign, 'resign')
        expect(first.isLeader()).toBe(false)
        expect(log).toContain(`${firstId}-`)
        const resignedAt = yield* Clock.currentTimeMillis
        yield* advanceUntil(() => leaders().length === 1, 'a new leader')
        // the lock was released: no wait for the lease, only for the retry interval
        expect((yield* Clock.currentTimeMillis) - resignedAt).toBeLessThanOrEqual(TTL / 3 + 50)
        expect(leaders()[0]!.token()).toBe(2n)
        expect(first.leader()).toBeUndefined()
      })
    )
  )

  it.effect('a partitioned leader (minMembers 2) is revoked before the majority elects another', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const nodes = yield* cluster(['a', 'b', 'c'])
        const log: Array<string> = []
        const elections: Array<Elections.Election> = []
        for (const n of nodes) {
          elections.push(
            yield* drive(
              n.elections.elect('billing', { ttlMs: TTL, minMembers: 2, onElected: () => void log.push(`${n.id}+`), onRevoked: () => void log.push(`${n.id}-`) }),
              'elect'
            )
          )
        }
        yield* advanceUntil(() => elections.filter((e) => e.isLeader()).length === 1, 'a leader')
        const first = elections.findIndex((e) => e.isLeader())
        const leaderId = nodes[first]!.id
        network.partition([`${leaderId}:7001`], nodes.filter((n) => n.id !== leaderId).map((n) => `${n.id}:7001`))
        const others = elections.filter((_, i) => i !== first)
        yield* advanceUntil(() => others.some((e) => e.isLeader()), 'a leader on the majority side')
        expect(elections[first]!.isLeader()).toBe(false)
        // the old leader was revoked before the new one was elected
        expect(log).toEqual([`${leaderId}+`, `${leaderId}-`, expect.stringMatching(/\+$/)])
        expect(nodes[first]!.elections.stats().revoked).toBe(1)
      })
    )
  )
})
