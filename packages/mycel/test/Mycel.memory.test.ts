import { describe, expect, it } from '@effect/vitest'
import { MemoryTransport, Nodosum } from '@mycorrizal/nodosum'
import { Streams } from '@mycorrizal/streams'
import { Context, Duration, Effect, Layer, Logger, LogLevel, type Scope } from 'effect'
import { Placement } from '../src/internal/placement.js'
import * as Mycel from '../src/Mycel.js'
import type { MycelError } from '../src/MycelError.js'

const secret = 'mycel-test-secret-of-at-least-32-characters'
type Node = { readonly id: string; readonly mycel: Mycel.Mycel['Type']; readonly nodosum: Nodosum.Nodosum['Type']; readonly streams: Streams.Streams['Type'] }

/** A node builder with these cache and failure-detection timings. */
const nodeWith =
  (cache: Mycel.MycelOptions, detection: { readonly heartbeatInterval?: number; readonly failureTimeout: number }) =>
  (id: string, seeds: ReadonlyArray<string> = []) =>
    Layer.build(
      Mycel.layer(cache).pipe(
        Layer.provideMerge(Streams.layer()),
        Layer.provideMerge(Nodosum.layerMemory({ nodeId: id, host: id, port: 7001, clusterSecret: secret, seeds: [...seeds], ...detection }))
      )
    ).pipe(Effect.map((ctx): Node => ({ id, mycel: Context.get(ctx, Mycel.Mycel), nodosum: Context.get(ctx, Nodosum.Nodosum), streams: Context.get(ctx, Streams.Streams) })))

const node = nodeWith({ requestTimeout: '500 millis', readyTimeout: '3 seconds', leaveTimeout: '2 seconds' }, { heartbeatInterval: 50, failureTimeout: 300 })

const until = (condition: () => boolean, what: string, ms = 5_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 10; i++) {
      if (condition()) return
      yield* Effect.sleep(Duration.millis(10))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

const untilEffect = <E>(check: Effect.Effect<boolean, E>, what: string, ms = 5_000) =>
  Effect.gen(function* () {
    for (let i = 0; i < ms / 10; i++) {
      if (yield* check) return
      yield* Effect.sleep(Duration.millis(10))
    }
    throw new Error(`${what} did not happen within ${ms} ms`)
  })

const cluster = (ids: ReadonlyArray<string>, build = node) =>
  Effect.gen(function* () {
    const nodes: Array<Node> = []
    for (const id of ids) nodes.push(yield* build(id, nodes.length === 0 ? [] : [`${ids[0]}:7001`]))
    yield* until(() => nodes.every((n) => n.nodosum.nodes().length === ids.length), 'mesh')
    return nodes
  })

const run = <A, E>(effect: Effect.Effect<A, E, MemoryTransport.MemoryNetwork | Scope.Scope>) =>
  effect.pipe(Effect.scoped, Effect.provide(MemoryTransport.networkLayer), Logger.withMinimumLogLevel(LogLevel.Warning))

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b))

describe('Mycel over MemoryTransport', () => {
  it.live('put on one node, get on every node; misses are answered, not silent', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('sessions', '1 minute', 10_000)
        const [a, b, c] = nodes
        for (let i = 0; i < 100; i++) yield* a!.mycel.put('sessions', `k${i}`, bytes(`v${i}`))
        for (const n of [a!, b!, c!]) {
          for (let i = 0; i < 100; i++) expect(text(yield* n.mycel.get('sessions', `k${i}`))).toBe(`v${i}`)
          expect(yield* n.mycel.get('sessions', 'missing')).toBeUndefined()
        }
        // with R = 2 every key lives on exactly two of three nodes
        const keys = nodes.map((n) => n.mycel.stats('sessions')!.keys)
        expect(keys.reduce((x, y) => x + y, 0)).toBe(200)
        expect(b!.mycel.stats('sessions')!.remoteGets + c!.mycel.stats('sessions')!.remoteGets).toBeGreaterThan(0)
        // every remote get and every acknowledged remote write is in a latency histogram
        for (const n of nodes) {
          const s = n.mycel.stats('sessions')!
          expect(s.remoteGetLatency.count).toBe(s.remoteGets)
          for (const h of [s.remoteGetLatency, s.remoteWriteLatency]) {
            expect(h.cumulativeCounts).toHaveLength(h.boundsUs.length)
            expect(h.cumulativeCounts.every((c, i) => i === 0 || c >= h.cumulativeCounts[i - 1]!)).toBe(true)
            expect(h.cumulativeCounts.at(-1)!).toBeLessThanOrEqual(h.count)
            expect(h.sumUs).toBeGreaterThanOrEqual(0)
          }
        }
        expect(a!.mycel.stats('sessions')!.remoteWriteLatency.count).toBeGreaterThan(0)
      })
    )
  )

  it.live('delete removes on every owner; last write wins', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('b', '1 minute', 1_000)
        const [a, b] = nodes
        yield* a!.mycel.put('b', 'x', bytes('1'))
        yield* b!.mycel.put('b', 'x', bytes('2'))
        // the put resolved on the primary; the other replica converges right after
        const seen = (v: string | undefined) => Effect.all(nodes.map((n) => n.mycel.get('b', 'x').pipe(Effect.map(text)))).pipe(Effect.map((all) => all.every((x) => x === v)))
        yield* untilEffect(seen('2'), 'everyone sees the newer write')
        yield* a!.mycel.delete('b', 'x')
        yield* untilEffect(seen(undefined), 'everyone sees the delete')
        // an older write cannot resurrect the key: the tombstone is newer
        const older = a!.mycel.stats('b')!
        expect(older.deletes + b!.mycel.stats('b')!.deletes + nodes[2]!.mycel.stats('b')!.deletes).toBeGreaterThanOrEqual(1)
      })
    )
  )

  it.live('typed errors: unknown bucket here, bucket missing on the owner, value too large, bad options', () =>
    run(
      Effect.gen(function* () {
        // requests wait longer than the cache's stream grace (1 s): a refusal, not a timeout, answers
        const [a, b] = yield* cluster(['a', 'b'], nodeWith({ requestTimeout: '5 seconds', readyTimeout: '3 seconds', leaveTimeout: '2 seconds' }, { heartbeatInterval: 50, failureTimeout: 300 }))
        expect((yield* Effect.flip(a!.mycel.get('nope', 'k'))).reason).toBe('BucketNotFound')
        yield* a!.mycel.createBucket('only-a', '1 minute', 100, { replicas: 1 })
        // a key whose only owner is b, where the bucket does not exist: b refuses the bucket's
        // stream after its grace period and the request fails with BucketNotFound, not silence
        let remoteKey = ''
        for (let i = 0; i < 100 && remoteKey === ''; i++) {
          const probe = yield* Effect.either(a!.mycel.get('only-a', `probe${i}`))
          if (probe._tag === 'Left') {
            expect(probe.left.reason).toBe('BucketNotFound')
            remoteKey = `probe${i}`
          }
        }
        expect(remoteKey).not.toBe('')
        const notFound = yield* Effect.flip(a!.mycel.put('only-a', remoteKey, bytes('v')))
        expect(notFound.reason).toBe('BucketNotFound')
        expect((yield* Effect.flip(a!.mycel.createBucket('only-a', '1 minute', 100))).reason).toBe('BucketExists')
        expect((yield* Effect.flip(a!.mycel.createBucket('bad name', '1 minute', 100))).reason).toBe('InvalidBucket')
        expect((yield* Effect.flip(a!.mycel.createBucket('x', '1 minute', 0))).reason).toBe('InvalidBucket')
        yield* a!.mycel.createBucket('big', '1 minute', 100)
        yield* b!.mycel.createBucket('big', '1 minute', 100)
        const tooBig = new Uint8Array(a!.nodosum.maxMessageSize)
        expect((yield* Effect.flip(a!.mycel.put('big', 'k', tooBig))).reason).toBe('ValueTooLarge')
      })
    )
  )

  it.live('the Promise entry points (the facade\'s) do what the Effect operations do: local and remote, misses, deletes, typed errors', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('p', '1 minute', 1_000)
        const [a, b, c] = nodes
        yield* Effect.promise(() => Promise.all(Array.from({ length: 60 }, (_, i) => a!.mycel.unsafePut('p', `k${i}`, bytes(`v${i}`)))))
        for (const n of [a!, b!, c!]) {
          const read = yield* Effect.promise(() => Promise.all(Array.from({ length: 60 }, (_, i) => n.mycel.unsafeGet('p', `k${i}`))))
          expect(read.map(text)).toEqual(Array.from({ length: 60 }, (_, i) => `v${i}`))
          // the Effect operation reads the same
          expect(text(yield* n.mycel.get('p', 'k7'))).toBe('v7')
          expect(yield* Effect.promise(() => n.mycel.unsafeGet('p', 'missing'))).toBeUndefined()
        }
        // some of those reads were remote (R = 2 of 3 nodes)
        expect(nodes.reduce((x, n) => x + n.mycel.stats('p')!.remoteGets, 0)).toBeGreaterThan(0)
        yield* Effect.promise(() => b!.mycel.unsafeDelete('p', 'k1'))
        yield* untilEffect(Effect.all(nodes.map((n) => n.mycel.get('p', 'k1'))).pipe(Effect.map((all) => all.every((v) => v === undefined))), 'everyone sees the delete')
        // a TTL given in milliseconds or as a duration
        yield* Effect.promise(() => c!.mycel.unsafePut('p', 't', bytes('x'), 60_000))
        yield* Effect.promise(() => c!.mycel.unsafePut('p', 't', bytes('y'), '1 minute'))
        expect(text(yield* a!.mycel.get('p', 't'))).toBe('y')
        // errors reject with the same typed errors
        const rejected = (p: () => Promise<unknown>) => Effect.promise(() => p().then(() => undefined, (e: MycelError) => e.reason))
        expect(yield* rejected(() => a!.mycel.unsafeGet('nope', 'k'))).toBe('BucketNotFound')
        expect(yield* rejected(() => a!.mycel.unsafePut('p', 'k', bytes('v'), 0))).toBe('InvalidBucket')
        expect(yield* rejected(() => a!.mycel.unsafePut('p', 'k', new Uint8Array(a!.nodosum.maxMessageSize)))).toBe('ValueTooLarge')
      })
    )
  )

  it.live('a node joining later gets the keys it now owns and turns ready', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b'])
        for (const n of nodes) yield* n.mycel.createBucket('s', '1 minute', 10_000)
        for (let i = 0; i < 300; i++) yield* nodes[0]!.mycel.put('s', `k${i}`, bytes(`v${i}`))
        const c = yield* node('c', ['a:7001'])
        yield* c.mycel.createBucket('s', '1 minute', 10_000)
        yield* until(() => c.nodosum.nodes().length === 3, 'c joined')
        yield* until(() => c.mycel.ready(), 'c ready')
        yield* until(() => c.mycel.stats('s')!.received > 0, 'c received keys')
        // c answers for its keys locally, every key still readable everywhere, R = 2 copies in all
        for (let i = 0; i < 300; i++) expect(text(yield* c.mycel.get('s', `k${i}`))).toBe(`v${i}`)
        yield* until(() => [...nodes, c].map((n) => n.mycel.stats('s')!.keys).reduce((x, y) => x + y, 0) === 600, 'two copies of each key')
      })
    )
  )

  it.live('when a node fails, the survivors restore two copies and lose nothing', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const nodes = yield* cluster(['a', 'b', 'c', 'd'])
        for (const n of nodes) yield* n.mycel.createBucket('s', '1 minute', 10_000)
        for (let i = 0; i < 400; i++) yield* nodes[i % 4]!.mycel.put('s', `k${i}`, bytes(`v${i}`))
        network.kill('d:7001')
        const survivors = nodes.slice(0, 3)
        yield* until(() => survivors.every((n) => n.nodosum.nodes().length === 3), 'd dropped')
        for (let i = 0; i < 400; i++) expect(text(yield* survivors[i % 3]!.mycel.get('s', `k${i}`))).toBe(`v${i}`)
        yield* until(() => survivors.map((n) => n.mycel.stats('s')!.keys).reduce((x, y) => x + y, 0) === 800, 'two copies again')
      })
    )
  )

  it.live('a partition: both sides keep serving; after healing they re-merge and converge (last write wins)', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('p', '1 minute', 10_000)
        const [a, b, c] = nodes
        yield* a!.mycel.put('p', 'x', bytes('before'))
        network.partition(['a', 'b'], ['c'])
        yield* until(() => a!.nodosum.nodes().length === 2 && c!.nodosum.nodes().length === 1, 'split')
        // each side serves and takes writes for every key on its own
        yield* a!.mycel.put('p', 'x', bytes('left'))
        yield* Effect.sleep(Duration.millis(5))
        yield* c!.mycel.put('p', 'x', bytes('right'))
        yield* c!.mycel.put('p', 'only-right', bytes('r'))
        expect(text(yield* b!.mycel.get('p', 'x'))).toBe('left')
        expect(text(yield* c!.mycel.get('p', 'x'))).toBe('right')
        const healed = Date.now()
        network.heal()
        yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 're-merged')
        const remerged = Date.now() - healed
        const converged = Effect.all(nodes.map((n) => Effect.all([n.mycel.get('p', 'x'), n.mycel.get('p', 'only-right')]))).pipe(
          Effect.map((all) => all.every(([x, r]) => text(x) === 'right' && text(r) === 'r'))
        )
        yield* untilEffect(converged, 'every node sees the newest write and the write made on the other side')
        // re-merge: from the heal until every node sees all three again (heartbeat 50 ms, failure timeout 300 ms)
        console.log(JSON.stringify({ scenario: 'partition', remerge_ms: remerged, converged_ms: Date.now() - healed }))
      })
    )
  )

  it.live('concurrent gets of one remote key share one request', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('sf', '1 minute', 1_000, { replicas: 1 })
        const [a] = nodes
        // a key a does not own
        let key = ''
        for (let i = 0; i < 100 && key === ''; i++) {
          yield* a!.mycel.put('sf', `k${i}`, bytes(`v${i}`))
          if (a!.mycel.stats('sf')!.keys === 0) key = `k${i}`
          else yield* a!.mycel.delete('sf', `k${i}`)
        }
        expect(key).not.toBe('')
        const before = a!.mycel.stats('sf')!.remoteGets
        const values = yield* Effect.all(Array.from({ length: 20 }, () => a!.mycel.get('sf', key)), { concurrency: 'unbounded' })
        expect(values.every((v) => text(v) === text(values[0]))).toBe(true)
        expect(a!.mycel.stats('sf')!.remoteGets - before).toBe(1)
      })
    )
  )

  it.live('operations started in one turn travel to each owner as one payload, and come back as one; each gets its own answer', () =>
    run(
      Effect.gen(function* () {
        // no anti-entropy round while the payloads are counted: only the one 1 s after the join, waited out below
        const quiet = nodeWith({ requestTimeout: '500 millis', readyTimeout: '3 seconds', antiEntropyInterval: '1 hour' }, { heartbeatInterval: 50, failureTimeout: 300 })
        const nodes = [yield* quiet('a')]
        for (const id of ['b', 'c']) nodes.push(yield* quiet(id, ['a:7001']))
        yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 'mesh')
        for (const n of nodes) yield* n.mycel.createBucket('batch', '1 minute', 1_000, { replicas: 1 })
        const [a, b] = nodes
        const placement = new Placement()
        placement.setNodes(['a', 'b', 'c'])
        const keys = Array.from({ length: 400 }, (_, i) => `k${i}`).filter((k) => placement.owners('batch', k, 1)[0] === 'b').slice(0, 50)
        expect(keys.length).toBe(50)
        for (const k of keys) yield* b!.mycel.put('batch', k, bytes(`v:${k}`))
        yield* Effect.sleep(Duration.millis(1_500))
        const streamOf = (n: Node) => n.streams.application('SYSTEM-MYCEL').pipe(Effect.flatMap((app) => app.getStream('bucket:batch')))
        const aStream = yield* streamOf(a!)
        const bStream = yield* streamOf(b!)
        const before = { aOut: aStream.stats().messagesOut, bOut: bStream.stats().messagesOut, bIn: bStream.stats().messagesIn }
        // 50 gets and a miss, started in the same turn (the facade's entry point: no fiber each)
        const values = yield* Effect.promise(() => Promise.all([...keys, 'absent:1'].map((k) => a!.mycel.unsafeGet('batch', k))))
        expect(values.map(text)).toEqual([...keys.map((k) => `v:${k}`), undefined])
        expect(a!.mycel.stats('batch')!.remoteGets).toBeGreaterThanOrEqual(50)
        const absentOwner = placement.owners('batch', 'absent:1', 1)[0]
        const payloadsToB = aStream.stats().messagesOut - before.aOut - (absentOwner === 'c' ? 1 : 0)
        expect(payloadsToB).toBe(1)
        expect(bStream.stats().messagesIn - before.bIn).toBe(1)
        expect(bStream.stats().messagesOut - before.bOut).toBe(1)
        // writes started in one turn: one payload of Puts to b, one of acknowledgements back
        const outBefore = aStream.stats().messagesOut
        yield* Effect.promise(() => Promise.all(keys.map((k) => a!.mycel.unsafePut('batch', k, bytes(`w:${k}`)))))
        expect(aStream.stats().messagesOut - outBefore).toBe(1)
        for (const k of keys) expect(text(yield* b!.mycel.get('batch', k))).toBe(`w:${k}`)
      })
    )
  )

  it.live('writeConcern all waits for every owner; deleteBucket frees the bucket and its stream', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c'])
        for (const n of nodes) yield* n.mycel.createBucket('all', '1 minute', 1_000, { replicas: 3, writeConcern: 'all' })
        yield* nodes[0]!.mycel.put('all', 'k', bytes('v'))
        // acknowledged by every owner: all three hold it at once
        expect(nodes.map((n) => n.mycel.stats('all')!.keys)).toEqual([1, 1, 1])
        yield* nodes[0]!.mycel.deleteBucket('all')
        expect(nodes[0]!.mycel.buckets()).toEqual([])
        expect(nodes[0]!.mycel.stats('all')).toBeUndefined()
        expect((yield* Effect.flip(nodes[0]!.mycel.get('all', 'k'))).reason).toBe('BucketNotFound')
        expect((yield* Effect.flip(nodes[0]!.mycel.deleteBucket('all'))).reason).toBe('BucketNotFound')
      })
    )
  )

  it.live('a bucket configured differently on another node is logged as a warning', () => {
    const lines: Array<string> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message, annotations }) => {
        const a: Record<string, unknown> = {}
        for (const [k, v] of annotations) a[k] = v
        lines.push(`${String(message)} ${JSON.stringify(a)}`)
      })
    )
    return run(
      Effect.gen(function* () {
        const [a, b] = yield* cluster(['a', 'b'])
        yield* a!.mycel.createBucket('cfg', '1 minute', 100)
        yield* b!.mycel.createBucket('cfg', '2 minutes', 100)
        yield* until(() => lines.some((l) => l.includes('bucket configured differently on another node')), 'the warning')
      }).pipe(Effect.provide(capture))
    )
  })

  it.live('a get falls back to the next replica when the primary does not answer in time', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        // a failure detector slower than the request timeout: the primary is still a member when it stops answering
        // (the link stays cut: shutdown waits for the handoff to a at most 1 s)
        const slow = nodeWith({ requestTimeout: '300 millis', leaveTimeout: '1 second' }, { failureTimeout: 30_000 })
        const nodes = [yield* slow('a', []), yield* slow('b', ['a:7001']), yield* slow('c', ['a:7001'])]
        yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 'mesh')
        for (const n of nodes) yield* n.mycel.createBucket('fb', '1 minute', 1_000)
        // a key a holds no copy of: a must ask its primary, which then goes silent
        const placement = new Placement()
        placement.setNodes(['a', 'b', 'c'])
        let key = ''
        for (let i = 0; i < 100 && key === ''; i++) if (!placement.owners('fb', `k${i}`, 2).includes('a')) key = `k${i}`
        const [primary, replica] = placement.owners('fb', key, 2)
        yield* nodes[1]!.mycel.put('fb', key, bytes('value'))
        expect(nodes[0]!.mycel.stats('fb')!.keys).toBe(0)
        network.drop(primary!, 'a')
        const value = yield* nodes[0]!.mycel.get('fb', key)
        // the primary timed out, the replica answered
        expect(text(value)).toBe('value')
        expect(nodes[0]!.mycel.stats('fb')!.timeouts).toBe(1)
        expect(replica).not.toBe(primary)
      })
    )
  )

  it.live('a put waiting on an owner that fails is sent again to the new owners instead of timing out', () =>
    run(
      Effect.gen(function* () {
        const network = yield* MemoryTransport.MemoryNetwork
        // failures are seen within 300 ms, requests time out after 5 s
        const quick = nodeWith({ requestTimeout: '5 seconds' }, { heartbeatInterval: 50, failureTimeout: 300 })
        const nodes = [yield* quick('a', []), yield* quick('b', ['a:7001']), yield* quick('c', ['a:7001'])]
        yield* until(() => nodes.every((n) => n.nodosum.nodes().length === 3), 'mesh')
        for (const n of nodes) yield* n.mycel.createBucket('rt', '1 minute', 1_000)
        // a key whose primary is not a: a's put waits for that primary's acknowledgement
        const placement = new Placement()
        placement.setNodes(['a', 'b', 'c'])
        let key = ''
        for (let i = 0; i < 100 && key === ''; i++) if (placement.owners('rt', `k${i}`, 2)[0] !== 'a') key = `k${i}`
        const primary = placement.owners('rt', key, 2)[0]!
        // nothing from the primary reaches a any more: no acknowledgement, no heartbeat
        network.drop(primary, 'a')
        const started = Date.now()
        yield* nodes[0]!.mycel.put('rt', key, bytes('moved'))
        const elapsed = Date.now() - started
        expect(elapsed).toBeLessThan(3_000)
        expect(nodes[0]!.nodosum.nodes()).not.toContain(primary)
        const other = nodes.find((n) => n.id !== 'a' && n.id !== primary)!
        expect(text(yield* other.mycel.get('rt', key))).toBe('moved')
      })
    )
  )

  it.live('a graceful leave hands the leaving node\'s keys to their new owners', () =>
    run(
      Effect.gen(function* () {
        const nodes = yield* cluster(['a', 'b', 'c', 'd'])
        for (const n of nodes) yield* n.mycel.createBucket('lv', '1 minute', 10_000)
        for (let i = 0; i < 300; i++) yield* nodes[0]!.mycel.put('lv', `k${i}`, bytes(`v${i}`))
        yield* nodes[3]!.nodosum.leave
        const rest = nodes.slice(0, 3)
        yield* until(() => rest.every((n) => n.nodosum.nodes().length === 3), 'd left')
        yield* until(() => rest.map((n) => n.mycel.stats('lv')!.keys).reduce((x, y) => x + y, 0) === 600, 'two copies on the three that stay')
        for (let i = 0; i < 300; i++) expect(text(yield* rest[i % 3]!.mycel.get('lv', `k${i}`))).toBe(`v${i}`)
      })
    )
  )
})
